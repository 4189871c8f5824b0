"""``vf3d demo``: the main job end to end on the embedded defaults — offline, CPU, minutes.

bundled captions → prompts table (filter + dedup) → a curator's pick of N diverse prompts →
prompt queue → a local Ray Serve fleet of generator replicas → scores → DuckLake catalog →
three curator queries → an HTML report.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer
from rich.panel import Panel
from rich.table import Table

from serve.cli.console import console

# A curator's first query: one kept prompt per category, so the demo shows variety.
PICK_PROMPTS_SQL = """
SELECT prompt_id, text, category FROM prompts
WHERE status = 'kept'
QUALIFY row_number() OVER (PARTITION BY category ORDER BY prompt_id) = 1
ORDER BY prompt_id
LIMIT ?
"""

CURATOR_QUERIES = {
    "accept rate by status": "SELECT status, count(*) AS samples, round(avg(score_overall), 3) AS mean_overall "
    "FROM samples_latest GROUP BY status ORDER BY status",
    "quality by category (top 8)": "SELECT category, n, n_kept, round(overall_mean, 3) AS overall, "
    "round(consistency_mean, 3) AS consistency, round(prompt_color_mean, 3) AS prompt_colour "
    "FROM quality_summary ORDER BY n DESC, category LIMIT 8",
    "best five samples": "SELECT prompt_text, round(score_overall, 3) AS overall, round(score_consistency, 3) AS consistency, "
    "round(score_framing, 3) AS framing, seed FROM samples_latest ORDER BY score_overall DESC, sample_id LIMIT 5",
}


def _arrow_table(title: str, table) -> Table:
    out = Table(title=title, title_justify="left")
    for name in table.column_names:
        out.add_column(name)
    for row in table.to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    return out


def demo(
    prompts: int = typer.Option(12, "--prompts", min=1, help="prompts to generate from"),
    samples_per_prompt: int = typer.Option(2, "--samples-per-prompt", min=1, help="samples per prompt (different seeds)"),
    replicas: int = typer.Option(2, "--replicas", min=1, help="generator replicas in the local fleet"),
    root: Path = typer.Option(Path(".vf3d/demo"), "--root", help="the demo's own directory (wiped at start)"),
) -> None:
    """Run the main job end to end on the embedded defaults: captions → fleet → catalog → curator report."""
    import ray

    from catalog.ducklake import Catalog
    from catalog.settings import load_settings
    from catalog.sql import run_readonly
    from engine.prompts.pipeline import demo_captions_path
    from engine.queue import PromptQueue
    from serve.cli.prompts_cmds import run_ingest
    from serve.fleet import ops
    from serve.report import build_report

    started = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    settings = load_settings(root=root, fleet={"replicas": replicas, "num_cpus": 0.5, "dispatcher_num_cpus": 0.5})
    console.print(Panel.fit(
        f"vf3d demo: {prompts} prompts × {samples_per_prompt} samples on {replicas} generator replicas\n"
        f"catalog, queue and objects under [bold]{root}[/]", title="vf3d"))

    console.rule("1 · catalog")
    Catalog.open(settings, create_bucket=True).close()
    console.print(f"DuckLake catalog ready in {root}")

    console.rule("2 · prompts: filter + dedup the bundled captions")
    run_ingest([demo_captions_path()], source="demo-captions", settings=settings, enqueue=False)

    console.rule(f"3 · a curator picks {prompts} diverse kept prompts → queue")
    with Catalog.open(settings) as cat:
        picked = cat.read(PICK_PROMPTS_SQL, [prompts]).to_pylist()
    queue = PromptQueue.from_settings(settings)
    queue.enqueue(picked, samples_per_prompt=samples_per_prompt)
    console.print(", ".join(f"[italic]{p['text']}[/]" for p in picked), highlight=False)

    console.rule(f"4 · the fleet: {replicas} replicas on a local Ray")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import logging

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the progress bar says what Serve is doing
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=ops.RAY_NAMESPACE,
             logging_level="ERROR", log_to_driver=False)
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("prompts"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("starting replicas", total=len(picked))
            fleet_started = time.perf_counter()
            run_id = ops.up(settings, timeout_s=600)
            bar.update(task, description="generating")
            while True:
                stats = queue.stats()
                bar.update(task, completed=stats["done"] + stats["dead"])
                if stats["done"] + stats["dead"] >= len(picked):
                    break
                time.sleep(0.5)
            bar.update(task, description="draining")
            totals = ops.down(settings, drain=True, timeout_s=300)
            fleet_s = time.perf_counter() - fleet_started
    finally:
        ray.shutdown()  # ends Serve with it (serve.shutdown() first only adds controller-kill warnings)
        queue.close()
    stats = queue.stats()
    console.print(f"run {run_id}: queue {stats}; fleet wall time {fleet_s:.0f} s "
                  f"({len(picked) * samples_per_prompt / fleet_s:.2f} samples/s incl. model loading)")
    if totals:
        def figure(key: str, spec: str) -> str:
            value = totals.get(key)
            return "n/a" if value is None else format(value, spec)

        console.print(
            f"dispatcher: {figure('samples_per_s_1m', '.2f')} samples/s over the last minute · accept rate "
            f"{figure('accept_rate', '.0%')} · {figure('cost_replica_s_per_kept', '.1f')} replica-seconds per kept sample",
            highlight=False,
        )

    console.rule("5 · curator queries (read-only SQL)")
    for title, sql in CURATOR_QUERIES.items():
        console.print(_arrow_table(title, run_readonly(settings, sql)))

    console.rule("6 · report")
    with Catalog.open(settings) as cat:
        report = build_report(cat, root / "report.html", threshold=settings.fleet.quality_threshold)
    console.print(f"HTML report: [bold]{report.resolve()}[/]  (open it in a browser)")
    console.print(f"done in {time.perf_counter() - started:.0f} s")
