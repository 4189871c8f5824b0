"""Multi-view generator benchmark (the embedded default, CPU).

* seconds per sample for V views, S denoising steps (classifier-free guidance on, as shipped),
  at batch 1 (the baseline) and batch 4, fp32 -> per-sample speed-up of batching;
* the same batch-4 run under bf16 autocast (CPU) -> speed ratio vs fp32;
* seconds per fine-tuning step (8-view orbits, batch 8, spatial frozen) — what the recipe costs;
* peak RSS (getrusage), torch threads, the machine's load average (the cores may be shared).

    .venv/bin/python bench/mvgen_bench.py [--steps 20] [--views 8] [--threads 2] [--reps 2]

Writes bench/results/mvgen_bench.json and prints a rich table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, peak_rss_mb, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from engine.mvgen import MultiViewVideoPipeline, default_checkpoint_path
    from engine.mvgen.data import heldout_prompts, procedural_dataset
    from engine.mvgen.train import FinetuneConfig, finetune

    torch.set_num_threads(args.threads)
    prompts = heldout_prompts()
    results: dict = {"views": args.views, "steps": args.steps, "threads": args.threads,
                     "load_avg_start": os.getloadavg()[0], "generate": {}}
    pipe = MultiViewVideoPipeline.from_pretrained(default_checkpoint_path(), device="cpu", mixed_precision="no")
    results["checkpoint_id"] = pipe.checkpoint_id
    pipe(prompts[:1], num_views=args.views, num_inference_steps=2, seed=0)  # warm-up

    def per_sample(p: MultiViewVideoPipeline, batch: int) -> float:
        times = []
        for rep in range(args.reps):
            t = time.perf_counter()
            p(prompts[rep * batch : (rep + 1) * batch], num_views=args.views, num_inference_steps=args.steps, seed=rep)
            times.append((time.perf_counter() - t) / batch)
        return float(np.median(times))

    rows = []
    base = per_sample(pipe, 1)
    results["generate"]["fp32_b1"] = base
    rows.append(("fp32, batch 1 (baseline)", base, 1.0))
    b4 = per_sample(pipe, 4)
    results["generate"]["fp32_b4"] = b4
    rows.append(("fp32, batch 4", b4, base / b4))
    bf16 = MultiViewVideoPipeline.from_pretrained(default_checkpoint_path(), device="cpu", mixed_precision="bf16")
    bf = per_sample(bf16, 4)
    results["generate"]["bf16_b4"] = bf
    rows.append(("bf16 autocast, batch 4", bf, base / bf))
    results["peak_rss_mb_generate"] = peak_rss_mb()

    data = procedural_dataset(16, views=args.views, resolution=pipe.config.resolution, seed=1)
    with_cfg = FinetuneConfig(steps=args.train_steps, batch_size=8, freeze="spatial", ema_decay=0.9999,
                              num_threads=args.threads, checkpoint_every=0)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = finetune(MultiViewVideoPipeline.from_pretrained(default_checkpoint_path(), device="cpu"), data, with_cfg, tmp)
    train_step = res.seconds / args.train_steps
    results["train_step_s_b8"] = train_step
    results["peak_rss_mb"] = peak_rss_mb()
    results["load_avg_end"] = os.getloadavg()[0]

    table = Table(title=f"mvgen default ({args.views} views, {args.steps} steps, CFG on, {args.threads} threads, CPU)")
    table.add_column("run")
    table.add_column("s / sample", justify="right")
    table.add_column("speed-up vs batch 1", justify="right")
    for name, secs, ratio in rows:
        table.add_row(name, f"{secs:.2f}", f"{ratio:.2f}x")
    table.add_row("fine-tune step (8 orbits, spatial frozen)", f"{train_step:.2f} s/step", "")
    console = Console()
    console.print(table)
    console.print(f"peak RSS {results['peak_rss_mb']:.0f} MB; load average {results['load_avg_start']:.1f} -> "
                  f"{results['load_avg_end']:.1f} (2 shared cores)")
    out = ROOT / "bench" / "results" / "mvgen_bench.json"
    write_results(results, out)


if __name__ == "__main__":
    main()
