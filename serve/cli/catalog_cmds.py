"""``vf3d catalog init | info | snapshots | compact | gc``: the DuckLake catalog's housekeeping."""

from __future__ import annotations

import typer
from rich.table import Table

from serve.cli.console import console

app = typer.Typer(help="The sample catalog (DuckLake): create it, inspect it, compact it, collect orphans.",
                  no_args_is_help=True)


def _open(create_bucket: bool = False):
    from catalog.ducklake import Catalog
    from catalog.settings import load_settings

    return Catalog.open(load_settings(), create_bucket=create_bucket)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _changes(changes: dict | None) -> str:
    if not changes:
        return ""
    return "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in changes.items())


@app.command()
def init() -> None:
    """Create the catalog (and its S3 bucket) or open it, and apply any missing schema migrations."""
    with _open(create_bucket=True) as cat:
        console.print(f"catalog ready: metadata [bold]{cat.metadata}[/], data [bold]{cat.data_path}[/], "
                      f"schema version {cat.schema_version}, snapshot {cat.current_snapshot()}")


@app.command()
def info() -> None:
    """Tables with row counts, data files and bytes; the last snapshot."""
    with _open() as cat:
        data = cat.info()
    table = Table("table", "rows", "files", "bytes", title=f"catalog {data['metadata']}")
    for t in data["tables"]:
        table.add_row(t.name, f"{t.rows:,}", f"{t.files:,}", _size(t.bytes))
    console.print(table)
    snap = data["last_snapshot"]
    console.print(f"data path: {data['data_path']}")
    console.print(f"schema version: {data['schema_version']}   snapshots: {data['snapshots']}")
    if snap is not None:
        console.print(f"last snapshot: {snap.snapshot_id} at {snap.time:%Y-%m-%d %H:%M:%S %Z}"
                      + (f" — {snap.message}" if snap.message else ""))


@app.command()
def snapshots(last: int = typer.Option(20, "--last", "-n", min=1, help="show the newest N snapshots")) -> None:
    """Every commit is a snapshot; pin reads to one with `vf3d sql --snapshot N`."""
    with _open() as cat:
        snaps = cat.snapshots()[-last:]
    table = Table("snapshot", "time", "message", "changes", title="snapshots (newest last)")
    for s in snaps:
        table.add_row(str(s.snapshot_id), f"{s.time:%Y-%m-%d %H:%M:%S}", s.message or "", _changes(s.changes))
    console.print(table)


@app.command()
def compact(
    expire_older_than: float = typer.Option(
        None, "--expire-older-than", help="also expire snapshots older than this many seconds (time travel before it ends)"
    ),
) -> None:
    """Merge small data files (flush inlined rows, merge adjacent files), delete files no snapshot needs."""
    with _open() as cat:
        out = cat.compact(expire_older_than_s=expire_older_than)
    console.print(f"data files: {out['files_before']} -> {out['files_after']}; "
                  f"snapshots expired: {out['snapshots_expired']}; old files deleted: {out['files_deleted']}")


@app.command()
def gc(
    grace: float = typer.Option(3600.0, "--grace", min=0, help="keep orphans younger than this many seconds (in-flight batches)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be removed, remove nothing"),
) -> None:
    """Remove media objects that no committed sample references (left by failed batches)."""
    with _open() as cat:
        res = cat.gc(grace_s=grace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(res.removed)} orphan objects ({_size(res.bytes)}) of {res.scanned} scanned; "
                  f"{res.kept_recent} younger than {grace:g} s kept")
    for key in res.removed[:20]:
        console.print(f"  {key}", highlight=False)
    if len(res.removed) > 20:
        console.print(f"  … and {len(res.removed) - 20} more")
