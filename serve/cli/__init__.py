"""The ``vf3d`` command: one sub-command group per user task.

Library code never prints; these modules call it and render with rich. Heavy imports
(torch, ray, duckdb) happen inside commands so ``vf3d --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from catalog.errors import Vf3dError
from serve.cli import api_cmd, catalog_cmds, config_cmd, demo_cmd, fleet_cmds, generate_cmd, mv_cmds, prompts_cmds, queue_cmds, render_cmd, score_cmd, sql_cmd
from serve.cli.console import err_console

app = typer.Typer(
    name="vf3d",
    help="vf3d: a data engine that turns a video diffusion model into 3D training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """vf3d: a data engine that turns a video diffusion model into 3D training data."""


app.command("demo")(demo_cmd.demo)
app.command("config")(config_cmd.config)
app.command("sql")(sql_cmd.sql)
app.command("render")(render_cmd.render)
app.add_typer(catalog_cmds.app, name="catalog")
app.add_typer(prompts_cmds.app, name="prompts")
app.add_typer(queue_cmds.app, name="queue")
app.add_typer(fleet_cmds.app, name="fleet")
app.add_typer(mv_cmds.app, name="mv")
app.command("generate")(generate_cmd.generate)
app.command("score")(score_cmd.score)
app.command("api")(api_cmd.api)


def main() -> None:
    """Console-script entry point: vf3d errors become one red line and exit code 2."""
    try:
        app()
    except Vf3dError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
