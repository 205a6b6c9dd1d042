"""playground: a private Airflow 2 + MLflow machine per project.

Google libraries are imported lazily inside the commands that need them, so
`playground --help` stays fast.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import attributes
from .errors import PlaygroundError
from .schedule_cli import schedule_app
from .ui import console, fail, progress

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False)
image_app = typer.Typer(help="Build and list golden images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
app.add_typer(schedule_app, name="schedule")


@image_app.command("build")
def image_build(
    profile: Optional[str] = typer.Option(
        None, help="Image profile: local (built here; the default) or seed-local (the seed's Airflow 2.0 on "
                   "Debian 11, built here), or seed / current for --gce "
                   "(default: gce_profile in the settings, else seed)."),
    local: bool = typer.Option(True, "--local/--gce", help="Build the local image here, or a GCE image with Packer."),
    project: Optional[str] = typer.Option(None, help="--gce: project to build in and keep the image "
                                                     "(else PLAYGROUND_PROJECT, playground.toml)."),
    zone: Optional[str] = typer.Option(None, help="--gce: zone of the build VM (else PLAYGROUND_ZONE, "
                                                  "playground.toml, europe-west2-b)."),
) -> None:
    """Build the golden image with Packer, showing progress.

    Local: a Debian 12 rootfs provisioned in a systemd-nspawn container; the
    debootstrap base and the pip wheels are cached under PLAYGROUND_CACHE
    (default /var/cache/playground) so rebuilds are warm. Prints the image folder.

    --gce: `packer build -only=googlecompute.gce` with Application Default
    Credentials; the image joins the family playground-PROFILE that `launch`
    takes. Prints the image name.

    Either way the template is validated first, and a failed or interrupted build
    leaves no image behind.
    """
    try:
        chosen = _provider("local" if local else "gce", project, zone)
        profile = chosen.profile(profile)
        with progress() as bar:
            task = bar.add_task("starting", total=None)
            t0 = time.monotonic()
            report = lambda s: bar.update(task, description=s)  # noqa: E731
            notice = lambda s: bar.console.print(s, markup=False, highlight=False)  # noqa: E731
            built = chosen.build_image(profile, report, notice)
            bar.update(task, description=f"built {Path(built).name} in {time.monotonic() - t0:.0f} s")
    except PlaygroundError as exc:
        fail(exc)
    print(built)


@image_app.command("list")
def image_list(
    profile: Optional[str] = typer.Option(None, help="Image profile (default: local, or seed-local; with --gce, "
                                                     "gce_profile in the settings, else seed)."),
    gce: bool = typer.Option(False, "--gce", help="List the GCE images of the profile's family instead."),
    project: Optional[str] = typer.Option(None, help="--gce: the project (else PLAYGROUND_PROJECT, playground.toml; "
                                                     "images are read from image_project when set)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the images of a profile, newest last: the one `launch` takes.

    Local images are read from PLAYGROUND_HOME; --gce lists the family
    playground-PROFILE in the project, with the versions from the image labels.
    """
    import json

    from rich.table import Table

    try:
        chosen = _provider("gce" if gce else "local", project, None)
        profile = chosen.profile(profile)
        rows, columns = chosen.images(profile)
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no {profile} images for the {chosen.name} provider: `playground image build"
                      f"{' --gce' if gce else ''}` makes one", highlight=False)
        return
    # The names carry the build time; --json adds when, the checksum and where.
    table = Table()
    for c in columns:
        table.add_column(c, no_wrap=True)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console().print(table)


@image_app.command("push")
def image_push(
    gce: bool = typer.Option(False, "--gce", help="Push to Google Compute Engine (the one destination)."),
    project: Optional[str] = typer.Option(None, help="The GCP project that keeps the image (else image_project, "
                                                     "PLAYGROUND_PROJECT, playground.toml)."),
    profile: str = typer.Option("local", help="The local profile whose image is pushed: local or seed-local."),
    image: Optional[str] = typer.Option(None, help="The local image's name (default: the profile's newest; "
                                                   "`playground image list`)."),
    bucket: Optional[str] = typer.Option(None, help="Cloud Storage bucket the archive goes through (default "
                                                    "PROJECT-playground-images, made if missing)."),
    zone: Optional[str] = typer.Option(None, help="A zone whose region holds a new bucket (else PLAYGROUND_ZONE, "
                                                  "playground.toml, europe-west2-b)."),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the disk archive in the bucket after "
                                                                    "the import (it is removed by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was made as JSON."),
) -> None:
    """Push the local image's bootable disk, the one the tests boot here, to GCE as an image.

    The disk is archived as disk.raw in a sparse tar.gz, uploaded to a bucket, and imported with
    images.insert into the family playground-PROFILE, labelled with the image's Airflow and MLflow
    versions and marked UEFI-compatible for Shielded VM. Then `playground launch --provider gce
    --profile PROFILE` boots it. A failed push removes the archive and any failed image.
    """
    import json

    from .image import profiles, push

    try:
        if not gce:
            raise PlaygroundError("image push: --gce is required (Google Compute Engine is the one destination)")
        profiles.check(profile)
        if not profiles.debian_suite(profile):
            raise PlaygroundError(f"--profile: {profile} is built on GCE already; push one of "
                                  f"{', '.join(profiles.local_profiles())}")
        chosen = _provider("gce", project, zone)
        folder = push.newest_pushable(profile, image)
        target = chosen.s.image_project or chosen.s.project
        with progress() as bar:
            task = bar.add_task(f"pushing {folder.name}", total=None)
            made = push.push(chosen.s, profile, folder, bucket or push.default_bucket(target),
                             lambda s: bar.update(task, description=s), keep_archive=keep_archive)
            bar.update(task, description=f"pushed {made['image']} in {made['seconds']:.0f} s")
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(made, indent=2))
        return
    console.print(f"[green]{made['image']}[/green] is in family {made['family']} of project {made['project']} "
                  f"(archive {made['archive_bytes'] / 2**20:.0f} MiB of a {made['disk_bytes'] / 2**30:.0f} GiB disk)",
                  highlight=False)
    console.print(f"  launch it: playground launch --provider gce --profile {profile} --project {made['project']}",
                  highlight=False)
    print(made["image"])


PROVIDER = typer.Option(None, help="local or gce (else PLAYGROUND_PROVIDER, playground.toml, local).")
ZONE = typer.Option(None, help="gce: the zone (else PLAYGROUND_ZONE, playground.toml; for an existing VM, "
                    "found in every zone).")
GCE_PROJECT = typer.Option(None, help="gce: the GCP project (else PLAYGROUND_PROJECT, playground.toml).")


def _provider(flag: Optional[str], project: Optional[str], zone: Optional[str], say: bool = False, **gce):
    """The command's one provider, its settings checked; with say, print which and why."""
    from . import providers

    chosen, source = providers.choose(flag, project, zone, **gce)
    if say:
        console.print(f"provider: [bold]{chosen.name}[/bold] ({source})", highlight=False)
    return chosen


def _how_to_reach(launched) -> None:
    state = "booting (not waited for)" if launched.healthy is None else "healthy"
    console.print(f"[green]{launched.name}[/green] is {state} at {launched.address}: {launched.detail}",
                  highlight=False)
    for warning in launched.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    width = max(len(what) for what, _ in launched.next_steps) + 2
    for what, how in launched.next_steps:
        console.print(f"  {(what + ':').ljust(width)}{how}", highlight=False, soft_wrap=True)


@app.command()
def launch(
    project: str = typer.Option(..., help="GCP project id the playground works for (6-30 of a-z 0-9 -)."),
    name: Optional[str] = typer.Option(None, help="Instance name; defaults to the project id."),
    provider: Optional[str] = PROVIDER,
    profile: Optional[str] = typer.Option(None, help="Image profile to launch from (local: local or seed-local; gce: "
                                          "gce_profile in the settings, else seed)."),
    set_: list[str] = typer.Option([], "--set", help="Metadata attribute KEY=VALUE, checked before anything is "
                                   "made; repeat. Known: " + attributes.known() + "."),
    build: bool = typer.Option(True, help="local: build the image first if there is none."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the machine is healthy (gce: over "
                              "SSH through IAP)."),
    timeout: float = typer.Option(300, help="Seconds to wait for the instance to turn healthy."),
    zone: Optional[str] = typer.Option(None, help="gce: zone (else PLAYGROUND_ZONE, playground.toml, "
                                       "europe-west2-b)."),
    machine_type: Optional[str] = typer.Option(None, help="gce: machine type (default e2-standard-2: 2 vCPUs, "
                                               "8 GB, from measured memory; see Day two in the README)."),
    disk_size: Optional[int] = typer.Option(None, help="gce: boot disk size in GB (default 50)."),
    runtime: Optional[str] = typer.Option(None, help="local: nspawn (a container on this kernel; the default) or "
                                          "vm (the image's disk in QEMU, as GCE boots it: KVM where it boots "
                                          "guests, else software emulation, slow)."),
    data_disk: int = typer.Option(0, "--data-disk", help="The data volume's size (databases, artifacts, task "
                                  "logs; kept by `upgrade`). gce: GB of its persistent disk (default data_disk_gb, "
                                  "20). local: GiB of a volume of that size (nspawn: an ext4 file, loop-mounted; "
                                  "without it a folder of the instance's own; --runtime vm: a data disk, without "
                                  "which the data stays on the boot disk)."),
    dags: Optional[Path] = typer.Option(None, "--dags", help="A project folder to deploy once the machine is "
                                        "healthy (as `playground deploy DIR`)."),
    autostop: Optional[str] = typer.Option(None, "--autostop", metavar="MINUTES|off",
                                           help="Power the machine off after this many idle minutes (no task "
                                           "running or queued, no SSH session or tunnel); the attribute autostop. "
                                           "Change it later with `playground autostop`."),
    workers: int = typer.Option(0, "--workers", help="Celery worker machines beside the main, from "
                                "the same image: the main runs CeleryExecutor with Redis as the broker on a private "
                                "network (local: a bridge of the playground's own; gce: the subnet's internal "
                                "addresses, one firewall rule, the keys in Secret Manager, needs dags-bucket and "
                                "logs-bucket); each worker runs `airflow celery worker` (see Workers in the "
                                "README)."),
) -> None:
    """Create a playground instance from the newest image and wait until it is healthy.

    local: boots the local image here, in a container (--runtime nspawn) or a
    virtual machine (--runtime vm). gce: a VM in the project with no external
    IP, Shielded VM, the settings as metadata; the image family playground-PROFILE.
    Every flag and --set value is checked before any request or boot.
    """
    from . import project as project_mod
    from .providers import LaunchRequest

    try:
        try:  # a bad folder fails before anything is made
            proj = project_mod.load(dags) if dags is not None else None
        except PlaygroundError as exc:
            raise PlaygroundError(f"--dags: {exc}") from exc
        if proj is not None and not wait:
            raise PlaygroundError("--dags: deploys once the machine is healthy, so it needs --wait "
                                  "(or launch --no-wait, then `playground deploy`)")
        chosen = _provider(provider, project, zone, say=True, machine_type=machine_type, disk_size_gb=disk_size,
                           data_disk_gb=data_disk or None)
        if chosen.name != "local" and runtime is not None:
            raise PlaygroundError("--runtime: local instances only (a GCE instance is a VM already)")
        if autostop is not None:
            if any(pair.partition("=")[0] == "autostop" for pair in set_):
                raise PlaygroundError("--autostop: given twice (also as --set autostop=...)")
            set_ = [*set_, "autostop=" + attributes.autostop_value(autostop)]
        if not 0 <= workers <= MAX_WORKERS:
            raise PlaygroundError(f"--workers: expected 0-{MAX_WORKERS} worker machines, got {workers}")
        if workers and len(name or project) > 28:
            raise PlaygroundError(f"--name: expected at most 28 characters with --workers (its workers are "
                                  f"NAME-wK), got {(name or project)!r}")
        ours = ("role", "main-address", "private-subnet", "airflow-executor", "cluster-secret")
        if workers and any(pair.partition("=")[0] in ours for pair in set_):
            raise PlaygroundError("--workers: sets role, main-address, private-subnet, airflow-executor and "
                                  "cluster-secret itself; do not --set them too")
        attrs = attributes.parse_sets(set_, project)
        chosen_profile = chosen.profile(profile)
        if workers:
            from .image import profiles

            if not profiles.has_celery(chosen_profile):
                with_celery = [p for p in profiles.known() if profiles.has_celery(p)
                               and bool(profiles.debian_suite(p)) == bool(profiles.debian_suite(chosen_profile))]
                raise PlaygroundError(f"--workers: profile {chosen_profile} has no Celery provider in its Airflow "
                                      f"lock; use --profile {' or '.join(with_celery) or 'local'}")
        req = LaunchRequest(name=name or project, project=project, attributes=attrs,
                            profile=chosen_profile, wait=wait, timeout=timeout, build=build,
                            runtime=runtime or "nspawn", data_disk_gb=data_disk if chosen.name == "local" else 0,
                            workers=workers)
        with progress() as bar:
            task = bar.add_task("starting", total=None)
            t0 = time.monotonic()
            launched = chosen.launch(req, lambda m: bar.update(task, description=m))
            bar.update(task, description=f"{launched.name} {'healthy' if wait else 'created'} in "
                                         f"{time.monotonic() - t0:.0f} s")
    except PlaygroundError as exc:
        fail(exc)
    _how_to_reach(launched)
    if proj is not None:
        _deploy(chosen, launched.name, None, proj, as_json=False)


MAX_WORKERS = 8  # each worker is a machine of its own: past that, a team wants Composer (README, Workers)


@app.command()
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
    """Add or remove a playground's Celery worker machines (launched with --workers). Fewer: each removed
    worker's running tasks finish first (Celery's warm shutdown), stopped workers go first."""
    try:
        if not 0 <= workers <= MAX_WORKERS:
            raise PlaygroundError(f"--workers: expected 0-{MAX_WORKERS} worker machines, got {workers}")
        chosen = _provider(provider, project, zone)
        with progress() as bar:
            task = bar.add_task(f"scaling {name} to {workers} worker(s)", total=None)
            done = chosen.scale(name, workers, force, lambda m: bar.update(task, description=m))
    except PlaygroundError as exc:
        fail(exc)
    for line in done or [f"{name} has {workers} worker(s) already"]:
        console.print(line, highlight=False)


@app.command()
def start(
    name: str = typer.Option(..., help="Instance name."),
    timeout: float = typer.Option(300, help="Seconds to wait for healthy."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the machine is healthy."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Boot a stopped instance; everything comes back by itself."""
    try:
        chosen = _provider(provider, project, zone)
        with progress() as bar:
            task = bar.add_task("booting", total=None)
            launched = chosen.start(name, lambda m: bar.update(task, description=m), wait=wait, timeout=timeout)
            bar.update(task, description=f"{name} {'healthy' if wait else 'started'}")
    except PlaygroundError as exc:
        fail(exc)
    _how_to_reach(launched)


@app.command()
def upgrade(
    name: str = typer.Option(..., help="Instance name."),
    image: Optional[str] = typer.Option(None, help="The image to move to: a name from `playground image list` "
                                        "(local: or an image folder). Default: the newest of its profile."),
    timeout: float = typer.Option(600, help="Seconds to wait for healthy on the new image."),
    as_json: bool = typer.Option(False, "--json", help="Print what changed and the time taken as JSON."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Move an instance to a newer image and keep everything on its data volume: DAG runs, MLflow runs,
    models and artifacts, warehouse tables, connections, task logs. The machine is stopped, boots a fresh
    boot disk (local: boot layer) of the new image, and its agent runs Airflow's migration at that boot.

    Refused in one line, before anything changes: a downgrade (an older Airflow or MLflow, or an older
    build), a PostgreSQL major-version change (back up, launch a new one, restore), a machine whose data
    is on its boot disk."""
    import json

    try:
        chosen = _provider(provider, project, zone)
        with progress() as bar:
            task = bar.add_task(f"upgrading {name}", total=None)
            done = chosen.upgrade(name, image, lambda m: bar.update(task, description=m), timeout=timeout)
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"name": name, "upgraded": done.launched is not None, "change": done.change,
                          "seconds": done.seconds, "healthy": done.launched.healthy if done.launched else None},
                         indent=2, sort_keys=True))
        return
    if done.launched is None:
        console.print(escape(done.change), highlight=False)
        return
    console.print(f"upgraded {name}: {escape(done.change)}, healthy in {done.seconds:.0f} s", highlight=False)
    _how_to_reach(done.launched)


@app.command()
def stop(
    name: str = typer.Option(..., help="Instance name."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Shut an instance down cleanly (services stop in order, PostgreSQL flushes)."""
    try:
        chosen = _provider(provider, project, zone)
        with progress() as bar:
            task = bar.add_task(f"stopping {name}", total=None)
            done = chosen.stop(name, lambda m: bar.update(task, description=m))
    except PlaygroundError as exc:
        fail(exc)
    console.print(f"stopped {name}: " + (", ".join(done) or "it was not running"), highlight=False)


@app.command("autostop")
def autostop_(
    minutes: str = typer.Argument(..., metavar="MINUTES|off", help="Idle minutes before the machine powers itself "
                                  "off (1-1440), or off."),
    name: str = typer.Option(..., help="Instance name."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Set idle autostop on an instance, running or stopped: it powers itself off (a stopped VM on GCE, no
    vCPU or memory billed) after MINUTES with no Airflow task running or queued and no SSH session or tunnel
    open. A running machine takes the new setting within 10 s and starts its idle clock again; `status`
    shows "autostop in N min" or what holds the machine up."""
    try:
        value = attributes.autostop_value(minutes, flag="MINUTES")
        chosen = _provider(provider, project, zone)
        row = chosen.describe(name)
        with progress() as bar:
            task = bar.add_task(f"autostop {value} on {name}", total=None)
            chosen.set_attributes(name, {"autostop": value}, lambda m: bar.update(task, description=m))
    except PlaygroundError as exc:
        fail(exc)
    when = "now" if row.get("state") == "running" else "at its next start"
    what = "off" if value == "off" else f"after {value} idle minute(s)"
    console.print(f"autostop on {name}: {what} (takes effect {when})", highlight=False)


@app.command()
def destroy(
    name: str = typer.Option(..., help="Instance name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Remove everything launch made: processes, namespace, links, mount, files, state (or the VM and its disk)."""
    try:
        chosen = _provider(provider, project, zone)
        chosen.describe(name)  # a name that is not there fails before the question
    except PlaygroundError as exc:
        fail(exc)
    if not yes and not typer.confirm(f"destroy instance {name} and its data?"):
        raise typer.Exit(1)
    try:
        with progress() as bar:
            task = bar.add_task(f"destroying {name}", total=None)
            removed = chosen.destroy(name, lambda m: bar.update(task, description=m))
    except PlaygroundError as exc:
        fail(exc)
    for item in removed:
        console.print(f"removed {item}", highlight=False)


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    project: Optional[str] = typer.Option(None, help="Also list the GCE playgrounds of this project, in every "
                                          "zone (else PLAYGROUND_PROJECT / playground.toml)."),
    zone: Optional[str] = typer.Option(None, help="gce: only this zone."),
    provider: Optional[str] = typer.Option(None, help="Only this provider (default: local, and gce when a "
                                           "project is configured)."),
) -> None:
    """Show every instance of the configured providers with its state and age."""
    import json

    from rich.table import Table

    from . import providers

    try:
        rows = [row for chosen in providers.listing(provider, project, zone) for row in chosen.list()]
    except PlaygroundError as exc:
        fail(exc)
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


@app.command()
def tunnel(
    name: Optional[str] = typer.Option(None, help="Instance name (default: the one for --project, or the only one)."),
    project: Optional[str] = typer.Option(None, help="Pick the instance of this project."),
    port: list[int] = typer.Option([], "--port", help="Remote port on the machine's 127.0.0.1 to forward; repeat. "
                                   "Default: Airflow's and MLflow's."),
    as_json: bool = typer.Option(False, "--json", help="Print the forwards as one JSON line for scripts."),
    provider: Optional[str] = typer.Option(None, help="local or gce (gce: SSH through IAP, needs gcloud)."),
    zone: Optional[str] = ZONE,
) -> None:
    """Forward the web UIs (bound to the machine's 127.0.0.1) to this machine until Ctrl-C.

    A local port already in use is replaced by the next free one, and said so.
    """
    import json
    import signal
    import threading

    from . import remote

    try:
        machine = _provider(provider, project, zone).reach(name, project)
        labels = {v: k for k, v in machine.web.items()}
        wanted = port or list(machine.web.values())
        target = machine.target
        conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
        stop_event = threading.Event()
        # Both set explicitly: a tunnel started from a script's background job inherits SIGINT ignored,
        # and Ctrl-C (or kill -INT) must still close it.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_event.set())
        with remote.one_line_errors(target), remote.forwards(conn, wanted) as fws:
            for fw in fws:
                if fw.local_port != fw.remote_port:
                    console.print(f"local port {fw.remote_port} is in use: using {fw.local_port}",
                                  highlight=False)
            if as_json:
                print(json.dumps({"instance": target.name, "admin_user": machine.admin, "forwards": [
                    {"service": labels.get(f.remote_port, "port"), "remote_port": f.remote_port,
                     "local_port": f.local_port, "url": f.url} for f in fws]}), flush=True)
            else:
                for fw in fws:
                    console.print(f"{labels.get(fw.remote_port, 'port').ljust(8)} {fw.url}  "
                                  f"(machine's 127.0.0.1:{fw.remote_port})", highlight=False)
                console.print(f"Airflow admin user: {machine.admin}  (password: {machine.ssh_command} -- sudo "
                              "playground-agent admin-password)", highlight=False)
                console.print("forwarding; Ctrl-C to close", highlight=False)
            while not stop_event.wait(0.5):
                pass
    except PlaygroundError as exc:
        fail(exc)
    console.print("tunnel closed", highlight=False)


@app.command()
def status(
    name: Optional[str] = typer.Option(None, help="Only this instance."),
    project: Optional[str] = typer.Option(None, help="Only the instances of this project (and its GCE "
                                          "playgrounds, in every zone)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C."),
    interval: float = typer.Option(5.0, help="Seconds between refreshes with --watch."),
    timeout: float = typer.Option(8.0, help="Seconds before a machine counts as unreachable."),
    as_json: bool = typer.Option(False, "--json", help="Print the model as JSON for scripts."),
    zone: Optional[str] = typer.Option(None, help="gce: only this zone."),
    provider: Optional[str] = typer.Option(None, help="Only this provider (default: local, and gce when a "
                                           "project is configured)."),
) -> None:
    """Is each playground usable? Instance, schedule, services, disk and memory at a glance.

    Exit code: 0 healthy, 1 degraded, 2 down or unreachable (for monitoring).
    """
    import json

    from rich.live import Live

    from . import providers
    from . import status as status_mod

    def model() -> dict:
        machines = [m for chosen in providers.listing(provider, project, zone) for m in chosen.machines(name, project)]
        if name and not machines:
            raise PlaygroundError(f"no instance named {name!r} (see `playground list`)")
        return status_mod.collect(machines, timeout)

    try:
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
    except PlaygroundError as exc:
        fail(exc)
    raise typer.Exit(status_mod.exit_code(current))


@app.command()
def lineage(
    model: Optional[str] = typer.Option(None, help="NAME or NAME/VERSION of a registered model: the pipeline run "
                                        "and tables behind it (newest version if none given)."),
    pipeline: Optional[str] = typer.Option(None, help="A DAG id: its recorded runs, their tables, and the models "
                                           "built from them."),
    last: int = typer.Option(10, min=1, help="--pipeline: how many of the newest DAG runs to show."),
    name: Optional[str] = typer.Option(None, help="Instance name (default: the one for --project, or the only one)."),
    project: Optional[str] = typer.Option(None, help="Pick the instance of this project."),
    as_json: bool = typer.Option(False, "--json", help="Print the lineage as JSON for scripts."),
    provider: Optional[str] = typer.Option(None, help="local or gce (gce: SSH through IAP, needs gcloud)."),
    zone: Optional[str] = typer.Option(None, help="gce: the zone."),
) -> None:
    """Walk the Airflow -> MLflow lineage: model -> pipeline run -> tables, or pipeline -> runs -> models.

    Read from the machine's MLflow server through an SSH tunnel that closes when done.
    """
    import json

    from . import lineage as lineage_mod
    from . import remote

    try:
        if (model is None) == (pipeline is None):
            raise PlaygroundError("give exactly one of --model NAME[/VERSION] or --pipeline DAG_ID")
        wanted = lineage_mod.parse_model(model) if model else None
        machine = _provider(provider, project, zone).reach(name, project)
        target = machine.target
        conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
        with remote.one_line_errors(target), remote.forwards(conn, [machine.web["mlflow"]]) as (fw,):
            api = lineage_mod.Mlflow(fw.url)
            if wanted:
                found = lineage_mod.model_lineage(api, *wanted)
            else:
                found = lineage_mod.pipeline_lineage(api, pipeline, last=last)
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(found, indent=2, sort_keys=True))
    else:
        Console().print(lineage_mod.render_model(found) if wanted else lineage_mod.render_pipeline(found))


def _print_deployed(done, as_json: bool) -> None:
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


@app.command()
def deploy(
    folder: Path = typer.Argument(Path("."), help="The project folder: DAG files (in dags/ if there is one), "
                                  "and an optional airflow_settings.yaml (astro's layout)."),
    name: Optional[str] = typer.Option(None, help="Instance name (default: the one for --project, or the only one)."),
    project: Optional[str] = typer.Option(None, help="Pick the instance of this project."),
    as_json: bool = typer.Option(False, "--json", help="Print what was deployed as JSON for scripts."),
    provider: Optional[str] = typer.Option(None, help="local or gce (gce: SSH through IAP, needs gcloud)."),
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
    from . import project as project_mod

    try:
        proj = project_mod.load(folder)
        chosen = _provider(provider, project, zone)
    except PlaygroundError as exc:
        fail(exc)
    _deploy(chosen, name, project, proj, as_json)


def _deploy(chosen, name: Optional[str], project: Optional[str], proj, as_json: bool) -> None:
    """Deploy proj onto the machine chosen.reach(name, project) means; exits 3 on import errors."""
    from . import deploy as deploy_mod
    from .gce.google import storage_client

    try:
        target = chosen.reach(name, project).target
        with progress() as bar:
            task = bar.add_task("deploying", total=None)
            done = deploy_mod.deploy(target, proj, lambda m: bar.update(task, description=m), storage_client,
                                     chosen.worker_targets(target.name))
            bar.update(task, description=f"deployed to {done.name}")
    except PlaygroundError as exc:
        fail(exc)
    _print_deployed(done, as_json)
    if done.import_errors:
        raise typer.Exit(3)


@app.command()
def backup(
    name: str = typer.Option(..., help="Instance name."),
    to: str = typer.Option(..., "--to", help="The folder the backup file goes to (made 0600: it holds the "
                           "machine's Fernet key), or gs://BUCKET[/PREFIX] (an existing bucket; never "
                           "overwritten)."),
    as_json: bool = typer.Option(False, "--json", help="Print the file and its manifest as JSON for scripts."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Back up a running instance into TO/NAME-YYYYmmdd-HHMMSS.tar while it runs: a pg_dump of Airflow's,
    MLflow's and the warehouse's databases (each in one snapshot), the Fernet key, MLflow's local artifacts,
    and a manifest with the counts and versions. `playground restore` puts it onto another instance."""
    import json

    from . import backup as backup_mod

    try:
        to_gs = backup_mod.gs_location(to, "--to")  # a bad URL is refused before the machine is looked for
        target = _provider(provider, project, zone).reach(name, project).target
        with progress() as bar:
            task = bar.add_task(f"backing up {name}", total=None)
            say = lambda m: bar.update(task, description=m)  # noqa: E731
            done = (backup_mod.backup_to_gs(target, to, project, say) if to_gs
                    else backup_mod.backup(target, Path(to), say))
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"path": str(done.path), "bytes": done.size, "seconds": done.seconds,
                          "manifest": done.manifest}, indent=2, sort_keys=True))
        return
    _print_counts({db: v["counts"] for db, v in done.manifest["databases"].items()})
    for what in done.manifest.get("absent") or []:
        console.print(f"not in this backup: {escape(what)}", highlight=False)
    console.print(f"backup of {name}: {done.path} ({done.size / 2**20:.1f} MiB, {done.seconds} s)", highlight=False)


@app.command()
def restore(
    name: str = typer.Option(..., help="Instance name: the machine the backup goes onto (a fresh one)."),
    from_: str = typer.Option(..., "--from", help="A backup file made by `playground backup`, here or at "
                              "gs://BUCKET/PATH/NAME.tar."),
    replace: bool = typer.Option(False, "--replace", help="Drop the machine's own DAG runs, MLflow runs and "
                                 "warehouse tables (refused without it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts found and expected as JSON."),
    provider: Optional[str] = PROVIDER,
    project: Optional[str] = GCE_PROJECT,
    zone: Optional[str] = ZONE,
) -> None:
    """Restore a backup onto a running instance: its databases and artifacts replaced by the backup's,
    connections re-encrypted with this machine's key, Airflow migrated to this machine's version, this
    machine's admin password kept. A backup of a newer Airflow or PostgreSQL is refused (a downgrade),
    before anything changes. Exit code 0 when every count equals the manifest's and the machine is healthy
    again, 1 otherwise."""
    import json

    from . import backup as backup_mod

    try:
        from_gs = backup_mod.gs_location(from_, "--from")
        target = _provider(provider, project, zone).reach(name, project).target
        with progress() as bar:
            task = bar.add_task(f"restoring onto {name}", total=None)
            say = lambda m: bar.update(task, description=m)  # noqa: E731
            if from_gs:
                import tempfile

                with tempfile.TemporaryDirectory(prefix="playground-restore-") as folder:
                    result = backup_mod.restore(target, backup_mod.download_from_gs(from_, Path(folder), project,
                                                                                    say), replace, say)
            else:
                result = backup_mod.restore(target, Path(from_), replace, say)
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_counts(result["expected"], result["found"])
        same = result["found"] == result["expected"]
        console.print(f"restored {from_.rsplit('/', 1)[-1]} onto {name} in {result['seconds']} s: "
                      + ("every count as in the backup" if same else "counts differ from the backup's")
                      + ("" if result.get("healthy", True) else "; not healthy: " + "; ".join(result["problems"])),
                      highlight=False)
    if not result["ok"]:
        raise typer.Exit(1)


def _print_counts(expected: dict, found: Optional[dict] = None) -> None:
    from rich.table import Table

    from .backup import counts_rows

    table = Table("what", "in the backup", *(["found"] if found is not None else []))
    for what, count, got in counts_rows(expected, found):
        table.add_row(what, count, *([got] if found is not None else []))
    console.print(table)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    name: Optional[str] = typer.Option(None, help="Instance name (default: the only one, or --project's)."),
    project: Optional[str] = typer.Option(None, help="Pick the instance of this project (gce: the GCP project)."),
    provider: Optional[str] = typer.Option(None, help="local or gce (gce: through IAP, needs gcloud)."),
    zone: Optional[str] = typer.Option(None, help="gce: the zone."),
) -> None:
    """Open a shell on an instance, or run the command given after --."""
    import os

    try:
        args = _provider(provider, project, zone).reach(name, project).ssh_args
    except PlaygroundError as exc:
        fail(exc)
    os.execvp(args[0], args + list(ctx.args))


config_app = typer.Typer(help="Show the resolved settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Every setting, its value and where it came from (flag, environment, playground.toml, default)."""
    import json

    from rich.table import Table

    from . import settings

    try:
        rows = settings.show()
    except PlaygroundError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({k: {"value": v, "source": src} for k, v, src in rows}, indent=2))
        return
    table = Table("setting", "value", "from")
    for key, value, source in rows:
        table.add_row(key, "" if value is None else str(value), source)
    Console().print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()



