"""Catalog benchmark: batched ingest rate and curator-query latency over N sample rows.

Set-ups, each measured in the same run:
  lake-local   DuckLake, SQLite metadata, Parquet in a local directory (the embedded default)
  lake-s3      DuckLake, Postgres metadata, Parquet on a live SeaweedFS S3 server
  baseline     the same rows in an in-memory DuckDB table, and in one plain local Parquet file

Ingest goes through ``Catalog.commit_table`` (the transaction half of ``commit_batch``: one
DuckLake commit + batches row per batch; no media). Queries go through the curators' locked-down
``ReadOnlySession``; baselines run the same SQL (views re-created as plain views).

    .venv/bin/python bench/catalog_bench.py [--rows 1000000] [--batch 50000] [--reps 7] [--no-s3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, peak_rss_mb, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from catalog import schema  # noqa: E402
from catalog.ducklake import Catalog  # noqa: E402
from catalog.records import rows_to_arrow  # noqa: E402
from catalog.settings import load_settings  # noqa: E402
from catalog.sql import ReadOnlySession  # noqa: E402

CATEGORIES = np.array(["animal", "vehicle", "furniture", "food", "plant", "building", "tool", "toy"])
VIEWS = 8

QUERIES = {
    "by_category": "SELECT category, count(*) AS n, avg(score_overall) AS mean FROM samples GROUP BY category ORDER BY category",
    "quality_summary": "SELECT * FROM quality_summary ORDER BY category",
    "top_k_filter": "SELECT sample_id, uri_video, score_overall FROM samples WHERE category = 'animal' "
                    "AND score_consistency > 0.5 ORDER BY score_overall DESC LIMIT 100",
    "latest_kept": "SELECT count(*) AS n FROM samples_latest WHERE status = 'kept' AND score_overall >= 0.6",
    "point_lookup": "SELECT sample_id, prompt_text, extrinsics, intrinsics FROM samples WHERE sample_id = '{sid}'",
}


def make_batch(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    """n synthetic sample rows (8 views, camera arrays, scores) straight into Arrow."""
    idx = np.arange(start, start + n)
    sid = np.char.add("s", np.char.zfill(idx.astype(str), 63))

    def lists(per_row: int, dtype, values):
        offsets = pa.array(np.arange(0, (n + 1) * per_row, per_row, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.astype(dtype)))

    az = np.tile(np.arange(VIEWS) * 360.0 / VIEWS, n)
    ext = np.tile(np.eye(4, dtype=np.float32).reshape(-1), n * VIEWS) + rng.normal(0, 0.01, n * VIEWS * 16).astype(np.float32)
    intr = np.tile(np.array([30, 0, 16, 0, 30, 16, 0, 0, 1], np.float32), n * VIEWS)
    now = datetime.now(timezone.utc)
    cols = {
        "sample_id": pa.array(sid),
        "prompt_id": pa.array(np.char.add("p", (idx // 4).astype(str))),
        "prompt_text": pa.array(np.char.add("a small object number ", (idx // 4).astype(str))),
        "category": pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), n)]),
        "n_views": pa.array(np.full(n, VIEWS, np.int32)),
        "resolution": pa.array(np.full(n, 256, np.int32)),
        "elevation_deg": pa.array(rng.uniform(0, 45, n)),
        "azimuths_deg": lists(VIEWS, np.float64, az),
        "radius": pa.array(np.full(n, 2.0)),
        "fov_deg": pa.array(np.full(n, 40.0)),
        "extrinsics": lists(VIEWS * 16, np.float32, ext),
        "intrinsics": lists(VIEWS * 9, np.float32, intr),
        "checkpoint_id": pa.array(["ckpt-bench"] * n),
        "seed": pa.array(idx.astype(np.int64)),
        "sampler": pa.array(["euler"] * n),
        "steps": pa.array(np.full(n, 25, np.int32)),
        "guidance_scale": pa.array(np.full(n, 3.0)),
        "uri_views": pa.array(np.char.add("s3://vf3d/samples/", np.char.add(sid, "/views.npz"))),
        "uri_video": pa.array(np.char.add("s3://vf3d/samples/", np.char.add(sid, "/orbit.mp4"))),
        "uri_sheet": pa.array(np.char.add("s3://vf3d/samples/", np.char.add(sid, "/sheet.png"))),
    }
    for c in ("score_consistency", "score_framing", "score_sharpness", "score_prompt_color", "score_overall"):
        cols[c] = pa.array(rng.random(n))
    cols["score_clip"] = pa.nulls(n, pa.float64())
    cols["scorer_version"] = pa.array(["bench-1"] * n)
    cols["status"] = pa.array(np.where(rng.random(n) < 0.67, "kept", "rejected"))
    cols["run_id"] = pa.array(["bench"] * n)
    cols["batch_id"] = pa.array([f"bench-{start}"] * n)
    cols["created_at"] = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    target = rows_to_arrow([]).schema
    return pa.table([cols[f.name].cast(f.type) for f in target], schema=target)


def ingest(settings, rows: int, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    gen_s = commit_s = 0.0
    commits = 0
    with Catalog.open(settings, create_bucket=True) as cat:
        for start in range(0, rows, batch):
            t = time.perf_counter()
            table = make_batch(start, min(batch, rows - start), rng)
            gen_s += time.perf_counter() - t
            t = time.perf_counter()
            res = cat.commit_table(f"bench-{start}", table, run_id="bench")
            commit_s += time.perf_counter() - t
            assert res.added == table.num_rows
            commits += 1
        info = cat.info()
    samples = next(t for t in info["tables"] if t.name == "samples")
    return {"rows": rows, "batch": batch, "commits": commits, "commit_s": commit_s, "gen_s": gen_s,
            "rows_per_s": rows / commit_s, "files": samples.files, "bytes": samples.bytes}


def timed(run, sql: str, reps: int) -> dict:
    run(sql)  # warm-up (metadata, file footers)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run(sql)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]}


def lake_queries(settings, reps: int, sid: str) -> dict:
    with ReadOnlySession(settings) as session:
        return {name: timed(lambda s: session.run(s, limit=1_000_000), sql.format(sid=sid), reps)
                for name, sql in QUERIES.items()}


def baseline_queries(settings, reps: int, sid: str, tmp: Path) -> dict:
    """The same SQL over (a) an in-memory DuckDB table, (b) one plain Parquet file."""
    import duckdb

    with Catalog.open(settings) as cat:
        table = cat.read("SELECT * FROM samples")
    parquet = tmp / "samples.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, parquet)
    views = [sql for _, _, stmts in schema.MIGRATIONS for sql in stmts if "VIEW" in sql]
    out = {}
    for kind in ("memory", "parquet"):
        conn = duckdb.connect()
        if kind == "memory":
            conn.register("_t", table)
            conn.execute("CREATE TABLE samples AS SELECT * FROM _t")
            conn.unregister("_t")
        else:
            conn.execute(f"CREATE VIEW samples AS SELECT * FROM read_parquet('{parquet}')")
        for v in views:
            conn.execute(v)
        out[kind] = {name: timed(lambda s: conn.execute(s).to_arrow_table(), sql.format(sid=sid), reps)
                     for name, sql in QUERIES.items()}
        conn.close()
    out["parquet_bytes"] = parquet.stat().st_size
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS + Postgres set-up")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "catalog_bench.json")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    results: dict = {"rows": args.rows, "batch": args.batch, "reps": args.reps, "setups": {}}
    sid = "s" + str(args.rows // 2).zfill(63)
    with tempfile.TemporaryDirectory(prefix="vf3d-catbench-") as tmpdir:
        tmp = Path(tmpdir)
        setups = {"lake-local": lambda: (load_settings(root=tmp / "local"), None)}
        if not args.no_s3:
            import services

            def s3_setup():
                server = services.start_seaweedfs(tmp / "weed")
                dsn = services.create_pg_database("vf3d_bench")
                settings = load_settings(
                    root=tmp / "s3root", catalog={"metadata_dsn": dsn},
                    s3={"endpoint": server.endpoint, "access_key": server.access_key,
                        "secret_key": server.secret_key, "bucket": "vf3dbench", "prefix": "bench"},
                )
                return settings, lambda: (services.drop_pg_database(dsn), server.stop())

            setups["lake-s3"] = s3_setup
        first_settings = None
        for name, make in setups.items():
            settings, cleanup = make()
            try:
                console.print(f"[bold]{name}[/]: ingesting {args.rows:,} rows in batches of {args.batch:,} …")
                ing = ingest(settings, args.rows, args.batch)
                console.print(f"  {ing['rows_per_s']:,.0f} rows/s, {ing['files']} files; querying …")
                q = lake_queries(settings, args.reps, sid)
                results["setups"][name] = {"ingest": ing, "queries": q}
                if first_settings is None:
                    first_settings = settings
                    console.print("baseline: in-memory table and one Parquet file …")
                    results["baseline"] = baseline_queries(settings, args.reps, sid, tmp)
            finally:
                if cleanup:
                    cleanup()
    results["peak_rss_mb"] = peak_rss_mb()

    ingest_t = Table("set-up", "rows", "batch", "commits", "rows/s", "s/commit", "files", "MiB", title="catalog ingest")
    for name, r in results["setups"].items():
        i = r["ingest"]
        ingest_t.add_row(name, f"{i['rows']:,}", f"{i['batch']:,}", str(i["commits"]), f"{i['rows_per_s']:,.0f}",
                         f"{i['commit_s'] / i['commits']:.2f}", str(i["files"]), f"{i['bytes'] / 2**20:.1f}")
    console.print(ingest_t)
    qt = Table("query", *[f"{n} p50/p95 ms" for n in results["setups"]], "memory p50", "parquet p50",
               "lake-local / parquet", title=f"curator queries over {args.rows:,} rows ({args.reps} reps)")
    base = results["baseline"]
    for q in QUERIES:
        cells = [f"{r['queries'][q]['p50_ms']:.1f} / {r['queries'][q]['p95_ms']:.1f}" for r in results["setups"].values()]
        local = results["setups"]["lake-local"]["queries"][q]["p50_ms"]
        qt.add_row(q, *cells, f"{base['memory'][q]['p50_ms']:.1f}", f"{base['parquet'][q]['p50_ms']:.1f}",
                   f"{local / base['parquet'][q]['p50_ms']:.2f}x")
    console.print(qt)
    console.print(f"peak RSS: {results['peak_rss_mb']:.0f} MiB")
    write_results(results, args.out)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
