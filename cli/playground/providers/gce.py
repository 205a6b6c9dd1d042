"""The GCE provider: playground VMs in the user's project (gce/compute.py), reached through IAP."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..errors import PlaygroundError
from .base import Launched, LaunchRequest, Provider, Reach, Report, Upgraded
from .waiting import read_over_ssh, wait_healthy
from .workers import ClusterOps, Main, Worker, apply_error, free_numbers, scale, worker_name, worker_slots

# A VM answers SSH through IAP only once the guest has booted; poll its report less often than a
# local instance's, each poll starts a gcloud IAP tunnel.
POLL_S = 5.0


def run_remote(target, command: str, timeout: float) -> tuple[int, str]:
    """A command on a VM over SSH through IAP: (exit code, stderr)."""
    from .. import remote

    with remote.one_line_errors(target):
        res = remote.connect(target, timeout=20).run(command, hide=True, warn=True, timeout=timeout,
                                                     in_stream=False)
    return res.return_code, res.stderr


class GceProvider(Provider):
    name = "gce"

    def __init__(self, s) -> None:
        self.s = s  # compute.GceSettings, resolved and checked

    @classmethod
    def from_settings(cls, project: Optional[str], zone: Optional[str], **flags: Any) -> "GceProvider":
        from ..gce import vm_settings

        return cls(vm_settings.resolved(project, zone, **flags))

    @classmethod
    def configured(cls, project: Optional[str]) -> bool:
        from .. import settings

        return bool(settings.resolve("project", project)[0])

    def profile(self, given: Optional[str]) -> str:
        from ..image import profiles

        profile = given or self.s.profile
        profiles.check(profile)  # a local profile's family is there once `image push --gce` made it
        return profile

    def build_image(self, profile: str, report: Report, notice: Report) -> str:
        from ..image import gce_build, profiles

        if profiles.debian_suite(profile):
            raise PlaygroundError(f"--profile: {profile} is built here and pushed: `playground image build --profile "
                                  f"{profile}`, then `playground image push --gce --profile {profile}`")

        return gce_build.build_gce(profile, self.s.project, self.s.zone, report=report, notice=notice)

    def images(self, profile: str) -> tuple[list[dict], list[str]]:
        from ..gce import compute

        return compute.list_images(self.s, profile), ["name", "airflow", "mlflow", "status", "disk_gb"]

    def _where(self, row: dict) -> str:
        return f"--provider gce --project {self.s.project} --zone {row['zone']} --name {row['name']}"

    def _launched(self, row: dict, healthy: Optional[bool], warnings: list[str]) -> Launched:
        where = self._where(row)
        return Launched(
            name=row["name"], address=row["address"],
            detail=f"{row['zone']} ({row['machine_type']}, internal address {row['address']}, no external IP)",
            healthy=healthy, warnings=warnings,
            next_steps=[("health", f"playground status {where}"),
                        ("web UIs", f"playground tunnel {where}  (through IAP)"),
                        ("admin password", f"playground ssh {where} -- sudo playground-agent admin-password")])

    def _wait(self, row: dict, report: Report, timeout: float) -> None:
        from ..gce import access as gce_access

        try:
            target = gce_access.ssh_target(self.s, row)
            # Each read gets what is left of the wait, at most 20 s: --timeout is the whole wait.
            wait_healthy(row["name"], lambda left: read_over_ssh(target, min(20.0, left)), lambda: True, timeout,
                         report, every=POLL_S)
        except PlaygroundError as exc:
            raise PlaygroundError(f"{exc} (the VM {row['name']} exists and is billed while it runs: "
                                  f"`playground status {self._where(row)}`, or `playground destroy "
                                  f"{self._where(row)}`)") from exc

    def launch(self, req: LaunchRequest, report: Report) -> Launched:
        from ..gce import access as gce_access
        from ..gce import compute

        s = dataclasses.replace(self.s, profile=req.profile)
        if req.workers:
            return self._launch_with_workers(s, req, report)
        if req.wait:  # the way in (gcloud, the SSH key) is checked before anything billable is made
            try:
                gce_access.ssh_target(s, {"name": req.name, "zone": s.zone})
            except PlaygroundError as exc:
                raise PlaygroundError(f"{exc} (or launch with --no-wait, and check later with "
                                      "`playground status`)") from exc
        made = compute.launch(s, req.name, req.attributes, report)
        warnings = [made["warning"]] if made.get("warning") else []
        if req.wait:
            self._wait(made, report, req.timeout)
        return self._launched(made, True if req.wait else None, warnings)

    def _launch_with_workers(self, s, req: LaunchRequest, report: Report) -> Launched:
        """The main, its firewall rule and cluster secret, then its workers (gce/cluster.py). A failure before
        the main is up removes the rule and the secret; a worker's failure leaves the rest for `destroy`."""
        from playground_agent import schema

        from ..attributes import CONTEXT
        from ..gce import access as gce_access
        from ..gce import cluster, compute

        if not req.wait:
            raise PlaygroundError("--workers: the workers' health is checked once they are up, so it needs --wait")
        attrs = dict(req.attributes)
        for key, why in (("dags-bucket", "DAGs reach the workers from it"),
                         ("logs-bucket", "the web UI reads a task's log from it, wherever the task ran")):
            if not attrs.get(key):
                raise PlaygroundError(f"--set {key}: expected a bucket with --workers on GCE ({why})")
        s.check()
        compute.check_name(req.name)
        gce_access.ssh_target(s, {"name": req.name, "zone": s.zone})  # the way in, before anything billable
        follow = "airflow-parallelism" not in attrs
        subnet, access_warning = cluster.subnet_range(s)
        attrs.update({"airflow-executor": "CeleryExecutor", "private-subnet": subnet,
                      "cluster-secret": cluster.secret_name(s.project, req.name)})
        if follow:
            attrs["airflow-parallelism"] = str(req.workers * worker_slots(attrs))
        try:
            schema.parse_attributes(attrs, CONTEXT)
        except schema.ConfigError as exc:
            raise PlaygroundError(str(exc)) from exc
        account = cluster.account_email(s)
        cluster.make_secret(s, req.name, account, report)
        rule = False
        try:
            cluster.make_rule(s, req.name, int(attrs.get("mlflow-port") or schema.default("mlflow-port")), report)
            rule = True
            made = compute.launch(s, req.name, attrs, report, tags=(cluster.main_tag(req.name),),
                                  labels={"playground-slots": "workers" if follow else "set"})
        except BaseException:
            report("launch failed: removing the firewall rule and the cluster secret")
            if rule:
                cluster.delete_rule(s, req.name, report)
            cluster.delete_secret(s, req.name, report)
            raise
        launched = self._launched(made, None, [w for w in (made.get("warning"), access_warning) if w])
        if access_warning:
            report(access_warning)
        try:
            rows = self._add_workers(s, made, req.workers, report)
            self._wait(made, report, req.timeout)
            for row in rows:
                self._wait(row, report, req.timeout)
                launched.detail += f"; worker {row['name']} at {row['address']}"
        except PlaygroundError as exc:
            raise PlaygroundError(f"{exc}; `playground destroy {self._where(made)}` removes it with its workers, "
                                  "firewall rule and secret") from exc
        launched.healthy = True
        return launched

    def _add_workers(self, s, main: dict, count: int, report: Report) -> list[dict]:
        """count more workers for the main: its attributes, role worker at its internal address, its workers'
        tag, no data disk (the main's database and folders are theirs)."""
        from ..gce import cluster, compute

        attrs = {k: v for k, v in main["attributes"].items()
                 if k not in ("ssh-keys", "gcp-project", "autostop", "airflow-parallelism")}
        # CeleryExecutor whatever the main said when read (scale from 0 switches it back just before).
        attrs.update({"role": "worker", "main-address": main["address"], "airflow-executor": "CeleryExecutor"})
        s = dataclasses.replace(s, zone=main["zone"], zone_chosen=True, profile=main["profile"] or s.profile)
        made = []
        for i, k in enumerate(free_numbers([w["name"] for w in self._workers(main["name"])], count), 1):
            name = worker_name(main["name"], k)
            report(f"worker {i} of {count}: {name}")
            made.append(compute.launch(s, name, attrs, report, tags=(cluster.worker_tag(main["name"]),),
                                       labels={"playground-main": main["name"]}, data_disk=False))
        return made

    def _workers(self, main: str) -> list[dict]:
        from ..gce import compute

        return compute.workers_of(self.s, main)

    def scale(self, name: str, workers: int, force: bool, report: Report) -> list[str]:
        return scale(GceCluster(self), name, workers, force, report)

    def start(self, name: str, report: Report, wait: bool = True, timeout: float = 300) -> Launched:
        """The VM; a main's stopped workers after it."""
        from ..gce import compute

        compute.start(self.s, name, report)
        row = self.describe(name)
        workers = [] if row.get("main") else [w for w in self._workers(name) if w["state"] != "running"]
        for w in workers:
            compute.start(dataclasses.replace(self.s, zone=w["zone"], zone_chosen=True), w["name"], report)
        if wait:
            for machine in [row, *workers]:
                self._wait(machine, report, timeout)
        launched = self._launched(row, True if wait else None, [])
        launched.detail += "".join(f"; worker {w['name']} started" for w in workers)
        return launched

    def upgrade(self, name: str, image: Optional[str], report: Report, timeout: float = 300) -> Upgraded:
        """The VM gets a new boot disk of the image, its data disk stays; the old boot disk is deleted once the
        machine is healthy on the new one (kept, and named, when it is not)."""
        import time

        from ..gce import boot_disks

        t0 = time.monotonic()
        done = boot_disks.upgrade(self.s, name, image, report)
        if done["old_disk"] is None:
            return Upgraded(launched=None, change=done["change"])
        row = done["row"]
        try:
            self._wait(row, report, timeout)
        except PlaygroundError as exc:
            raise PlaygroundError(f"upgrade {done['change']}: {exc}; the old boot disk {done['old_disk']} is kept "
                                  "(the data disk is as the new image's agent left it)") from exc
        boot_disks.delete_disk(dataclasses.replace(self.s, zone=row["zone"]), done["old_disk"], report)
        return Upgraded(launched=self._launched(row, True, []), change=done["change"],
                        seconds=round(time.monotonic() - t0, 1))

    def stop(self, name: str, report: Report) -> list[str]:
        """The VM; a main's workers first (without their main they could only idle, billed)."""
        from ..gce import compute

        row = self.describe(name)
        done = []
        for w in [] if row.get("main") else self._workers(name):
            if w["state"] == "running":
                compute.stop(dataclasses.replace(self.s, zone=w["zone"], zone_chosen=True), w["name"], report)
                done.append(f"worker VM {w['name']}")
        compute.stop(self.s, name, report)
        return done + [f"VM {name} in {self.s.project} (disk kept; no vCPU or memory billed while stopped)"]

    def destroy(self, name: str, report: Report) -> list[str]:
        """The VM; a main's workers first, and after it its firewall rule and cluster secret."""
        from ..gce import cluster, compute

        row = self.describe(name)
        s = dataclasses.replace(self.s, zone=row["zone"], zone_chosen=True)
        done = []
        for w in [] if row.get("main") else self._workers(name):
            report(f"removing worker {w['name']}")
            compute.destroy(dataclasses.replace(s, zone=w["zone"]), w["name"], report)
            done.append(f"worker VM {w['name']} and its boot disk")
        compute.destroy(s, name, report)
        done.append(f"VM {name}, its boot disk{'' if row.get('main') else ' and its data disk'} in {self.s.project}")
        if row["attributes"].get("cluster-secret") and not row.get("main"):
            if cluster.delete_rule(s, name, report):
                done.append(f"firewall rule {cluster.rule_name(name)}")
            if cluster.delete_secret(s, name, report):
                done.append(f"Secret Manager secret {cluster.secret_id(name)}")
        return done

    def set_attributes(self, name: str, attributes: dict[str, str], report: Report) -> None:
        from ..gce import compute

        compute.set_attributes(self.s, name, attributes, report)

    def worker_targets(self, name: str) -> list:
        from ..gce import access as gce_access

        return [gce_access.ssh_target(self.s, w) for w in self._workers(name) if w["state"] == "running"]

    def list(self) -> list[dict]:
        from ..gce import compute

        return [{**r, "age_s": None} for r in compute.playgrounds(self.s)]

    def describe(self, name: str) -> dict:
        from ..gce import compute

        compute.check_name(name)
        rows = [{**r, "age_s": None} for r in compute.playgrounds(self.s, name)]
        if not rows:
            where = f"zone {self.s.zone}" if self.s.zone_chosen else "any zone"
            raise PlaygroundError(f"no GCE playground {name} in project {self.s.project}, {where} "
                                  f"(see `playground list --project {self.s.project}`)")
        return rows[0]

    def machines(self, name: Optional[str], project: Optional[str]) -> list:
        from .. import settings
        from ..gce import access as gce_access
        from ..gce import compute, schedule

        method = settings.resolve("schedule_method")[0]
        found = []
        for row in compute.playgrounds(self.s, name):
            machine = gce_access.machine(self.s, row)
            machine.schedule = schedule.next_for(dataclasses.replace(self.s, zone=row["zone"]), row["name"], method)
            found.append(machine)
        return found

    def reach(self, name: Optional[str], project: Optional[str]) -> Reach:
        from ..attributes import admin_user
        from ..gce import access as gce_access
        from ..gce import compute

        if name:
            compute.check_name(name)
        row = gce_access.running_row(self.s, name)
        return Reach(target=gce_access.ssh_target(self.s, row), web=gce_access.web_ports(row),
                     admin=admin_user(row["attributes"]), ssh_args=gce_access.ssh_args(self.s, row),
                     ssh_command=f"playground ssh {self._where(row)}")


class GceCluster(ClusterOps):
    """scale's verbs on GCE: workers are VMs of the main's network tag, labelled with their main."""

    def __init__(self, provider: GceProvider) -> None:
        self.provider = provider
        self.rows: dict[str, dict] = {}  # name -> its last describe()/list row: its zone and address

    def _s(self, main: Main):
        row = self.rows[main.name]
        return dataclasses.replace(self.provider.s, zone=row["zone"], zone_chosen=True)

    def main(self, name: str) -> Main:
        row = self.rows[name] = self.provider.describe(name)
        return Main(name, row.get("main") or "", bool(row["attributes"].get("cluster-secret")), row["state"],
                    dict(row["attributes"]), row.get("slots") == "workers", self.provider._where(row))

    def workers(self, main: Main) -> list[Worker]:
        rows = self.provider._workers(main.name)
        self.rows.update({r["name"]: r for r in rows})
        return [Worker(r["name"], r["state"] == "running") for r in rows]

    def set_main(self, main: Main, changes: dict[str, str], report: Report) -> None:
        # The attributes, then the agent's apply at once over SSH (it reads the rest at its next boot only).
        from ..gce import access as gce_access
        from ..gce import compute

        s, row = self._s(main), self.rows[main.name]
        compute.set_attributes(s, main.name, changes, report)
        try:
            code, err = run_remote(gce_access.ssh_target(s, row), "sudo -n playground-agent apply", 300)
        except PlaygroundError as exc:
            raise apply_error(main.name, changes, f"{exc}; it is in the metadata, applied at the next boot or by "
                                                  "`sudo playground-agent apply`") from exc
        if code != 0:
            raise apply_error(main.name, changes, (err.strip().splitlines() or [f"exit {code}"])[-1])
        self.provider._wait(row, report, 180)

    def add_workers(self, main: Main, count: int, report: Report) -> list[tuple[str, str]]:
        made = []
        for row in self.provider._add_workers(self._s(main), self.rows[main.name], count, report):
            self.provider._wait(row, report, 300)
            made.append((row["name"], row["address"]))
        return made

    def warm_stop(self, worker: Worker) -> tuple[int, str]:
        from ..gce import access as gce_access

        row = self.rows[worker.name]
        s = dataclasses.replace(self.provider.s, zone=row["zone"], zone_chosen=True)
        return run_remote(gce_access.ssh_target(s, row), "sudo -n systemctl stop airflow-worker.service", 660)

    def remove(self, worker: Worker, report: Report) -> None:
        from ..gce import compute

        row = self.rows[worker.name]
        compute.destroy(dataclasses.replace(self.provider.s, zone=row["zone"], zone_chosen=True), worker.name, report)
