"""The embedded default follows colour words on prompts it never saw.

Over the held-out colour x shape prompts (``engine.mvgen.data.heldout_prompts``: 58 prompts
naming colour/shape pairs that the bootstrap's training set excluded), the dominant palette
colour of the generated object's pixels must match the prompt's colour in >= 80% of samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.assets.palette import colors_in_text, dominant_color


def object_color(frames: np.ndarray) -> str:
    """Dominant palette colour (the renderer/quality palette) of the non-background pixels of an orbit."""
    px = frames.reshape(-1, 3)
    # white background: a pixel is object when some channel is > 60 levels below white (generated
    # backgrounds carry faint tinted noise that a lower threshold would count as object)
    fg = (255 - px.astype(np.int16)).max(-1) > 60
    return dominant_color(px[fg]) if fg.any() else "white"


def color_accuracy(pipe, prompts: list[str], seed: int = 0, steps: int | None = None, batch: int = 10) -> tuple[float, list]:
    rows = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        out = pipe(chunk, seed=seed + i, num_inference_steps=steps)
        for p, frames in zip(chunk, out.frames):
            rows.append((p, colors_in_text(p)[0], object_color(frames)))
    return float(np.mean([want == got for _, want, got in rows])), rows


def test_object_color_reads_renders_correctly():
    from engine.assets.procedural import asset_from_seed
    from engine.render import render_orbits

    assets = [asset_from_seed(s, template="single") for s in range(40)]
    assets = [a for a in assets if len(a.colors) == 1 and a.colors[0] != "white"][:12]
    renders = render_orbits(assets, views=8, resolution=32)
    assert all(object_color(r.rgb) == a.colors[0] for a, r in zip(assets, renders))


@pytest.mark.slow
def test_default_follows_colour_words_on_heldout_prompts():
    import torch

    from engine.mvgen import MultiViewVideoPipeline, default_checkpoint_path
    from engine.mvgen.data import heldout_prompts

    torch.set_num_threads(2)
    pipe = MultiViewVideoPipeline.from_pretrained(default_checkpoint_path(), device="cpu", mixed_precision="no")
    prompts = heldout_prompts()
    assert len(prompts) >= 50
    accuracy, rows = color_accuracy(pipe, prompts, seed=0)
    misses = [f"{p!r}->{got}" for p, want, got in rows if want != got]
    print(f"\ncolour accuracy {accuracy:.1%} ({len(rows) - len(misses)}/{len(rows)}); misses: {misses}")
    assert accuracy >= 0.8, f"colour accuracy {accuracy:.0%} < 80%; misses: {misses}"
