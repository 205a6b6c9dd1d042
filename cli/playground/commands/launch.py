"""`playground launch`: its flags, the rules between them (checked together before anything is made),
and the launch itself."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from .. import attributes, settings
from ..errors import PlaygroundError
from .common import PROVIDER, how_to_reach, one_line, provider_for, working
from .project import deploy_onto

MAX_WORKERS = 8  # each worker is a machine of its own: past that, a team wants Composer (README, Workers)
# What --workers sets on the machines itself.
WORKER_ATTRIBUTES = ("role", "main-address", "private-subnet", "airflow-executor", "cluster-secret")


def check_workers(workers: int) -> None:
    if not 0 <= workers <= MAX_WORKERS:
        raise PlaygroundError(f"--workers: expected 0-{MAX_WORKERS} worker machines, got {workers}")


@dataclass
class LaunchFlags:
    """launch's flags as given; request() checks the rules between them, before any request or boot."""

    project: str
    name: Optional[str]
    profile: Optional[str]
    sets: list[str]
    build: bool
    wait: bool
    timeout: float
    runtime: Optional[str]
    data_disk: int
    dags: Optional[Path]
    autostop: Optional[str]
    workers: int

    def project_folder(self):
        """The --dags project, loaded (a bad folder fails before anything is made)."""
        from .. import project as project_mod

        if self.dags is None:
            return None
        try:
            proj = project_mod.load(self.dags)
        except PlaygroundError as exc:
            raise PlaygroundError(f"--dags: {exc}") from exc
        if not self.wait:
            raise PlaygroundError("--dags: deploys once the machine is healthy, so it needs --wait "
                                  "(or launch --no-wait, then `playground deploy`)")
        return proj

    def request(self, chosen):
        """The provider's LaunchRequest, every cross-flag rule checked."""
        from ..providers import LaunchRequest

        sets = list(self.sets)
        name = self.name or self.project
        if chosen.name != "local" and self.runtime is not None:
            raise PlaygroundError("--runtime: local instances only (a GCE instance is a VM already)")
        if self.autostop is not None:
            if any(pair.partition("=")[0] == "autostop" for pair in sets):
                raise PlaygroundError("--autostop: given twice (also as --set autostop=...)")
            sets.append("autostop=" + attributes.autostop_value(self.autostop))
        check_workers(self.workers)
        if self.workers and len(name) > 28:
            raise PlaygroundError(f"--name: expected at most 28 characters with --workers (its workers are "
                                  f"NAME-wK), got {name!r}")
        if self.workers and any(pair.partition("=")[0] in WORKER_ATTRIBUTES for pair in sets):
            raise PlaygroundError("--workers: sets role, main-address, private-subnet, airflow-executor and "
                                  "cluster-secret itself; do not --set them too")
        attrs = attributes.parse_sets(sets, self.project)
        profile = chosen.profile(self.profile)
        if self.workers:
            self._check_celery(profile)
        return LaunchRequest(name=name, project=self.project, attributes=attrs, profile=profile, wait=self.wait,
                             timeout=self.timeout, build=self.build, runtime=self.runtime or "nspawn",
                             data_disk_gb=self.data_disk if chosen.name == "local" else 0, workers=self.workers)

    @staticmethod
    def _check_celery(profile: str) -> None:
        from ..image import profiles

        if not profiles.has_celery(profile):
            with_celery = [p for p in profiles.known() if profiles.has_celery(p)
                           and bool(profiles.debian_suite(p)) == bool(profiles.debian_suite(profile))]
            raise PlaygroundError(f"--workers: profile {profile} has no Celery provider in its Airflow "
                                  f"lock; use --profile {' or '.join(with_celery) or 'local'}")


def launch(
    project: str = typer.Option(..., help="GCP project id the playground works for (6-30 of a-z 0-9 -)."),
    name: Optional[str] = typer.Option(None, help="Instance name; defaults to the project id."),
    provider: Optional[str] = PROVIDER,
    profile: Optional[str] = typer.Option(None, help="Image profile to launch from (local: local or seed-local; gce: "
                                          "gce_profile in the settings, else seed)."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Metadata attribute KEY=VALUE, checked before anything is "
                                   "made; repeat. Known: " + attributes.known() + "."),
    build: bool = typer.Option(True, help="local: build the image first if there is none."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the machine is healthy (gce: over "
                              "SSH through IAP)."),
    timeout: float = typer.Option(300, help="Seconds to wait for the instance to turn healthy."),
    zone: Optional[str] = typer.Option(None, help="gce: zone (else " + settings.default_text("zone") + ")."),
    machine_type: Optional[str] = typer.Option(None, help="gce: machine type, 2 vCPUs and 8 GB by default from "
                                               "measured memory (else " + settings.default_text("machine_type") + ")."),
    disk_size: Optional[int] = typer.Option(None, help="gce: boot disk size in GB (else "
                                            + settings.default_text("disk_size_gb") + ")."),
    runtime: Optional[str] = typer.Option(None, help="local: nspawn (a container on this kernel; the default) or "
                                          "vm (the image's disk in QEMU, as GCE boots it: KVM where it boots "
                                          "guests, else software emulation, slow)."),
    data_disk: int = typer.Option(0, "--data-disk", metavar="GB",
                                  help="The data volume's size (databases, artifacts, task "
                                  "logs; kept by `upgrade`). gce: GB of its persistent disk (else "
                                  + settings.default_text("data_disk_gb") + "). local: GiB of a volume of that "
                                  "size (nspawn: an ext4 file, loop-mounted; without it a folder of the "
                                  "instance's own; --runtime vm: a data disk, without "
                                  "which the data stays on the boot disk)."),
    dags: Optional[Path] = typer.Option(None, "--dags", metavar="FOLDER",
                                        help="A project folder to deploy once the machine is "
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
    flags = LaunchFlags(project=project, name=name, profile=profile, sets=set_, build=build, wait=wait,
                        timeout=timeout, runtime=runtime, data_disk=data_disk, dags=dags, autostop=autostop,
                        workers=workers)
    with one_line():
        proj = flags.project_folder()
        chosen = provider_for(provider, project, zone, say=True, machine_type=machine_type, disk_size_gb=disk_size,
                              data_disk_gb=data_disk or None)
        req = flags.request(chosen)
        with working("starting") as report:
            t0 = time.monotonic()
            launched = chosen.launch(req, report)
            report(f"{launched.name} {'healthy' if wait else 'created'} in {time.monotonic() - t0:.0f} s")
    how_to_reach(launched)
    if proj is not None:
        deploy_onto(chosen, launched.name, None, proj, as_json=False)
