"""`vf3d demo`, the main job, end to end with the embedded default generator (as `make demo` runs it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    root = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VF3D_")}
    env["VF3D_CONFIG"] = str(tmp_path / "absent.toml")
    proc = subprocess.run(
        [sys.executable, "-c", "from serve.cli import main; main()", "demo", "--prompts", "3",
         "--samples-per-prompt", "2", "--root", str(root)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in ("1 · catalog", "2 · prompts", "3 · a curator picks", "4 · the fleet", "5 · curator queries", "6 · report"):
        assert step in out
    assert (root / "report.html").exists()

    from catalog.ducklake import Catalog
    from catalog.settings import load_settings

    with Catalog.open(load_settings(root=root)) as cat:
        total, distinct, prompts, unscored = cat.read(
            "SELECT count(*), count(DISTINCT sample_id), count(DISTINCT prompt_id), "
            "count(*) FILTER (WHERE score_overall IS NULL) FROM samples"
        ).to_pylist()[0].values()
        kept_prompts = cat.read("SELECT count(*) AS n FROM prompts WHERE status = 'kept'").to_pylist()[0]["n"]
    assert (total, distinct, prompts, unscored) == (6, 6, 3, 0)
    assert kept_prompts > 1000  # the bundled captions went through filter + dedup
    page = (root / "report.html").read_text()
    assert "6 samples" in page and page.count('class="card"') == 6
