"""What every command shares on the terminal: the stderr console, one-line failures, progress."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .errors import PlaygroundError

console = Console(stderr=True)


def fail(exc: PlaygroundError) -> None:
    # Messages quote user input and syntax like NAME[/VERSION]: never read them as rich markup.
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=False)
