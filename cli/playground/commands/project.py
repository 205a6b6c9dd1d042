"""A team's own work on the playground: `deploy` its project, `backup` and `restore` its data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..ui import console
from .common import (
    GCE_PROJECT,
    NAME,
    PROVIDER,
    REACH_PROVIDER,
    SOME_NAME,
    SOME_PROJECT,
    ZONE,
    one_line,
    provider_for,
    working,
)


def print_deployed(done, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(done.as_json(), indent=2, sort_keys=True))
        return
    console.print(f"[green]{done.name}[/green]: {len(done.added)} added, {len(done.changed)} changed, "
                  f"{len(done.removed)} removed, {done.unchanged} unchanged in {done.where}", highlight=False)
    for what, names in (("added", done.added), ("changed", done.changed), ("removed", done.removed)):
        if names and len(names) <= 10:
            console.print(f"  {what}: {', '.join(names)}", highlight=False, soft_wrap=True)
    if done.settings:
        applied, removed = done.settings.get("applied", {}), done.settings.get("removed", {})
        parts = [f"{len(applied.get(k, []))} {k}" for k in ("connections", "variables", "pools")]
        gone = sum(len(v) for v in removed.values())
        if done.settings.get("unchanged"):
            console.print(f"  settings: unchanged ({', '.join(parts)})", highlight=False)
        else:
            console.print(f"  settings: {', '.join(parts)} applied" + (f", {gone} removed (gone from the file)"
                                                                       if gone else ""), highlight=False)
    if done.packages:
        pk = done.packages
        if pk.get("cleared"):
            console.print("  packages: none any more (requirements.txt is gone)", highlight=False)
        elif "sha256" in pk:
            how = "installed" if pk.get("installed") else "switched back to (kept from before)"
            console.print(f"  packages: {how}: {', '.join(pk.get('requirements') or []) or '(none listed)'}",
                          highlight=False, soft_wrap=True)
    for worker, pk in sorted(done.workers.items()):
        said = ("packages up to date" if pk is None else "packages removed (requirements.txt is gone)"
                if pk.get("cleared") else "packages installed" if pk.get("installed") else
                "packages switched back (kept from before)")
        console.print(f"  worker {worker}: {said}", highlight=False)
    if done.missing:
        console.print(f"[yellow]not on the machine yet[/yellow] (the bucket's sync is behind): "
                      f"{', '.join(done.missing)}", highlight=False, soft_wrap=True)
    console.print(f"  DAGs: {len(done.dags)} parsed" + (f" ({', '.join(done.dags)})" if 0 < len(done.dags) <= 8
                                                        else ""), highlight=False, soft_wrap=True)
    for path, error in sorted(done.import_errors.items()):
        console.print(f"[red]import error[/red] {escape(path)}: {escape(error)}", highlight=False, soft_wrap=True)


def deploy(
    folder: Path = typer.Argument(Path("."), help="The project folder: DAG files (in dags/ if there is one), "
                                  "and an optional airflow_settings.yaml (astro's layout)."),
    name: Optional[str] = SOME_NAME,
    project: Optional[str] = SOME_PROJECT,
    as_json: bool = typer.Option(False, "--json", help="Print what was deployed as JSON for scripts."),
    provider: Optional[str] = REACH_PROVIDER,
    zone: Optional[str] = ZONE,
) -> None:
    """Make the playground's DAG folder equal the project's DAGs; apply its settings.

    The DAGs go to gs://DAGS-BUCKET/dags/ where the machine has a dags-bucket,
    else over SSH into its DAG folder: new and changed files written, files
    gone from the folder removed (as `gsutil rsync -d`). The connections,
    variables and pools of airflow_settings.yaml are applied (no value is
    printed). Then the machine parses the folder with Airflow itself, and
    each import error is one line.

    Exit code: 0 deployed and every file imports, 3 deployed with import
    errors, 1 failed (one line says why).
    """
    from .. import project as project_mod

    with one_line():
        proj = project_mod.load(folder)
        chosen = provider_for(provider, project, zone)
    deploy_onto(chosen, name, project, proj, as_json)


def deploy_onto(chosen, name: Optional[str], project: Optional[str], proj, as_json: bool) -> None:
    """Deploy proj onto the machine chosen.reach(name, project) means; exits 3 on import errors."""
    from .. import deploy as deploy_mod
    from ..gce.google import storage_client

    with one_line():
        target = chosen.reach(name, project).target
        with working("deploying") as report:
            done = deploy_mod.deploy(target, proj, report, storage_client, chosen.worker_targets(target.name))
            report(f"deployed to {done.name}")
    print_deployed(done, as_json)
    if done.import_errors:
        raise typer.Exit(3)


def backup(
    name: str = NAME,
    # Typer reads help as rich markup: the bracket is escaped, else --help fails on "[/PREFIX]".
    to: str = typer.Option(..., "--to", metavar="FOLDER|gs://BUCKET[/PREFIX]",
                           help="The folder the backup file goes to (made 0600: it holds the machine's Fernet "
                           "key), or gs://BUCKET\\[/PREFIX] (an existing bucket; never overwritten)."),
    as_json: bool = typer.Option(False, "--json", help="Print the file and its manifest as JSON for scripts."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Back up a running instance into TO/NAME-YYYYmmdd-HHMMSS.tar while it runs.

    In it: a pg_dump of Airflow's,
    MLflow's and the warehouse's databases (each in one snapshot), the Fernet key, MLflow's local artifacts,
    and a manifest with the counts and versions. `playground restore` puts it onto another instance."""
    import json

    from .. import backup as backup_mod

    with one_line():
        to_gs = backup_mod.gs_location(to, "--to")  # a bad URL is refused before the machine is looked for
        target = provider_for(provider, project, zone).reach(name, project).target
        with working(f"backing up {name}") as report:
            done = (backup_mod.backup_to_gs(target, to, project, report) if to_gs
                    else backup_mod.backup(target, Path(to), report))
    if as_json:
        print(json.dumps({"path": str(done.path), "bytes": done.size, "seconds": done.seconds,
                          "manifest": done.manifest}, indent=2, sort_keys=True))
        return
    print_counts({db: v["counts"] for db, v in done.manifest["databases"].items()})
    for what in done.manifest.get("absent") or []:
        console.print(f"not in this backup: {escape(what)}", highlight=False)
    console.print(f"backup of {name}: {done.path} ({done.size / 2**20:.1f} MiB, {done.seconds} s)", highlight=False)


def restore(
    name: str = typer.Option(..., help="Instance name: the machine the backup goes onto (a fresh one)."),
    from_: str = typer.Option(..., "--from", metavar="FILE|gs://BUCKET/OBJECT",
                              help="A backup file made by `playground backup`, here or at gs://BUCKET/PATH/NAME.tar."),
    replace: bool = typer.Option(False, "--replace", help="Drop the machine's own DAG runs, MLflow runs and "
                                 "warehouse tables (refused without it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts found and expected as JSON."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Restore a backup onto a running instance.

    Its databases and artifacts are replaced by the backup's,
    connections re-encrypted with this machine's key, Airflow migrated to this machine's version, this
    machine's admin password kept. A backup of a newer Airflow or PostgreSQL is refused (a downgrade),
    before anything changes. Exit code 0 when every count equals the manifest's and the machine is healthy
    again, 1 otherwise."""
    import json

    from .. import backup as backup_mod

    with one_line():
        from_gs = backup_mod.gs_location(from_, "--from")
        target = provider_for(provider, project, zone).reach(name, project).target
        with working(f"restoring onto {name}") as report:
            if from_gs:
                import tempfile

                with tempfile.TemporaryDirectory(prefix="playground-restore-") as folder:
                    fetched = backup_mod.download_from_gs(from_, Path(folder), project, report)
                    result = backup_mod.restore(target, fetched, replace, report)
            else:
                result = backup_mod.restore(target, Path(from_), replace, report)
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print_counts(result["expected"], result["found"])
        same = result["found"] == result["expected"]
        console.print(f"restored {from_.rsplit('/', 1)[-1]} onto {name} in {result['seconds']} s: "
                      + ("every count as in the backup" if same else "counts differ from the backup's")
                      + ("" if result.get("healthy", True) else "; not healthy: " + "; ".join(result["problems"])),
                      highlight=False)
    if not result["ok"]:
        raise typer.Exit(1)


def print_counts(expected: dict, found: Optional[dict] = None) -> None:
    from rich.table import Table

    from ..backup import counts_rows

    table = Table("what", "in the backup", *(["found"] if found is not None else []))
    for what, count, got in counts_rows(expected, found):
        table.add_row(what, count, *([got] if found is not None else []))
    console.print(table)
