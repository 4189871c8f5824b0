"""``vf3d config``: print the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from catalog.settings import load_settings
from serve.cli.console import console


def config(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    reference: bool = typer.Option(False, "--reference", help="print every setting with its default and meaning (Markdown)"),
) -> None:
    """Print the effective settings (env VF3D_*, vf3d.toml, defaults) with secrets masked."""
    if reference:
        from catalog.settings import settings_reference

        typer.echo("| env var | default | meaning |\n|---|---|---|")
        for env, default, doc in settings_reference():
            typer.echo(f"| `{env}` | `{default}` | {doc.replace('|', '/')} |")
        return
    masked = load_settings().masked()
    if as_json:
        console.print_json(json.dumps(masked))
        return
    table = Table("setting", "env var", "value", title="vf3d settings")
    for key, value in masked.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                table.add_row(f"{key}.{sub}", f"VF3D_{key.upper()}__{sub.upper()}", repr(sub_value))
        else:
            table.add_row(key, f"VF3D_{key.upper()}", repr(value))
    console.print(table)
