"""The rich consoles every CLI command renders with."""

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
