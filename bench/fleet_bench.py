"""Fleet benchmark: throughput vs replicas, engine overhead, orchestration scaling.

A. The multi-view model on CPU (the embedded default checkpoint; when it is absent, a
   checkpoint of the same architecture from ``MultiViewVideoPipeline.from_config`` — same
   compute, fresh weights — and the JSON says so). For 1 and 2 replicas:
   * the raw pipeline (no engine) in spawned processes that use the cores the way the fleet's
     replicas do: 1 process x 2 torch threads against 1 replica, 2 processes x 1 thread against
     2 replicas, each calling the pipeline as a replica does (in a worker thread, with the
     replica's OMP_NUM_THREADS) — the baseline — and, for reference, plainly (main thread,
     default environment); models loaded and warmed, each round started at a barrier;
   * the whole fleet (dispatcher + Serve replicas + scores + media + DuckLake commits + acks),
     warmed; a round is enqueue -> every prompt done, timed by the driver;
   * rounds: raw (no Ray running at all), then the fleet's (Ray started, fleet up and warmed),
     then raw again, so slow drift of the machine hits both alike; engine overhead = 1 - fleet
     samples/s / raw samples/s over all rounds; every round's rate is kept, and the CPU cores
     used by each group of processes (replicas, dispatcher, Serve controller, Ray system,
     Postgres, raw workers, the driver, other) in each kind of round.
B. The fixed-latency stand-in (latency-bound, num_cpus=0.1 per replica, so 16 fit on 2 cores):
   * "serve": samples/s through the DeploymentHandle alone (routing + @serve.batch) vs the ideal
     replicas x batch / latency -> orchestration efficiency;
   * "engine": the same through the full dispatcher (scores, media, commits) -> where the single
     committer becomes the bottleneck.

    .venv/bin/python bench/fleet_bench.py [--quick] [--only model|standin] [--rounds R --samples N]

Writes bench/results/fleet_bench.json and prints tables. Postgres on 127.0.0.1:5432 is used
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
from types import SimpleNamespace

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
        time.sleep(0.2)
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


class RawWorkers:
    """``procs`` spawned processes with the pipeline loaded and warmed, generating on command.

    ``like_replica``: each process runs the pipeline the way a fleet replica does — in a worker
    thread, with the replica's ``OMP_NUM_THREADS`` (its CPUs, rounded) —
    so the comparison isolates the engine; otherwise plainly (main thread, default environment).
    On 2 cores those thread set-ups alone move the pipeline's speed by about ±10 %.

    A round splits batches of ``batch`` round-robin over the processes and is timed from a
    barrier (all start together) to the last process done (CLOCK_MONOTONIC is shared on Linux).
    """

    def __init__(self, ckpt: str, procs: int, threads: int, batch: int, like_replica: bool = False):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.batch, self.procs, self.threads = batch, procs, threads
        self.barrier = ctx.Barrier(procs)
        self.inboxes = [ctx.Queue() for _ in range(procs)]
        self.results = ctx.Queue()
        omp = str(threads) if like_replica else ""  # a replica's OMP_NUM_THREADS = its torch threads
        self.ps = [ctx.Process(target=_raw_worker,
                               args=(ckpt, threads, batch, self.barrier, inbox, self.results, like_replica, omp))
                   for inbox in self.inboxes]
        for p in self.ps:
            p.start()
        self.info = [self.results.get(timeout=600) for _ in self.ps]  # loaded and warmed
        self.pids = {p.pid for p in self.ps}

    def round(self, start: int, n: int) -> float:
        batches = [(s, min(self.batch, start + n - s)) for s in range(start, start + n, self.batch)]
        for k, inbox in enumerate(self.inboxes):
            inbox.put(batches[k::self.procs])
        outs = [self.results.get(timeout=1800) for _ in self.ps]
        return max(o["t1"] for o in outs) - min(o["t0"] for o in outs)

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for p in self.ps:
            p.join(timeout=60)


def _raw_worker(ckpt: str, threads: int, batch: int, barrier, inbox, results, in_thread: bool, omp: str) -> None:
    if omp:
        os.environ["OMP_NUM_THREADS"] = omp  # before torch loads, as in a Ray worker
    import torch

    from engine.mvgen import MultiViewVideoPipeline

    torch.set_num_threads(threads)
    pipe = MultiViewVideoPipeline.from_pretrained(ckpt, device="cpu")
    executor = ThreadPoolExecutor(1) if in_thread else None

    def run(jobs: list[tuple[int, int]]) -> None:
        for start, n in jobs:
            pipe([f"a red ceramic vase {start + i}" for i in range(n)], seed=list(range(start, start + n)))

    def call(jobs: list[tuple[int, int]]) -> None:
        executor.submit(run, jobs).result() if executor else run(jobs)

    call([(0, batch)])  # warm up
    results.put({"steps": pipe.config.default_steps, "views": pipe.config.num_views, "resolution": pipe.config.resolution})
    while (jobs := inbox.get()) is not None:
        barrier.wait()
        t0 = time.perf_counter()
        call(jobs)
        results.put({"t0": t0, "t1": time.perf_counter()})


class FleetUnderTest:
    """The fleet with ``replicas`` replicas of the model, up and warmed; a round = enqueue -> all done."""

    def __init__(self, ckpt: str, replicas: int, num_cpus: float, batch: int, root: Path, dsn: str):
        from engine.queue import PromptQueue
        from serve.fleet import ops

        self.cpus = num_cpus
        self.replicas = replicas
        self.settings = _settings(root, dsn, model="pipeline", checkpoint=ckpt, replicas=replicas, num_cpus=self.cpus,
                                  dispatcher_num_cpus=0.2, max_batch_size=batch, batch_wait_timeout_s=0.5,
                                  lease_batch=batch * replicas, max_in_flight=batch * replicas * 2)
        self.queue = PromptQueue.from_settings(self.settings)
        self.queue.purge()
        ops.up(self.settings, timeout_s=600)
        self.total = 0
        self.round(0, batch * replicas * 2, tag="warm")

    def round(self, start: int, n: int, tag: str = "run") -> float:
        _enqueue(self.queue, start, n, f"{tag}{self.replicas}")
        t0 = time.perf_counter()
        self.total += n
        return _wait_done(self.queue, self.total) - t0

    def close(self) -> dict:
        from serve.fleet import ops

        return ops.down(self.settings, drain=True, timeout_s=600)


def overhead_point(ckpt: str, replicas: int, rounds: int, samples: int, batch: int, root: Path, dsn: str) -> dict:
    """Raw rounds with no Ray running, then the fleet's rounds, then raw rounds again (see the
    module docstring): ``rounds`` fleet rounds and ``rounds`` raw rounds run like a replica (the
    baseline), split before and after, plus one plain raw round before and one after."""
    import ray

    from _common import cpu_by_group, cpu_seconds
    from serve.fleet.deployment import replica_threads

    cpus = os.cpu_count() or 2
    num_cpus = round((cpus - 0.2) / replicas, 2)  # per replica: the dispatcher reserves 0.2
    threads = replica_threads(SimpleNamespace(num_cpus=num_cpus))
    raw = RawWorkers(ckpt, procs=replicas, threads=threads, batch=batch, like_replica=True)
    plain = RawWorkers(ckpt, procs=replicas, threads=threads, batch=batch)
    own = {"raw workers": raw.pids | plain.pids, "bench driver": {os.getpid()}}
    times: dict[str, list[float]] = {"raw": [], "plain": [], "fleet": []}
    cores: dict[str, list[dict]] = {"raw": [], "plain": [], "fleet": []}
    start = 10_000 * replicas
    final: dict = {}

    def timed(kind: str, run) -> None:
        nonlocal start
        before = cpu_seconds()
        seconds = run(start, samples)
        cores[kind].append(cpu_by_group(before, cpu_seconds(), seconds, own))
        times[kind].append(seconds)
        start += samples
        print(f"  {replicas} replica(s), {kind} round {len(times[kind])}: {samples / seconds:.3f} samples/s", flush=True)

    try:
        before_rounds = (rounds + 1) // 2
        for _ in range(before_rounds):
            timed("raw", raw.round)
        timed("plain", plain.round)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, namespace="vf3d", logging_level="ERROR",
                 log_to_driver=False)
        fleet = FleetUnderTest(ckpt, replicas, num_cpus, batch, root, dsn)
        try:
            for _ in range(rounds):
                timed("fleet", fleet.round)
        finally:
            final = fleet.close()
            ray.shutdown()
        timed("plain", plain.round)
        for _ in range(rounds - before_rounds):
            timed("raw", raw.round)
    finally:
        raw.close()
        plain.close()
    n = samples * rounds
    raw_rate, fleet_rate = n / sum(times["raw"]), n / sum(times["fleet"])

    def mean_cores(rows: list[dict]) -> dict[str, float]:
        groups = sorted({g for r in rows for g in r})
        return {g: round(sum(r.get(g, 0.0) for r in rows) / len(rows), 3) for g in groups}

    return {
        "replicas": replicas, "num_cpus_each": fleet.cpus, "raw_processes": replicas, "raw_threads_each": threads,
        "rounds": rounds, "samples_per_round": samples, "raw_seconds": times["raw"], "fleet_seconds": times["fleet"],
        "raw_samples_per_s_by_round": [samples / t for t in times["raw"]],
        "fleet_samples_per_s_by_round": [samples / t for t in times["fleet"]],
        "plain_samples_per_s_by_round": [samples / t for t in times["plain"]],
        "raw_samples_per_s": raw_rate, "fleet_samples_per_s": fleet_rate,
        "plain_samples_per_s": len(times["plain"]) * samples / sum(times["plain"]),
        "engine_overhead": 1.0 - fleet_rate / raw_rate,
        "engine_overhead_vs_plain": 1.0 - fleet_rate * sum(times["plain"]) / (len(times["plain"]) * samples),
        "cores_in_raw_rounds": mean_cores(cores["raw"]), "cores_in_fleet_rounds": mean_cores(cores["fleet"]),
        "model": raw.info[0], "dispatcher_totals": final.get("totals", {}),
    }


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
    ap.add_argument("--quick", action="store_true", help="2 rounds of 8 samples, stand-in up to 4 replicas (a smoke run)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each kind per replica count (raw split before/after)")
    ap.add_argument("--samples", type=int, default=24, help="model samples per round (a multiple of 8 keeps batches full)")
    ap.add_argument("--only", choices=["model", "standin"], help="run one part only")
    args = ap.parse_args()
    rounds, samples = (2, 8) if args.quick else (args.rounds, args.samples)
    batch = 4
    cpus = os.cpu_count() or 2
    dsn = services.create_pg_database()
    tmp = Path(tempfile.mkdtemp(prefix="vf3d-fleet-bench-"))
    t_start = time.perf_counter()
    ckpt_kind, points, standin = None, [], []
    load_before = os.getloadavg()
    try:
        if args.only != "standin":
            ckpt, ckpt_kind = checkpoint(tmp)
            for r in (1, 2):
                points.append(overhead_point(ckpt, r, rounds, samples, batch, tmp / "fleet", dsn))
        if args.only != "model":
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, namespace="vf3d", logging_level="ERROR",
                     log_to_driver=False)
            counts = [1, 2, 4] if args.quick else [1, 2, 4, 8, 16]
            standin = standin_points(counts, latency=1.0, batch=batch, seconds=4.0 if args.quick else 8.0,
                                     root=tmp / "fleet", dsn=dsn)  # one root per catalog (one data path)
        ray.shutdown()
    finally:
        services.drop_pg_database(dsn)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "machine": {"cpus": cpus},
        "checkpoint": ckpt_kind,
        "model_overhead": points,
        "standin": {"latency_s": 1.0, "max_batch_size": batch, "points": standin},
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "peak_rss_mb_driver": peak_rss_mb(),
        "wall_s": time.perf_counter() - t_start,
    }
    out = ROOT / "bench" / "results" / ("fleet_bench.json" if not args.only else f"fleet_bench_{args.only}.json")
    write_results(result, out)

    con = Console()
    if points:
        m = points[0]["model"]
        t = Table(title=f"engine overhead, multi-view model on {cpus} CPU cores ({ckpt_kind}; {m['steps']} steps, "
                        f"{m['views']} views, {m['resolution']} px, batch {batch}; {rounds} rounds x {samples} samples each)")
        for c in ("replicas", "raw baseline", "raw samples/s (rounds)", "fleet samples/s (rounds)", "engine overhead",
                  "plain raw (rounds)", "vs plain"):
            t.add_column(c, justify="right")
        for p in points:
            t.add_row(str(p["replicas"]), f"{p['raw_processes']} proc x {p['raw_threads_each']} thr",
                      f"{p['raw_samples_per_s']:.3f} ({' '.join(f'{x:.2f}' for x in p['raw_samples_per_s_by_round'])})",
                      f"{p['fleet_samples_per_s']:.3f} ({' '.join(f'{x:.2f}' for x in p['fleet_samples_per_s_by_round'])})",
                      f"{p['engine_overhead']:.1%}",
                      f"{p['plain_samples_per_s']:.3f} ({' '.join(f'{x:.2f}' for x in p['plain_samples_per_s_by_round'])})",
                      f"{p['engine_overhead_vs_plain']:.1%}")
        con.print(t)
        c = Table(title="CPU cores used, mean over rounds (fleet rounds / raw rounds)")
        groups = sorted({g for p in points for k in ("cores_in_fleet_rounds", "cores_in_raw_rounds") for g in p[k]})
        c.add_column("group")
        for p in points:
            c.add_column(f"{p['replicas']} replica(s)", justify="right")
        for g in groups:
            c.add_row(g, *(f"{p['cores_in_fleet_rounds'].get(g, 0):.2f} / {p['cores_in_raw_rounds'].get(g, 0):.2f}"
                           for p in points))
        con.print(c)
    if standin:
        s = Table(title=f"fixed-latency stand-in (1.0 s per batch of {batch}, num_cpus 0.1 per replica)")
        for col in ("replicas", "ideal/s", "serve/s", "serve eff.", "engine/s", "engine eff."):
            s.add_column(col, justify="right")
        for p in standin:
            s.add_row(str(p["replicas"]), f"{p['ideal_samples_per_s']:.1f}", f"{p['serve_samples_per_s']:.1f}",
                      f"{p['serve_efficiency']:.0%}", f"{p['engine_samples_per_s']:.1f}", f"{p['engine_efficiency']:.0%}")
        con.print(s)
    con.print(f"load average before {tuple(round(x, 2) for x in load_before)}, after "
              f"{tuple(round(x, 2) for x in result['load_average'])}")
    con.print(f"peak RSS (driver) {result['peak_rss_mb_driver']:.0f} MB; wall {result['wall_s']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
