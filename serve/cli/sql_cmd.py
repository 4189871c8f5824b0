"""``vf3d sql "SELECT …"``: curators' read-only SQL over the catalog."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from catalog.errors import Vf3dError
from serve.cli.console import console, err_console


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class OutputError(Vf3dError):
    """The result cannot be written where asked."""


def sql(
    query: str = typer.Argument(..., help="one SELECT statement (views: samples_latest, quality_summary)"),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table | csv | json | parquet"),
    snapshot: int = typer.Option(None, "--snapshot", help="read the catalog as of this snapshot (see `vf3d catalog snapshots`)"),
    limit: int = typer.Option(None, "--limit", min=1, help="most rows returned (default VF3D_SQL__ROW_LIMIT)"),
    timeout: float = typer.Option(None, "--timeout", min=0.001, help="seconds before the query is interrupted (default VF3D_SQL__TIMEOUT_S)"),
    output: Path = typer.Option(None, "--output", "-o", help="write the result to this file instead of stdout"),
) -> None:
    """Run read-only SQL on the catalog. Anything that writes, attaches, reads files or changes settings is refused."""
    from catalog.settings import load_settings
    from catalog.sql import is_truncated, run_readonly

    if fmt is Format.parquet and output is None:
        raise OutputError("--format parquet writes binary: give a file with -o/--output result.parquet")
    table = run_readonly(load_settings(), query, snapshot=snapshot, limit=limit, timeout_s=timeout)
    if fmt is Format.table and output is None:
        _print_table(table, console)
    elif fmt is Format.table:
        from rich.console import Console

        with open(output, "w") as fh:
            _print_table(table, Console(file=fh, width=200))
    else:
        data = _encode(table, fmt)
        if output is None:
            sys.stdout.write(data.decode())
            sys.stdout.flush()
        else:
            try:
                output.write_bytes(data)
            except OSError as exc:
                raise OutputError(f"cannot write {output}: {exc.strerror or exc}; choose a writable path for -o") from None
            err_console.print(f"wrote {table.num_rows} rows to {output}")
    if is_truncated(table):
        err_console.print(f"[yellow]result cut at {table.num_rows} rows[/] (raise --limit or VF3D_SQL__ROW_LIMIT)")


def _print_table(table, target) -> None:
    out = Table(*table.column_names, title=f"{table.num_rows} rows")
    for row in table.to_pylist():
        out.add_row(*(_cell(v) for v in row.values()))
    target.print(out)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and len(value) > 8:
        return f"[{', '.join(_cell(v) for v in value[:8])}, … {len(value)} items]"
    return str(value)


def _encode(table, fmt: Format) -> bytes:
    import io

    if fmt is Format.csv:
        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        plain = table.replace_schema_metadata(None)
        # CSV has no lists: render list columns as JSON text
        import pyarrow as pa

        cols = []
        for name, col in zip(plain.column_names, plain.columns):
            if pa.types.is_list(col.type) or pa.types.is_struct(col.type) or pa.types.is_map(col.type):
                col = pa.array([None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
            cols.append(col)
        pacsv.write_csv(pa.table(cols, names=plain.column_names), buf)
        return buf.getvalue()
    if fmt is Format.json:
        return (json.dumps(table.to_pylist(), default=str, indent=None) + "\n").encode()
    if fmt is Format.parquet:
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(None), buf)
        return buf.getvalue()
    raise OutputError(f"unknown format {fmt}")
