"""The local provider: the golden image booted with systemd-nspawn on this machine (local/instance.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from ..attributes import admin_user
from ..errors import PlaygroundError
from .base import Launched, LaunchRequest, Provider, Reach, Report, Upgraded
from .workers import ClusterOps, Main, Worker, apply_error, free_numbers, scale, worker_name, worker_slots


class LocalProvider(Provider):
    name = "local"

    @classmethod
    def from_settings(cls, project: Optional[str], zone: Optional[str], **flags: Any) -> "LocalProvider":
        return cls()  # nothing to resolve: the project is checked per instance, the zone is this host

    @classmethod
    def configured(cls, project: Optional[str]) -> bool:
        return True  # local instances are always listed

    def profile(self, given: Optional[str]) -> str:
        from ..image import profiles

        profile = given or "local"
        profiles.check(profile)
        if not profiles.debian_suite(profile):
            raise PlaygroundError(f"--profile: {profile} is a GCE profile (an Ubuntu image built by Packer on "
                                  f"Google); local instances use one of {', '.join(profiles.local_profiles())}")
        return profile

    def build_image(self, profile: str, report: Report, notice: Report) -> str:
        from ..image import local_build

        return str(local_build.build_local(profile, report=report, notice=notice))

    def images(self, profile: str) -> tuple[list[dict], list[str]]:
        from ..image import local_build

        return local_build.local_images(profile), ["name", "airflow", "mlflow", "size"]

    def _launched(self, inst, rep: Optional[dict]) -> Launched:
        from ..local import instance

        return Launched(
            name=inst.name, address=inst.address,
            detail=f"image {Path(inst.image).name}, {instance.runtime_text(inst)}",
            healthy=None if rep is None else bool(rep.get("healthy")),
            next_steps=[("ssh", f"playground ssh --name {inst.name}"),
                        ("web UIs", f"playground tunnel --name {inst.name}  (Airflow, MLflow on 127.0.0.1)"),
                        ("admin password", f"playground ssh --name {inst.name} -- sudo playground-agent "
                                           "admin-password")])

    def launch(self, req: LaunchRequest, report: Report) -> Launched:
        from ..image import local_build
        from ..local import instance

        instance.validate_name(req.name, req.project)
        instance.check_runtime(req.runtime, req.data_disk_gb)
        image = local_build.newest_image(req.profile)
        if image is None:
            if not req.build:
                raise PlaygroundError(f"no local image for profile {req.profile!r}: run `playground image build"
                                      f"{'' if req.profile == 'local' else ' --profile ' + req.profile}`")
            report(f"no {req.profile} image yet: building it")
            image = local_build.build_local(req.profile, report=report)
        if req.workers and not req.wait:
            raise PlaygroundError("--workers: the workers launch once the main is healthy, so it needs --wait")
        attrs, follow = dict(req.attributes), bool(req.workers) and "airflow-parallelism" not in req.attributes
        if follow:
            attrs["airflow-parallelism"] = str(req.workers * worker_slots(attrs))
        inst, rep = instance.launch(req.name, req.project, attrs, image, req.profile, report, req.timeout,
                                    wait=req.wait, runtime=req.runtime, data_disk_gb=req.data_disk_gb,
                                    with_workers=bool(req.workers))
        if follow:
            inst.slots_follow_workers = True
            inst.save()
        launched = self._launched(inst, rep)
        try:
            for winst, wrep in self._add_workers(inst, image, req.workers, report, req.timeout):
                launched.warnings += [] if (wrep or {}).get("healthy") else [f"worker {winst.name} is not healthy yet"]
                launched.detail += f"; worker {winst.name} at {winst.address}"
        except PlaygroundError as exc:
            raise PlaygroundError(f"{exc}; {req.name} and its other workers are up: "
                                  f"`playground destroy --name {req.name}` removes them all") from exc
        return launched

    def _add_workers(self, main, image: Path, count: int, report: Report, timeout: float = 300) -> list:
        """count more workers for main, numbered from the lowest free number; [(instance, health)]."""
        from ..local import instance

        free = free_numbers([w.name for w in instance.workers_of(main.name)], count)
        attrs = {k: v for k, v in main.attributes.items() if k not in ("ssh-keys", "gcp-project")}
        made = []
        for i, k in enumerate(free, 1):
            name = worker_name(main.name, k)
            report(f"worker {i} of {count}: {name}")
            made.append(instance.launch(name, main.project, dict(attrs), image, main.profile, report, timeout,
                                        worker_of=main, worker_host=instance.WORKER_HOST_0 + k - 1))
        return made

    def scale(self, name: str, workers: int, force: bool, report: Report) -> list[str]:
        return scale(LocalCluster(self), name, workers, force, report)

    def start(self, name: str, report: Report, wait: bool = True, timeout: float = 300) -> Launched:
        """The instance; a main's stopped workers after it."""
        from ..local import instance

        inst, rep = instance.start(name, report, timeout, wait=wait)
        launched = self._launched(inst, rep)
        for w in [] if inst.main else instance.workers_of(name):
            if not instance.is_running(w):
                report(f"starting worker {w.name}")
                instance.start(w.name, report, timeout, wait=wait)
                launched.detail += f"; worker {w.name} started"
        return launched

    def upgrade(self, name: str, image: Optional[str], report: Report, timeout: float = 300) -> Upgraded:
        from ..image import local_build
        from ..local import instance

        inst = instance.load(name)
        if image is None:
            chosen = local_build.newest_image(inst.profile)
            if chosen is None:
                raise PlaygroundError(f"no local image for profile {inst.profile!r}: `playground image build"
                                      f"{'' if inst.profile == 'local' else ' --profile ' + inst.profile}`")
        else:
            # A name from `playground image list` (any local profile), or an image folder.
            from ..image import profiles

            named = [p for prof in profiles.local_profiles() for p in local_build.complete_images(prof)
                     if p.name == image]
            chosen = named[0] if named else Path(image)
        t0 = time.monotonic()
        inst, rep, change = instance.upgrade(name, chosen, report, timeout)
        return Upgraded(launched=None if rep is None else self._launched(inst, rep), change=change,
                        seconds=round(time.monotonic() - t0, 1))

    def stop(self, name: str, report: Report) -> list[str]:
        """The instance; a main's workers first (without their main they could only idle)."""
        from ..local import instance

        done = []
        for w in [] if instance.load(name).main else instance.workers_of(name):
            if instance.is_running(w):
                report(f"stopping worker {w.name} (its running tasks finish first)")
                done += [f"{w.name}: {what}" for what in instance.stop(w.name)]
        return done + instance.stop(name)

    def destroy(self, name: str, report: Report) -> list[str]:
        from ..local import instance

        return instance.destroy(name)

    def set_attributes(self, name: str, attributes: dict[str, str], report: Report) -> None:
        from ..local import instance

        instance.set_attributes(name, attributes)

    def worker_targets(self, name: str) -> list:
        from ..local import instance

        return [instance.target(w) for w in instance.workers_of(name) if instance.is_running(w)]

    def list(self) -> list[dict]:
        from ..local import instance

        return [self._row(i) for i in instance.all_instances()]

    def describe(self, name: str) -> dict:
        from ..local import instance

        return self._row(instance.load(name))

    @staticmethod
    def _row(inst) -> dict:
        from ..local import instance

        state = "running" if instance.is_running(inst) else ("stopped" if inst.state != "creating" else "incomplete")
        return {"name": inst.name, "provider": "local", "project": inst.project, "profile": inst.profile,
                "state": state, "address": inst.address, "zone": instance.ZONE, "runtime": inst.runtime,
                "accel": inst.accel or None, "data_disk_gb": inst.data_disk_gb, "data_volume": inst.data_volume or None,
                "age_s": round(time.time() - inst.created_at)}

    def machines(self, name: Optional[str], project: Optional[str]) -> list:
        from ..local import instance

        return [instance.machine(i) for i in instance.all_instances()
                if (name is None or i.name == name) and (project is None or i.project == project)]

    def reach(self, name: Optional[str], project: Optional[str]) -> Reach:
        from ..local import instance

        inst = instance.resolve(name, project)
        if not instance.is_running(inst):
            raise PlaygroundError(f"instance {inst.name} is stopped: `playground start --name {inst.name}`")
        return Reach(target=instance.target(inst), web=instance.web_ports(inst), admin=admin_user(inst.attributes),
                     ssh_args=instance.ssh_args(inst), ssh_command=f"playground ssh --name {inst.name}")


class LocalCluster(ClusterOps):
    """scale's verbs on local instances: workers are containers on the main's private bridge."""

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider

    def main(self, name: str) -> Main:
        from ..local import instance

        inst = instance.load(name)
        return Main(inst.name, inst.main or "", bool(inst.private_net),
                    "running" if instance.is_running(inst) else "stopped", dict(inst.attributes),
                    inst.slots_follow_workers, f"--name {name}")

    def workers(self, main: Main) -> list[Worker]:
        from ..local import instance

        return [Worker(w.name, instance.is_running(w)) for w in instance.workers_of(main.name)]

    def set_main(self, main: Main, changes: dict[str, str], report: Report) -> None:
        # The attributes, then the agent's apply at once (its metadata watch is optional): the scheduler
        # restarts on them.
        from ..local import instance

        instance.set_attributes(main.name, changes)
        inst = instance.load(main.name)
        proc = instance.remote(inst, "sudo -n playground-agent apply", timeout=300)
        if proc.returncode != 0:
            raise apply_error(main.name, changes, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
        instance.wait_healthy(instance.load(main.name), 180, lambda m: None)

    def add_workers(self, main: Main, count: int, report: Report) -> list[tuple[str, str]]:
        from ..local import instance

        inst = instance.load(main.name)
        return [(w.name, w.address) for w, _ in self.provider._add_workers(inst, Path(inst.image), count, report)]

    def warm_stop(self, worker: Worker) -> tuple[int, str]:
        from ..local import instance

        proc = instance.remote(instance.load(worker.name), "sudo -n systemctl stop airflow-worker.service",
                               timeout=660)
        return proc.returncode, proc.stderr

    def remove(self, worker: Worker, report: Report) -> None:
        from ..local import instance

        instance.destroy(worker.name)
