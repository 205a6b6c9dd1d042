"""The GCE provider: playground VMs in the user's project (gce/compute.py), reached through IAP."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..errors import PlaygroundError
from .base import Launched, LaunchRequest, Provider, Reach, Report, Upgraded
from .waiting import read_over_ssh, wait_healthy

# A VM answers SSH through IAP only once the guest has booted; poll its report less often than a
# local instance's, each poll starts a gcloud IAP tunnel.
POLL_S = 5.0


class GceProvider(Provider):
    name = "gce"

    def __init__(self, s) -> None:
        self.s = s  # compute.GceSettings, resolved and checked

    @classmethod
    def from_settings(cls, project: Optional[str], zone: Optional[str], **flags: Any) -> "GceProvider":
        from .. import settings

        return cls(settings.gce(project, zone, **flags))

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
        from ..gce import compute

        try:
            target = compute.ssh_target(self.s, row)
            wait_healthy(row["name"], lambda: read_over_ssh(target), lambda: True, timeout, report, every=POLL_S)
        except PlaygroundError as exc:
            raise PlaygroundError(f"{exc} (the VM {row['name']} exists and is billed while it runs: "
                                  f"`playground status {self._where(row)}`, or `playground destroy "
                                  f"{self._where(row)}`)") from exc

    def launch(self, req: LaunchRequest, report: Report) -> Launched:
        from ..gce import compute

        s = dataclasses.replace(self.s, profile=req.profile)
        if req.wait:  # the way in (gcloud, the SSH key) is checked before anything billable is made
            try:
                compute.ssh_target(s, {"name": req.name, "zone": s.zone})
            except PlaygroundError as exc:
                raise PlaygroundError(f"{exc} (or launch with --no-wait, and check later with "
                                      "`playground status`)") from exc
        made = compute.launch(s, req.name, req.attributes, report)
        warnings = [made["warning"]] if made.get("warning") else []
        if req.wait:
            self._wait(made, report, req.timeout)
        return self._launched(made, True if req.wait else None, warnings)

    def start(self, name: str, report: Report, wait: bool = True, timeout: float = 300) -> Launched:
        from ..gce import compute

        compute.start(self.s, name, report)
        row = self.describe(name)
        if wait:
            self._wait(row, report, timeout)
        return self._launched(row, True if wait else None, [])

    def upgrade(self, name: str, image: Optional[str], report: Report, timeout: float = 300) -> Upgraded:
        """The VM gets a new boot disk of the image, its data disk stays; the old boot disk is deleted once the
        machine is healthy on the new one (kept, and named, when it is not)."""
        import time

        from ..gce import compute

        t0 = time.monotonic()
        done = compute.upgrade(self.s, name, image, report)
        if done["old_disk"] is None:
            return Upgraded(launched=None, change=done["change"])
        row = done["row"]
        try:
            self._wait(row, report, timeout)
        except PlaygroundError as exc:
            raise PlaygroundError(f"upgrade {done['change']}: {exc}; the old boot disk {done['old_disk']} is kept "
                                  "(the data disk is as the new image's agent left it)") from exc
        compute.delete_disk(dataclasses.replace(self.s, zone=row["zone"]), done["old_disk"], report)
        return Upgraded(launched=self._launched(row, True, []), change=done["change"],
                        seconds=round(time.monotonic() - t0, 1))

    def stop(self, name: str, report: Report) -> list[str]:
        from ..gce import compute

        compute.stop(self.s, name, report)
        return [f"VM {name} in {self.s.project} (disk kept; no vCPU or memory billed while stopped)"]

    def destroy(self, name: str, report: Report) -> list[str]:
        from ..gce import compute

        compute.destroy(self.s, name, report)
        return [f"VM {name}, its boot disk and its data disk in {self.s.project}"]

    def set_attributes(self, name: str, attributes: dict[str, str], report: Report) -> None:
        from ..gce import compute

        compute.set_attributes(self.s, name, attributes, report)

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
        from ..gce import compute, schedule

        method = settings.resolve("schedule_method")[0]
        found = []
        for row in compute.playgrounds(self.s, name):
            machine = compute.machine(self.s, row)
            machine.schedule = schedule.next_for(dataclasses.replace(self.s, zone=row["zone"]), row["name"], method)
            found.append(machine)
        return found

    def reach(self, name: Optional[str], project: Optional[str]) -> Reach:
        from ..attributes import admin_user
        from ..gce import compute

        if name:
            compute.check_name(name)
        row = compute.running_row(self.s, name)
        return Reach(target=compute.ssh_target(self.s, row), web=compute.web_ports(row),
                     admin=admin_user(row["attributes"]), ssh_args=compute.ssh_args(self.s, row),
                     ssh_command=f"playground ssh {self._where(row)}")
