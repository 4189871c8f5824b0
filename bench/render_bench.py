"""Renderer + scorer benchmark.

* renderer frames/s at 32/64/128 px: batched (one EGL context, every view of every asset in
  framebuffer atlases) vs the baseline of one fresh context per asset (create, render, release);
* scorer samples/s (16 views, 64 px) for ``score_batch`` at batch sizes 1 and 16;
* peak RSS (getrusage) and the renderer device string.

    .venv/bin/python bench/render_bench.py [--assets 24] [--views 16]

Writes bench/results/render_bench.json and prints a rich table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, peak_rss_mb, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assets", type=int, default=24)
    ap.add_argument("--views", type=int, default=16)
    args = ap.parse_args()

    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from engine.assets import sample_assets
    from engine.quality import score_batch
    from engine.render import OrbitRenderer, render_orbits
    from engine.render.renderer import default_renderer

    torch.set_num_threads(2)
    assets = sample_assets(args.assets, seed=0)
    renderer = default_renderer()
    device = renderer.ctx.info["GL_RENDERER"]
    render_orbits(assets[:2], views=2, resolution=32)  # warm-up (shader compile)
    rows = []
    results: dict = {"device": device, "assets": args.assets, "views": args.views, "render": {}, "score": {}}
    for res in (32, 64, 128):
        frames = args.assets * args.views
        t = time.perf_counter()
        render_orbits(assets, views=args.views, resolution=res)
        batched = frames / (time.perf_counter() - t)
        n_base = max(4, args.assets // 3)
        t = time.perf_counter()
        for a in assets[:n_base]:
            r = OrbitRenderer()
            render_orbits([a], views=args.views, resolution=res, renderer=r)
            r.release()
        baseline = n_base * args.views / (time.perf_counter() - t)
        results["render"][res] = {"batched_fps": batched, "context_per_asset_fps": baseline, "speedup": batched / baseline}
        rows.append((f"render {res}px", f"{batched:,.0f} frames/s", f"{baseline:,.0f} frames/s", f"{batched / baseline:.1f}x"))

    renders = render_orbits(assets[:16], views=16, resolution=64)
    n_score = len(renders)
    frames = np.stack([r.rgb for r in renders])
    prompts = [a.caption for a in assets[:16]]
    score_batch(frames[:1], prompts[:1])
    for bs in (1, 16):
        t = time.perf_counter()
        n = 0
        for start in range(0, n_score, bs):
            score_batch(frames[start:start + bs], prompts[start:start + bs])
            n += len(prompts[start:start + bs])
        sps = n / (time.perf_counter() - t)
        results["score"][bs] = {"samples_per_s": sps}
    base = results["score"][1]["samples_per_s"]
    rows.append(("score 16×64px, batch 16", f"{results['score'][16]['samples_per_s']:.1f} samples/s",
                 f"{base:.1f} samples/s (batch 1)", f"{results['score'][16]['samples_per_s'] / base:.1f}x"))
    results["peak_rss_mb"] = peak_rss_mb()

    table = Table("what", "vf3d", "baseline", "ratio", title=f"render bench — {device}, {args.assets} assets × {args.views} views")
    for r in rows:
        table.add_row(*r)
    table.caption = f"baseline for render: a fresh EGL context per asset; peak RSS {results['peak_rss_mb']:.0f} MB"
    Console().print(table)
    out = ROOT / "bench" / "results" / "render_bench.json"
    write_results(results, out)


if __name__ == "__main__":
    main()
