"""What there is and how it is: `list`, `status` and `lineage`."""
from __future__ import annotations

import time
from typing import Optional

import typer
from rich.console import Console

from ..errors import PlaygroundError
from .common import JSON, REACH_PROVIDER, SOME_NAME, SOME_PROJECT, one_line, provider_for

ONLY_PROVIDER = typer.Option(None, help="Only this provider (default: local, and gce when a project is configured).")
ONLY_ZONE = typer.Option(None, help="gce: only this zone.")


def list_(
    as_json: bool = JSON,
    project: Optional[str] = typer.Option(None, help="Also list the GCE playgrounds of this project, in every "
                                          "zone (else PLAYGROUND_PROJECT / playground.toml)."),
    zone: Optional[str] = ONLY_ZONE,
    provider: Optional[str] = ONLY_PROVIDER,
) -> None:
    """Show every instance of the configured providers with its state and age."""
    import json

    from rich.table import Table

    from .. import providers

    with one_line():
        rows = [row for chosen in providers.listing(provider, project, zone) for row in chosen.list()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "provider", "runtime", "project", "zone", "state", "address", "age")
    for r in rows:
        runtime = r.get("runtime", "vm") + (f" ({r['accel']})" if r.get("accel") else "")
        table.add_row(r["name"], r["provider"], runtime, r["project"], r.get("zone", ""), r["state"], r["address"],
                      _age(r["age_s"]) if r.get("age_s") is not None else r.get("created", "-"))
    Console().print(table)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def status(
    name: Optional[str] = typer.Option(None, help="Only this instance."),
    project: Optional[str] = typer.Option(None, help="Only the instances of this project (and its GCE "
                                          "playgrounds, in every zone)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C."),
    interval: float = typer.Option(5.0, help="Seconds between refreshes with --watch."),
    timeout: float = typer.Option(8.0, help="Seconds before a machine counts as unreachable."),
    as_json: bool = typer.Option(False, "--json", help="Print the model as JSON for scripts."),
    zone: Optional[str] = ONLY_ZONE,
    provider: Optional[str] = ONLY_PROVIDER,
) -> None:
    """Is each playground usable? Instance, schedule, services, disk and memory at a glance.

    Exit code: 0 healthy, 1 degraded, 2 down or unreachable (for monitoring).
    """
    import json

    from rich.live import Live

    from .. import providers
    from .. import status as status_mod

    def model() -> dict:
        machines = [m for chosen in providers.listing(provider, project, zone) for m in chosen.machines(name, project)]
        if name and not machines:
            raise PlaygroundError(f"no instance named {name!r} (see `playground list`)")
        return status_mod.collect(machines, timeout)

    with one_line():
        current = model()
        if as_json:
            print(json.dumps(current, indent=2, sort_keys=True))
        elif watch:
            with Live(status_mod.render(current), console=Console(), auto_refresh=False) as live:
                try:
                    while True:
                        time.sleep(interval)
                        current = model()
                        live.update(status_mod.render(current), refresh=True)
                except KeyboardInterrupt:
                    pass
        else:
            Console().print(status_mod.render(current))
    raise typer.Exit(status_mod.exit_code(current))


def lineage(
    model: Optional[str] = typer.Option(None, help="NAME or NAME/VERSION of a registered model: the pipeline run "
                                        "and tables behind it (newest version if none given)."),
    pipeline: Optional[str] = typer.Option(None, help="A DAG id: its recorded runs, their tables, and the models "
                                           "built from them."),
    last: int = typer.Option(10, min=1, help="--pipeline: how many of the newest DAG runs to show."),
    name: Optional[str] = SOME_NAME,
    project: Optional[str] = SOME_PROJECT,
    as_json: bool = typer.Option(False, "--json", help="Print the lineage as JSON for scripts."),
    provider: Optional[str] = REACH_PROVIDER,
    zone: Optional[str] = typer.Option(None, help="gce: the zone."),
) -> None:
    """Walk the Airflow -> MLflow lineage: model -> pipeline run -> tables, or pipeline -> runs -> models.

    Read from the machine's MLflow server through an SSH tunnel that closes when done.
    """
    import json

    from .. import lineage as lineage_mod
    from .. import remote

    with one_line():
        if (model is None) == (pipeline is None):
            raise PlaygroundError("give exactly one of --model NAME[/VERSION] or --pipeline DAG_ID")
        wanted = lineage_mod.parse_model(model) if model else None
        machine = provider_for(provider, project, zone).reach(name, project)
        target = machine.target
        conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
        with remote.one_line_errors(target), remote.forwards(conn, [machine.web["mlflow"]]) as (fw,):
            api = lineage_mod.Mlflow(fw.url)
            if wanted:
                found = lineage_mod.model_lineage(api, *wanted)
            else:
                found = lineage_mod.pipeline_lineage(api, pipeline, last=last)
    if as_json:
        print(json.dumps(found, indent=2, sort_keys=True))
    else:
        Console().print(lineage_mod.render_model(found) if wanted else lineage_mod.render_pipeline(found))
