"""``vf3d score``: re-score stored samples with the current scorer (media untouched)."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from serve.cli.console import console, err_console


def score(
    where: str = typer.Option(None, "--where", help="SQL filter on samples_latest, e.g. \"category = 'animal'\" (read-only checked)"),
    all_: bool = typer.Option(False, "--all", help="re-score rows already at the current scorer version too"),
    limit: int = typer.Option(None, "--limit", min=1, help="re-score at most this many samples"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="samples scored (and committed) together"),
    show_failed: int = typer.Option(10, "--show-failed", min=0, help="list at most this many failed samples"),
) -> None:
    """Re-score stored samples (new score_* columns, scorer_version and status; media untouched).

    Appends one row per sample; samples_latest shows the new scores. Only rows scored by an older
    scorer are taken unless --all. Re-running after an interruption continues where it stopped.
    """
    from catalog.ducklake import Catalog
    from catalog.settings import load_settings
    from engine.quality.rescore import rescore

    settings = load_settings()
    with Catalog.open(settings) as catalog:
        with Progress(
            TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=err_console, transient=True,
        ) as bar:
            task = bar.add_task("score", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = rescore(catalog, where=where, limit=limit, batch_size=batch_size, only_stale=not all_, progress=progress)

    table = Table(title=f"re-score with {result.scorer_version} (keep if overall ≥ {result.threshold:g})")
    table.add_column("", style="bold")
    table.add_column("samples", justify="right")
    table.add_row("selected", str(result.selected))
    table.add_row("scored", str(result.scored))
    if result.already_committed:
        table.add_row("already committed", str(result.already_committed))
    table.add_row("kept → rejected", str(result.kept_to_rejected))
    table.add_row("rejected → kept", str(result.rejected_to_kept))
    table.add_row("failed", f"[red]{result.n_failed}[/]" if result.n_failed else "0")
    console.print(table)
    if result.selected == 0:
        hint = "" if all_ else " (all at the current scorer version; --all re-scores them anyway)"
        console.print(f"nothing to re-score{hint}")
    for f in result.failed[:show_failed]:
        err_console.print(f"[red]failed[/] {f.sample_id}: {f.reason}", highlight=False, soft_wrap=True)
    if result.n_failed > show_failed:
        err_console.print(f"… and {result.n_failed - show_failed} more failed samples")
