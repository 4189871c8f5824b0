"""Fleet benchmark: throughput vs replicas, engine overhead, orchestration scaling.

A. The multi-view model on CPU (the embedded default checkpoint; when it is absent, a
   checkpoint of the same architecture from ``MultiViewVideoPipeline.from_config`` — same
   compute, fresh weights — and the JSON says so):
   * raw pipeline samples/s in this process on the same cores (batches of max_batch_size), with
     as many torch threads as cores ("raw 1 x 2 threads" on 2 cores);
   * raw pipeline samples/s in N independent spawned processes with the threads each of the
     N-replica fleet's replicas gets ("raw 2 x 1 thread" on 2 cores), clock started at a barrier
     after every process has loaded and warmed the model;
   * the whole fleet (dispatcher + Serve replicas + scoring + media + DuckLake commits) with
     1 and 2 replicas; engine overhead = 1 - fleet samples/s / raw samples/s, each fleet against
     the raw baseline that uses the cores the same way (1 replica vs one process, 2 replicas vs
     two processes); the overhead against the one-process baseline is kept for every fleet.
B. The fixed-latency stand-in (latency-bound, num_cpus=0.1 per replica, so 16 fit on 2 cores):
   * "serve": samples/s through the DeploymentHandle alone (routing + @serve.batch) vs the ideal
     replicas x batch / latency -> orchestration efficiency;
   * "engine": the same through the full dispatcher (scoring, media, commits) -> where the single
     committer becomes the bottleneck.

    .venv/bin/python bench/fleet_bench.py [--quick]

Writes bench/results/fleet_bench.json and prints a table. Postgres on 127.0.0.1:5432 is used
for the queue and the catalog metadata (the fleet's production path).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, peak_rss_mb, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

import services  # noqa: E402


def _settings(root: Path, dsn: str, **fleet):
    from catalog.settings import load_settings

    base = {"num_cpus": 1.0, "dispatcher_num_cpus": 0.2, "health_check_period_s": 5.0, "poll_interval_s": 0.2,
            "request_timeout_s": 600.0, "quality_threshold": 0.5}
    base.update(fleet)
    return load_settings(root=root, queue={"dsn": dsn, "lease_ttl_s": 900.0}, catalog={"metadata_dsn": dsn}, fleet=base)


def _enqueue(queue, start: int, n: int, tag: str) -> list[str]:
    colours = ["red", "blue", "green", "yellow", "white", "black"]
    items = [{"prompt_id": f"{tag}-{i:06d}", "text": f"a {colours[i % 6]} ceramic vase {i}"} for i in range(start, start + n)]
    queue.enqueue(items)
    return [i["prompt_id"] for i in items]


def _wait_done(queue, total: int, timeout_s: float = 1800.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = queue.stats()
        if st["done"] + st["dead"] >= total:
            return time.perf_counter()
        time.sleep(0.1)
    raise RuntimeError(f"queue not done after {timeout_s}s: {queue.stats()}")


# ----------------------------------------------------------------------------- A. the model
def checkpoint(tmp: Path) -> tuple[str, str]:
    from engine.mvgen import MultiViewConfig, MultiViewVideoPipeline, default_checkpoint_path

    default = default_checkpoint_path()
    if (default / "model_index.json").exists():
        return str(default), "embedded default"
    path = tmp / "mv-default-arch"
    MultiViewVideoPipeline.from_config(MultiViewConfig(), seed=0).save_pretrained(path)
    return str(path), "default architecture, fresh weights (embedded default checkpoint not present)"


def raw_pipeline(ckpt: str, samples: int, batch: int, threads: int) -> dict:
    import torch

    from engine.mvgen import MultiViewVideoPipeline

    torch.set_num_threads(threads)
    pipe = MultiViewVideoPipeline.from_pretrained(ckpt, device="cpu")
    pipe(["warm up"] * batch, seed=list(range(batch)))
    done, t0 = 0, time.perf_counter()
    while done < samples:
        n = min(batch, samples - done)
        pipe([f"a red ceramic vase {done + i}" for i in range(n)], seed=list(range(done, done + n)))
        done += n
    elapsed = time.perf_counter() - t0
    return {"samples": samples, "seconds": elapsed, "samples_per_s": samples / elapsed, "threads": threads,
            "steps": pipe.config.default_steps, "views": pipe.config.num_views, "resolution": pipe.config.resolution}


def _raw_worker(ckpt: str, threads: int, jobs: list[tuple[int, int]], batch: int, barrier, results) -> None:
    """One raw process: load + warm the model, wait at the barrier, generate its batches."""
    import torch

    from engine.mvgen import MultiViewVideoPipeline

    torch.set_num_threads(threads)
    pipe = MultiViewVideoPipeline.from_pretrained(ckpt, device="cpu")
    pipe(["warm up"] * batch, seed=list(range(batch)))
    barrier.wait()
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on Linux
    for start, n in jobs:
        pipe([f"a red ceramic vase {start + i}" for i in range(n)], seed=list(range(start, start + n)))
    results.put({"t0": t0, "t1": time.perf_counter(), "samples": sum(n for _, n in jobs),
                 "steps": pipe.config.default_steps, "views": pipe.config.num_views,
                 "resolution": pipe.config.resolution})


def raw_processes(ckpt: str, samples: int, batch: int, procs: int, threads: int) -> dict:
    """The same prompts/seeds/batches as ``raw_pipeline``, split round-robin over ``procs`` spawned
    processes with ``threads`` torch threads each; wall clock from the barrier (all models loaded
    and warmed, as the fleet's replicas are before its clock starts) to the last process done."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    batches = [(s, min(batch, samples - s)) for s in range(0, samples, batch)]
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    ps = [ctx.Process(target=_raw_worker, args=(ckpt, threads, batches[k::procs], batch, barrier, results))
          for k in range(procs)]
    for p in ps:
        p.start()
    outs = [results.get(timeout=1800) for _ in ps]
    for p in ps:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"raw worker exited with {p.exitcode}")
    elapsed = max(o["t1"] for o in outs) - min(o["t0"] for o in outs)
    return {"samples": samples, "seconds": elapsed, "samples_per_s": samples / elapsed, "processes": procs,
            "threads_each": threads, "per_process_seconds": [o["t1"] - o["t0"] for o in outs],
            "steps": outs[0]["steps"], "views": outs[0]["views"], "resolution": outs[0]["resolution"]}


def fleet_model(ckpt: str, replicas: int, samples: int, batch: int, root: Path, dsn: str) -> dict:
    from engine.queue import PromptQueue
    from serve.fleet import ops

    total = float(os.cpu_count() or 2)
    cpus = round((total - 0.2) / replicas, 2)  # the dispatcher reserves 0.2; torch threads = round(num_cpus)
    settings = _settings(root, dsn, model="pipeline", checkpoint=ckpt, replicas=replicas, num_cpus=cpus,
                         dispatcher_num_cpus=0.2, max_batch_size=batch, batch_wait_timeout_s=0.5,
                         lease_batch=batch * replicas, max_in_flight=batch * replicas * 2)
    queue = PromptQueue.from_settings(settings)
    queue.purge()
    ops.up(settings, timeout_s=600)
    warm = batch * replicas
    _enqueue(queue, 0, warm, f"warm{replicas}")
    _wait_done(queue, warm)
    _enqueue(queue, warm, samples, f"run{replicas}")
    t0 = time.perf_counter()
    t1 = _wait_done(queue, warm + samples)
    final = ops.down(settings, drain=True, timeout_s=600)
    return {"replicas": replicas, "num_cpus_each": cpus, "samples": samples, "seconds": t1 - t0,
            "samples_per_s": samples / (t1 - t0), "dispatcher_totals": final.get("totals", {})}


# ----------------------------------------------------------------------------- B. the stand-in
def standin_points(replica_counts: list[int], latency: float, batch: int, seconds: float, root: Path, dsn: str) -> list[dict]:
    from ray import serve

    from engine.queue import PromptQueue
    from serve.fleet import ops
    from serve.fleet.models import SampleRequest

    top = max(replica_counts)
    settings = _settings(root, dsn, model="standin", standin_latency_s=latency, replicas=replica_counts[0], num_cpus=0.1,
                         dispatcher_num_cpus=0.2, max_batch_size=batch, batch_wait_timeout_s=0.02,
                         lease_batch=2 * batch, max_in_flight=batch * top * 2, quality_threshold=0.5)
    queue = PromptQueue.from_settings(settings)
    queue.purge()
    ops.up(settings, timeout_s=300)
    gen = serve.get_deployment_handle("MultiViewGenerator", settings.fleet.app_name)
    points = []
    offset = 0
    for r in replica_counts:
        ops.scale(settings, r, timeout_s=300)
        ideal = r * batch / latency
        # serve: closed loop through the handle, in flight = 2 full batches per replica
        in_flight = r * batch * 2
        stop = threading.Event()
        count = [0]
        lock = threading.Lock()

        def worker(k: int) -> None:
            i = 0
            while not stop.is_set():
                gen.generate.remote(SampleRequest(f"s{k}-{i}", "a red vase", 0, i, 10.0)).result(timeout_s=120)
                i += 1
                with lock:
                    count[0] += 1

        with ThreadPoolExecutor(in_flight) as pool:
            futs = [pool.submit(worker, k) for k in range(in_flight)]
            time.sleep(min(2.0, latency * 2))  # warm: batches fill
            with lock:
                c0 = count[0]
            t0 = time.perf_counter()
            time.sleep(seconds)
            with lock:
                c1 = count[0]
            t1 = time.perf_counter()
            stop.set()
            for f in futs:
                f.result()
        serve_rate = (c1 - c0) / (t1 - t0)
        # engine: the full dispatcher on a backlog worth ~`seconds` at the ideal rate
        n = max(int(ideal * seconds * 2), batch * r * 4)
        _enqueue(queue, offset, n, "standin")
        t0 = time.perf_counter()
        t1 = _wait_done(queue, offset + n)
        offset += n
        engine_rate = n / (t1 - t0)
        points.append({"replicas": r, "ideal_samples_per_s": ideal, "serve_samples_per_s": serve_rate,
                       "serve_efficiency": serve_rate / ideal, "engine_samples_per_s": engine_rate,
                       "engine_efficiency": engine_rate / ideal, "engine_samples": n})
    ops.down(settings, drain=True, timeout_s=300)
    return points


def main() -> None:
    import ray
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    ap.add_argument("--samples", type=int, default=16, help="model samples per configuration")
    ap.add_argument("--only", choices=["model", "standin"], help="run one part only")
    args = ap.parse_args()
    samples = 8 if args.quick else args.samples
    batch = 4
    cpus = os.cpu_count() or 2
    dsn = services.create_pg_database()
    tmp = Path(tempfile.mkdtemp(prefix="vf3d-fleet-bench-"))
    t_start = time.perf_counter()
    try:
        ckpt_kind, raw, raw_mp, fleet, standin = None, None, None, [], []
        load_before = os.getloadavg()
        # threads per replica of the 2-replica fleet (fleet_model: num_cpus = (cpus - 0.2) / 2, threads = round)
        mp_procs, mp_threads = 2, max(1, round((cpus - 0.2) / 2))
        if args.only != "standin":
            ckpt, ckpt_kind = checkpoint(tmp)
            raw = raw_pipeline(ckpt, samples, batch, threads=cpus)
            print(f"raw pipeline, 1 process x {cpus} threads: {raw['samples_per_s']:.3f} samples/s", flush=True)
            raw_mp = raw_processes(ckpt, samples, batch, mp_procs, mp_threads)
            print(f"raw pipeline, {mp_procs} processes x {mp_threads} thread(s): {raw_mp['samples_per_s']:.3f} samples/s",
                  flush=True)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, namespace="vf3d", logging_level="ERROR",
                 log_to_driver=False)
        if args.only != "standin":
            for r in (1, 2):
                fleet.append(fleet_model(ckpt, r, samples, batch, tmp / "fleet", dsn))
                print(f"fleet {r} replica(s): {fleet[-1]['samples_per_s']:.3f} samples/s", flush=True)
            # the raw baseline again, after the fleet runs: the machine is shared, so bracket the fleet
            raw_after = raw_pipeline(ckpt, samples, batch, threads=cpus)
            print(f"raw pipeline, 1 process (again): {raw_after['samples_per_s']:.3f} samples/s", flush=True)
            raw_mp_after = raw_processes(ckpt, samples, batch, mp_procs, mp_threads)
            print(f"raw pipeline, {mp_procs} processes (again): {raw_mp_after['samples_per_s']:.3f} samples/s", flush=True)
            raw["samples_per_s_runs"] = [raw["samples_per_s"], raw_after["samples_per_s"]]
            raw["samples_per_s"] = sum(raw["samples_per_s_runs"]) / 2
            raw_mp["samples_per_s_runs"] = [raw_mp["samples_per_s"], raw_mp_after["samples_per_s"]]
            raw_mp["samples_per_s"] = sum(raw_mp["samples_per_s_runs"]) / 2
            for f in fleet:
                same = raw if f["replicas"] == 1 else raw_mp
                f["baseline"] = "raw_pipeline" if f["replicas"] == 1 else "raw_processes"
                f["engine_overhead"] = 1.0 - f["samples_per_s"] / same["samples_per_s"]
                f["engine_overhead_vs_one_process"] = 1.0 - f["samples_per_s"] / raw["samples_per_s"]
        if args.only != "model":
            counts = [1, 2, 4] if args.quick else [1, 2, 4, 8, 16]
            standin = standin_points(counts, latency=1.0, batch=batch, seconds=4.0 if args.quick else 8.0,
                                     root=tmp / "fleet", dsn=dsn)
            print("stand-in done", flush=True)
        ray.shutdown()
    finally:
        services.drop_pg_database(dsn)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "machine": {"cpus": cpus},
        "checkpoint": ckpt_kind,
        "raw_pipeline": raw,
        "raw_processes": raw_mp,
        "fleet_model": fleet,
        "standin": {"latency_s": 1.0, "max_batch_size": batch, "points": standin},
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "peak_rss_mb_driver": peak_rss_mb(),
        "wall_s": time.perf_counter() - t_start,
    }
    out = ROOT / "bench" / "results" / ("fleet_bench.json" if not args.only else f"fleet_bench_{args.only}.json")
    write_results(result, out)

    con = Console()
    if raw is not None:
        t = Table(title=f"fleet, multi-view model on {cpus} CPU cores ({ckpt_kind}; {raw['steps']} steps, "
                        f"{raw['views']} views, {raw['resolution']} px, batch {batch})")
        for c in ("setup", "samples/s", "engine overhead (same cores use)", "vs 1 process"):
            t.add_column(c, justify="right")
        runs = " / ".join(f"{v:.3f}" for v in raw["samples_per_s_runs"])
        t.add_row(f"raw, 1 process x {raw['threads']} threads (before / after: {runs})", f"{raw['samples_per_s']:.3f}",
                  "baseline (1 replica)", "baseline")
        runs = " / ".join(f"{v:.3f}" for v in raw_mp["samples_per_s_runs"])
        t.add_row(f"raw, {raw_mp['processes']} processes x {raw_mp['threads_each']} thread(s) (before / after: {runs})",
                  f"{raw_mp['samples_per_s']:.3f}", "baseline (2 replicas)",
                  f"{1.0 - raw_mp['samples_per_s'] / raw['samples_per_s']:.1%}")
        for f in fleet:
            t.add_row(f"fleet, {f['replicas']} replica(s)", f"{f['samples_per_s']:.3f}", f"{f['engine_overhead']:.1%}",
                      f"{f['engine_overhead_vs_one_process']:.1%}")
        con.print(t)
    s = Table(title=f"fixed-latency stand-in (1.0 s per batch of {batch}, num_cpus 0.1 per replica)")
    for c in ("replicas", "ideal/s", "serve/s", "serve eff.", "engine/s", "engine eff."):
        s.add_column(c, justify="right")
    for p in standin:
        s.add_row(str(p["replicas"]), f"{p['ideal_samples_per_s']:.1f}", f"{p['serve_samples_per_s']:.1f}",
                  f"{p['serve_efficiency']:.0%}", f"{p['engine_samples_per_s']:.1f}", f"{p['engine_efficiency']:.0%}")
    con.print(s)
    con.print(f"load average before {tuple(round(x, 2) for x in load_before)}, after "
              f"{tuple(round(x, 2) for x in result['load_average'])}")
    con.print(f"peak RSS (driver) {result['peak_rss_mb_driver']:.0f} MB; wall {result['wall_s']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
