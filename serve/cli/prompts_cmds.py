"""``vf3d prompts``: ingest caption files into the prompts table and the prompt queue."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from serve.cli.console import console

app = typer.Typer(help="Ingest web captions: normalise, keep object-centric ones, dedup, enqueue.", no_args_is_help=True)


def run_ingest(
    paths: list[Path],
    *,
    source: Optional[str] = None,
    field: Optional[str] = None,
    column: Optional[str] = None,
    use_ray: bool = False,
    priority: int = 0,
    samples_per_prompt: int = 1,
    threshold: Optional[float] = None,
    processes: int = 1,
    settings=None,
    show: bool = True,
    enqueue: bool = True,
):
    """Run the ingest with the catalog, queue and embedding store from settings; render progress + summary.

    ``enqueue=False`` only records prompts in the catalog (a curator picks what to generate later).
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from catalog.ducklake import Catalog
    from catalog.settings import load_settings
    from engine.prompts.dedup import DEFAULT_THRESHOLD, EmbeddingStore
    from engine.prompts.pipeline import ingest, summary_rows
    from engine.queue import PromptQueue

    settings = settings or load_settings()
    catalog = Catalog.open(settings)
    queue = PromptQueue.from_settings(settings) if enqueue else None
    try:
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,} captions"), TimeElapsedColumn(),
                      console=console, transient=True, disable=not show) as bar:
            task = bar.add_task("reading + filtering", total=None)

            def progress(phase: str, n: int) -> None:
                bar.update(task, completed=n, description="reading + filtering" if phase == "read" else "dedup + enqueue")

            summary = ingest(
                paths, sink=catalog.write_prompts, queue=queue, embeddings=EmbeddingStore.from_settings(settings),
                source=source, field_name=field, column=column, use_ray=use_ray,
                ray_address=settings.compute.ray_address, priority=priority, samples_per_prompt=samples_per_prompt,
                threshold=threshold if threshold is not None else DEFAULT_THRESHOLD, n_process=processes, progress=progress,
            )
    finally:
        if queue is not None:
            queue.close()
        catalog.close()
    if show:
        table = Table(title="prompt ingest", show_header=True, header_style="bold")
        table.add_column("what")
        table.add_column("count", justify="right")
        for what, n in summary_rows(summary):
            style = "red" if what.startswith("bad") else "green" if what == "kept" else None
            table.add_row(what, n, style=style)
        console.print(table)
        for example in summary.bad_examples:
            console.print(f"[yellow]bad line[/] {example}", highlight=False)
    return summary


@app.command("ingest")
def ingest_cmd(
    paths: list[Path] = typer.Argument(..., help="caption files: .txt .jsonl .json .csv .tsv .parquet (or .gz)"),
    source: Optional[str] = typer.Option(None, "--source", help="source name recorded on every prompt (default: the file path)"),
    field: Optional[str] = typer.Option(None, "--field", help="JSON field holding the caption (default: caption/text/prompt/…)"),
    column: Optional[str] = typer.Option(None, "--column", help="CSV/TSV/Parquet column holding the caption"),
    ray: bool = typer.Option(False, "--ray", help="run normalise/filter/embed as Ray Data map_batches over the files"),
    priority: int = typer.Option(0, "--priority", help="queue priority of the new prompts (higher first)"),
    samples_per_prompt: int = typer.Option(1, "--samples-per-prompt", min=1, help="samples to generate per prompt"),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="near-dup cosine threshold (default 0.9)"),
    processes: int = typer.Option(1, "--processes", min=1, help="spaCy worker processes on the local path"),
) -> None:
    """Ingest caption files into the prompts table and enqueue the kept, de-duplicated prompts."""
    run_ingest(paths, source=source, field=field, column=column, use_ray=ray, priority=priority,
               samples_per_prompt=samples_per_prompt, threshold=threshold, processes=processes)


@app.command("demo-file")
def demo_file() -> None:
    """Print the path of the bundled demo caption file."""
    from engine.prompts.pipeline import demo_captions_path

    console.print(str(demo_captions_path()))
