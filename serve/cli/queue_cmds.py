"""``vf3d queue``: inspect and administer the durable prompt queue."""

from __future__ import annotations

from contextlib import closing
from typing import Optional

import typer

from serve.cli.console import console

app = typer.Typer(help="The durable prompt queue (SQLite by default, Postgres by VF3D_QUEUE__DSN).", no_args_is_help=True)


def _queue():
    from catalog.settings import load_settings
    from engine.queue import PromptQueue

    return PromptQueue.from_settings(load_settings())


@app.command("stats")
def stats() -> None:
    """Items per state (pending, leased, done, dead) and expired leases."""
    from rich.table import Table

    with closing(_queue()) as q:
        s = q.stats()
    table = Table(title="prompt queue")
    table.add_column("state")
    table.add_column("items", justify="right")
    for state, n in s.items():
        table.add_row(state, f"{n:,}", style="red" if state == "dead" and n else None)
    console.print(table)


@app.command("peek")
def peek(
    n: int = typer.Option(10, "-n", "--n", min=1, help="how many items"),
    state: Optional[str] = typer.Option("pending", "--state", help="pending | leased | done | dead"),
) -> None:
    """Show the next items in lease order (or items in a state) without leasing them."""
    from rich.table import Table

    with closing(_queue()) as q:
        rows = q.peek(n, state=state)
    table = Table(title=f"{state} items")
    for col in ("prompt_id", "text", "category", "priority", "samples_per_prompt", "attempts", "last_error"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) if r[c] is not None else "" for c in
                        ("prompt_id", "text", "category", "priority", "samples_per_prompt", "attempts", "last_error")))
    console.print(table)


@app.command("requeue-dead")
def requeue_dead() -> None:
    """Move dead-lettered items back to pending (attempts reset)."""
    with closing(_queue()) as q:
        n = q.requeue_dead()
    console.print(f"requeued {n:,} dead item(s)")


@app.command("purge")
def purge(
    state: Optional[str] = typer.Option(None, "--state", help="only items in this state (default: all)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
) -> None:
    """Delete queue items (all, or only one state)."""
    if not yes:
        typer.confirm(f"delete {'all' if state is None else state} queue items?", abort=True)
    with closing(_queue()) as q:
        n = q.purge(state)
    console.print(f"purged {n:,} item(s)")
