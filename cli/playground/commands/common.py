"""What every command shares: its options, written once; the provider it acts through; one line on failure;
progress while it works; how to reach a machine it made."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import typer
from rich.markup import escape

from ..errors import PlaygroundError
from ..ui import console, fail, progress

Report = Callable[[str], None]

PROVIDER = typer.Option(None, help="local or gce (else PLAYGROUND_PROVIDER, playground.toml, local).")
ZONE = typer.Option(None, help="gce: the zone (else PLAYGROUND_ZONE, playground.toml; for an existing VM, "
                    "found in every zone).")
GCE_PROJECT = typer.Option(None, help="gce: the GCP project (else PLAYGROUND_PROJECT, playground.toml).")
NAME = typer.Option(..., help="Instance name.")
# Commands that find the machine by name or by project (reach): either may be left out when one is enough.
SOME_NAME = typer.Option(None, help="Instance name (default: the one for --project, or the only one).")
SOME_PROJECT = typer.Option(None, help="Pick the instance of this project.")
REACH_PROVIDER = typer.Option(None, help="local or gce (gce: SSH through IAP, needs gcloud).")
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


def provider_for(flag: Optional[str], project: Optional[str], zone: Optional[str], say: bool = False, **gce):
    """The command's one provider, its settings checked; with say, print which and why."""
    from .. import providers

    chosen, source = providers.choose(flag, project, zone, **gce)
    if say:
        console.print(f"provider: [bold]{chosen.name}[/bold] ({source})", highlight=False)
    return chosen


@contextlib.contextmanager
def one_line() -> Iterator[None]:
    """A PlaygroundError inside the block is the command's one line on stderr, and its exit code."""
    try:
        yield
    except PlaygroundError as exc:
        fail(exc)


@contextlib.contextmanager
def working(title: str) -> Iterator[Report]:
    """A spinner with the elapsed time; the block reports its steps through the function it is given."""
    with progress() as bar:
        task = bar.add_task(title, total=None)
        yield lambda message: bar.update(task, description=message)


def say(text: str) -> None:
    """One plain line on the command's console (stderr): never read as markup."""
    console.print(text, markup=False, highlight=False)


def how_to_reach(launched) -> None:
    state = "booting (not waited for)" if launched.healthy is None else "healthy"
    console.print(f"[green]{launched.name}[/green] is {state} at {launched.address}: {launched.detail}",
                  highlight=False)
    for warning in launched.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    width = max(len(what) for what, _ in launched.next_steps) + 2
    for what, how in launched.next_steps:
        console.print(f"  {(what + ':').ljust(width)}{how}", highlight=False, soft_wrap=True)
