"""A playground's life after launch: start, stop, autostop, scale, upgrade, destroy."""
from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from .. import attributes
from ..ui import console
from .common import GCE_PROJECT, NAME, PROVIDER, ZONE, how_to_reach, one_line, provider_for, say, working
from .launch import MAX_WORKERS, check_workers


def start(
    name: str = NAME,
    timeout: float = typer.Option(300, help="Seconds to wait for healthy."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the machine is healthy."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Boot a stopped instance; everything comes back by itself."""
    with one_line():
        chosen = provider_for(provider, project, zone)
        with working("booting") as report:
            launched = chosen.start(name, report, wait=wait, timeout=timeout)
            report(f"{name} {'healthy' if wait else 'started'}")
    how_to_reach(launched)


def stop(
    name: str = NAME,
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Shut an instance down cleanly (services stop in order, PostgreSQL flushes)."""
    with one_line():
        chosen = provider_for(provider, project, zone)
        with working(f"stopping {name}") as report:
            done = chosen.stop(name, report)
    say(f"stopped {name}: " + (", ".join(done) or "it was not running"))


def autostop(
    minutes: str = typer.Argument(..., metavar="MINUTES|off", help="Idle minutes before the machine powers itself "
                                  "off (1-1440), or off."),
    name: str = NAME,
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Power a machine off by itself after MINUTES idle, or turn that off.

    Running or stopped, the machine powers itself off (a stopped VM on GCE, no
    vCPU or memory billed) after MINUTES with no Airflow task running or queued and no SSH session or tunnel
    open. A running machine takes the new setting within 10 s and starts its idle clock again; `status`
    shows "autostop in N min" or what holds the machine up."""
    with one_line():
        value = attributes.autostop_value(minutes, flag="MINUTES")
        chosen = provider_for(provider, project, zone)
        row = chosen.describe(name)
        with working(f"autostop {value} on {name}") as report:
            chosen.set_attributes(name, {"autostop": value}, report)
    when = "now" if row.get("state") == "running" else "at its next start"
    what = "off" if value == "off" else f"after {value} idle minute(s)"
    say(f"autostop on {name}: {what} (takes effect {when})")


def scale(
    name: str = typer.Option(..., help="The playground (its main machine)."),
    workers: int = typer.Option(..., "--workers", help=f"How many Celery worker machines it should have, "
                                f"0-{MAX_WORKERS}. 0: none, and the main runs its tasks itself again "
                                "(LocalExecutor); more than 0 after that: CeleryExecutor again."),
    force: bool = typer.Option(False, "--force", help="Remove workers at once instead of a warm shutdown (their "
                               "running tasks then fail and are retried per their retries)."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Add or remove a playground's Celery worker machines (launched with --workers).

    Fewer: each removed worker's running tasks finish first (Celery's warm shutdown), stopped workers go first."""
    with one_line():
        check_workers(workers)
        chosen = provider_for(provider, project, zone)
        with working(f"scaling {name} to {workers} worker(s)") as report:
            done = chosen.scale(name, workers, force, report)
    for line in done or [f"{name} has {workers} worker(s) already"]:
        say(line)


def upgrade(
    name: str = NAME,
    image: Optional[str] = typer.Option(None, help="The image to move to: a name from `playground image list` "
                                        "(local: or an image folder). Default: the newest of its profile."),
    timeout: float = typer.Option(600, help="Seconds to wait for healthy on the new image."),
    as_json: bool = typer.Option(False, "--json", help="Print what changed and the time taken as JSON."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Move an instance to a newer image, keeping everything on its data volume.

    Kept: DAG runs, MLflow runs, models and artifacts, warehouse tables, connections, task logs. The machine
    is stopped, boots a fresh boot disk (local: boot layer) of the new image, and its agent runs Airflow's
    migration at that boot.

    Refused in one line, before anything changes: a downgrade (an older Airflow or MLflow, or an older
    build), a PostgreSQL major-version change (back up, launch a new one, restore), a machine whose data
    is on its boot disk."""
    import json

    with one_line():
        chosen = provider_for(provider, project, zone)
        with working(f"upgrading {name}") as report:
            done = chosen.upgrade(name, image, report, timeout=timeout)
    if as_json:
        print(json.dumps({"name": name, "upgraded": done.launched is not None, "change": done.change,
                          "seconds": done.seconds, "healthy": done.launched.healthy if done.launched else None},
                         indent=2, sort_keys=True))
        return
    if done.launched is None:
        say(done.change)
        return
    console.print(f"upgraded {name}: {escape(done.change)}, healthy in {done.seconds:.0f} s", highlight=False)
    how_to_reach(done.launched)


def destroy(
    name: str = NAME,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Remove everything launch made: processes, namespace, links, mount, files, state (or the VM and its disk)."""
    with one_line():
        chosen = provider_for(provider, project, zone)
        chosen.describe(name)  # a name that is not there fails before the question
    if not yes and not typer.confirm(f"destroy instance {name} and its data?"):
        raise typer.Exit(1)
    with one_line(), working(f"destroying {name}") as report:
        removed = chosen.destroy(name, report)
    for item in removed:
        say(f"removed {item}")
