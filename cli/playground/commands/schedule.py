"""`playground schedule`: stop a GCE playground every night (and start it in the morning)."""
from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from ..errors import PlaygroundError
from ..ui import console
from .common import one_line, working

schedule_app = typer.Typer()

NAME = typer.Option(None, "--name", help="Instance name; defaults to the project id.")
PROJECT = typer.Option(None, help="The GCP project (else PLAYGROUND_PROJECT, playground.toml).")
ZONE = typer.Option(None, help="The instance's zone (else PLAYGROUND_ZONE, playground.toml, europe-west2-b).")
METHOD = typer.Option(None, help="scheduler (Cloud Scheduler jobs, the default) or resource-policy "
                      "(a Compute Engine instance schedule, for projects without Cloud Scheduler).")
LOCATION = typer.Option("", help="scheduler: Cloud Scheduler location; defaults to the zone's region.")


def _target(project: Optional[str], zone: Optional[str], name: Optional[str], method: Optional[str]):
    from .. import settings
    from ..gce import compute, schedule, vm_settings

    s = vm_settings.resolved(project, zone)
    chosen, source = settings.resolve("schedule_method", method)
    if chosen not in schedule.METHODS:
        raise PlaygroundError(f"--method (from {source}): expected one of {', '.join(schedule.METHODS)}, "
                              f"got {chosen!r}")
    inst = name or s.project
    compute.check_name(inst)
    return s, inst, chosen


@schedule_app.callback(invoke_without_command=True)
def schedule_set(
    ctx: typer.Context,
    stop: str = typer.Option("21:00", help="Stop time, HH:MM (24-hour) in --tz."),
    start: Optional[str] = typer.Option(None, help="Start time, HH:MM; without it the machine only stops."),
    days: str = typer.Option("mon-fri", help="Days it runs: mon-fri, mon,wed,fri, sat-sun or daily."),
    tz: Optional[str] = typer.Option(None, help="IANA time zone of the times, e.g. Europe/London "
                                     "(else PLAYGROUND_TIMEZONE, playground.toml, this machine's zone)."),
    name: Optional[str] = NAME,
    project: Optional[str] = PROJECT,
    zone: Optional[str] = ZONE,
    method: Optional[str] = METHOD,
    location: str = LOCATION,
    service_account: str = typer.Option("", help="scheduler: account whose OAuth token the jobs use; defaults "
                                        "to the instance's own service account."),
    check: bool = typer.Option(True, help="Check the APIs and your permissions before creating anything."),
    backup_to: Optional[str] = typer.Option(None, "--backup-to", metavar="gs://BUCKET[/PREFIX]|off",
                                            help="Also back the machine up there every scheduled day, 15 minutes "
                                            "before the stop (`playground backup`'s file, as NAME-nightly-"
                                            "YYYYmmdd-HHMMSS.tar); off: no nightly backup. The attributes "
                                            "backup-to and backup-at."),
    backup_keep: Optional[int] = typer.Option(None, "--backup-keep", metavar="N",
                                              help="Nightly backups kept (default 7); older ones are deleted."),
) -> None:
    """Stop a GCE playground every night, and start it in the morning.

    It costs nothing while stopped; a playground's Celery workers get the same schedule (run it again
    after `scale` adds some).

    Without a subcommand: create or update the schedule. Idempotent: running it
    twice leaves the same jobs. `schedule show` prints the next runs in your time
    zone; `schedule remove` deletes them.
    """
    if ctx.invoked_subcommand:
        return
    from .. import settings
    from ..gce import compute, schedule, schedule_backends, schedule_spec

    with one_line():
        s, inst, chosen = _target(project, zone, name, method)
        zone_name, tz_source = settings.resolve("timezone", tz)
        tz_source = "flag --tz" if tz else tz_source
        spec = schedule_spec.make_spec(stop, start, days, zone_name or schedule_spec.local_time_zone())
        backup = schedule_spec.backup_attributes(spec, backup_to, backup_keep) if backup_to is not None else None
        if backup is None and backup_keep is not None:
            raise PlaygroundError("--backup-keep: goes with --backup-to gs://BUCKET[/PREFIX]")
        console.print(f"{inst}: stop '{spec.stop}'" + (f", start '{spec.start}'" if spec.start else "")
                      + f" in {spec.tz} ({tz_source if zone_name else 'this machine'}), via {chosen}",
                      highlight=False)
        warnings: list[str] = []
        with working("checking") as report:
            if check:
                schedule.preflight(s, chosen, report)
            s = compute.locate(s, inst, report)
            done = []
            for member in [inst, *(w["name"] for w in compute.workers_of(s, inst))]:  # a main's workers too
                if chosen == "scheduler":
                    done += schedule_backends.apply_scheduler(s, member, spec, report, location, service_account,
                                                     warnings.append)
                else:
                    done += schedule_backends.apply_policy(s, member, spec, report)
            if backup is not None:
                compute.set_attributes(s, inst, backup, report)
                done.append((f"{backup['backup-to']} at {backup['backup-at']}" if backup["backup-to"]
                             else "off", "nightly backup"))
            report("schedule in place")
    for what, how in done:
        console.print(f"{how}: {what}", highlight=False)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if chosen == "resource-policy":
        console.print("note: the Compute Engine Service Agent (service-PROJECT_NUMBER@compute-system.iam."
                      "gserviceaccount.com) needs roles/compute.instanceAdmin.v1 to start and stop the VM",
                      highlight=False)
    console.print(f"next runs: playground schedule show --project {s.project} --zone {s.zone} --name {inst}"
                  + (" --method resource-policy" if chosen == "resource-policy" else ""), highlight=False)


@schedule_app.command("show")
def schedule_show(
    name: Optional[str] = NAME,
    project: Optional[str] = PROJECT,
    zone: Optional[str] = ZONE,
    method: Optional[str] = METHOD,
    location: str = LOCATION,
    count: int = typer.Option(3, min=1, max=14, help="How many next runs to show per action."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The schedule of a GCE playground and its next runs in your time zone."""
    import json
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.table import Table

    from ..gce import compute, schedule_backends, schedule_spec

    with one_line():
        s, inst, chosen = _target(project, zone, name, method)
        s = compute.locate(s, inst)
        rows = (schedule_backends.show_scheduler(s, inst, location) if chosen == "scheduler"
                else schedule_backends.show_policy(s, inst))
        mine = schedule_spec.local_time_zone()
        for row in rows:
            row["next_runs"] = [t.astimezone(ZoneInfo(mine)).isoformat()
                                for t in schedule_spec.next_runs(row["cron"], row["time_zone"], count)]
    if as_json:
        print(json.dumps({"instance": inst, "project": s.project, "zone": s.zone, "method": chosen,
                          "your_time_zone": mine, "entries": rows}, indent=2))
        return
    if not rows:
        console.print(f"no {chosen} schedule for {inst} in {s.project}/{s.zone}: create one with "
                      f"`playground schedule --project {s.project} --name {inst} --stop 21:00`", highlight=False)
        raise typer.Exit(1)
    table = Table("action", "cron", "time zone", f"next runs ({mine})", title=f"{inst}: {chosen}",
                  caption=", ".join(sorted({row["where"] for row in rows})))
    for row in rows:
        runs = "\n".join(datetime.fromisoformat(r).strftime("%a %d %b %H:%M") for r in row["next_runs"])
        table.add_row(row["action"], row["cron"], row["time_zone"], runs)
    Console().print(table)


@schedule_app.command("remove")
def schedule_remove(
    name: Optional[str] = NAME,
    project: Optional[str] = PROJECT,
    zone: Optional[str] = ZONE,
    method: Optional[str] = METHOD,
    location: str = LOCATION,
) -> None:
    """Delete the schedule's jobs (or detach and delete its resource policy)."""
    from ..gce import compute, schedule_backends

    with one_line():
        s, inst, chosen = _target(project, zone, name, method)
        s = compute.locate(s, inst)
        with working("removing") as report:
            removed = []
            for member in [inst, *(w["name"] for w in compute.workers_of(s, inst))]:
                if chosen == "scheduler":
                    removed += schedule_backends.remove_scheduler(s, member, location)
                else:
                    removed += schedule_backends.remove_policy(s, member, report)
            report("done")
    for item in removed:
        console.print(f"removed {item}", highlight=False)
    if not removed:
        console.print(f"no {chosen} schedule for {inst}: nothing to remove", highlight=False)
