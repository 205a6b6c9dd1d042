"""GceSettings: the project, zone and shape of playground VMs, every value checked before the first request."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from playground_agent.schema import ZONE_RE

from .. import settings
from ..errors import PlaygroundError
from ..settings import DEFAULTS

MANAGED_LABEL = ("managed-by", "playground")
# Resource names (instances, networks): RFC 1035, 1-63 characters
# (https://cloud.google.com/compute/docs/naming-resources).
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# Predefined (e2-standard-4, n2-highmem-8, f1-micro) and custom (n2-custom-4-8192, e2-custom-2-4096-ext).
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")
DISK_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
SERVICE_ACCOUNT_RE = re.compile(r"^(?:default|[a-z0-9][a-z0-9.-]{0,99}@[a-z0-9][a-z0-9.-]*\.[a-z]+)$")
# Label values: 0-63 of lowercase letters, digits, _ and - (https://cloud.google.com/compute/docs/labeling-resources).
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass
class GceSettings:
    project: str
    # The defaults are the settings table's (settings.SETTINGS: each one's meaning).
    zone: str = DEFAULTS["zone"]
    machine_type: str = DEFAULTS["machine_type"]
    disk_size_gb: int = DEFAULTS["disk_size_gb"]
    data_disk_gb: int = DEFAULTS["data_disk_gb"]
    disk_type: str = DEFAULTS["disk_type"]
    network: str = DEFAULTS["network"]
    subnetwork: str = DEFAULTS["subnetwork"]
    service_account: str = DEFAULTS["service_account"]
    image_project: str = DEFAULTS["image_project"]
    profile: str = DEFAULTS["gce_profile"]
    owner: str = field(default_factory=lambda: os.environ.get("USER", "unknown"))
    zone_chosen: bool = True  # False: the default zone, and commands on an existing VM look for its zone

    def check(self) -> None:
        """Every value that goes into a request, checked before the first one (one line each)."""
        from ..attributes import check_project

        check_project(self.project)
        if self.image_project:
            check_project(self.image_project, "image_project")
        if not ZONE_RE.match(self.zone):
            raise PlaygroundError(f"--zone: expected a zone such as europe-west2-b, got {self.zone!r}")
        if not MACHINE_TYPE_RE.match(self.machine_type) or len(self.machine_type) > 63:
            raise PlaygroundError(f"--machine-type: expected a machine type such as e2-standard-4, got "
                                  f"{self.machine_type!r}")
        if not 10 <= self.disk_size_gb <= 65536:
            raise PlaygroundError(f"--disk-size: expected 10-65536 (GB), got {self.disk_size_gb}")
        if not 10 <= self.data_disk_gb <= 65536:
            raise PlaygroundError(f"--data-disk: expected 10-65536 (GB), got {self.data_disk_gb}")
        if not DISK_TYPE_RE.match(self.disk_type):
            raise PlaygroundError(f"disk_type: expected a disk type such as pd-balanced, got {self.disk_type!r}")
        for key in ("network", "subnetwork"):
            value = getattr(self, key)
            if (value or key == "network") and not NAME_RE.match(value):
                raise PlaygroundError(f"{key}: expected a name of 1-63 of a-z 0-9 -, got {value!r}")
        if not SERVICE_ACCOUNT_RE.match(self.service_account):
            raise PlaygroundError(f"service_account: expected default or a service account email, got "
                                  f"{self.service_account!r}")
        for key, value in self.labels().items():
            if not LABEL_VALUE_RE.match(value):
                raise PlaygroundError(f"label {key}: expected 0-63 of a-z 0-9 _ -, got {value!r}")

    def labels(self) -> dict[str, str]:
        return {MANAGED_LABEL[0]: MANAGED_LABEL[1], "playground-project": self.project,
                "playground-profile": self.profile, "owner": re.sub(r"[^a-z0-9_-]", "-", self.owner.lower())[:63]}


def resolved(project: Optional[str], zone: Optional[str] = None, **flags: Any) -> GceSettings:
    """GceSettings from flags, environment, playground.toml and defaults, checked before any request.

    Every GCE setting is resolved, flagged or not (image_project from the environment counts for a
    command without an --image-project flag too)."""
    unknown = set(flags) - set(settings.GCE_KEYS)
    if unknown:
        raise TypeError(f"not GCE settings: {sorted(unknown)}")
    proj, _ = settings.resolve("project", project)
    if not proj:
        raise PlaygroundError("--project: the GCP project id is required for the gce provider "
                              "(or PLAYGROUND_PROJECT, or project in playground.toml)")
    values = {k: settings.resolve(k, flags.get(k))[0] for k in settings.GCE_KEYS}
    sizes = {}
    for key in ("disk_size_gb", "data_disk_gb"):
        try:
            sizes[key] = int(values[key])
        except (TypeError, ValueError) as exc:
            raise PlaygroundError(f"{key}: expected a whole number of GB, got {values[key]!r}") from exc
    zone_value, zone_source = settings.resolve("zone", zone)
    s = GceSettings(project=str(proj), zone=str(zone_value), zone_chosen=zone_source != "default",
                    machine_type=str(values["machine_type"]), disk_size_gb=sizes["disk_size_gb"],
                    data_disk_gb=sizes["data_disk_gb"], disk_type=str(values["disk_type"]),
                    network=str(values["network"]), subnetwork=str(values["subnetwork"] or ""),
                    service_account=str(values["service_account"]), image_project=str(values["image_project"] or ""),
                    profile=str(settings.resolve("gce_profile", None)[0]))
    s.check()
    return s
