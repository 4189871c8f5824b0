"""``vf3d api``: serve the HTTP API (read-only catalog SQL, samples, media, queue stats)."""

from __future__ import annotations

import typer

from serve.cli.console import console


def api(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0 inside a container)"),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port"),
) -> None:
    """Serve the vf3d HTTP API: /health, /sql, /samples/{id}, /samples/{id}/media/{name}, /queue/stats."""
    import uvicorn

    from catalog.settings import load_settings
    from serve.api import create_app

    app = create_app(load_settings())
    console.print(f"vf3d API on http://{host}:{port}  (docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
