"""Settings resolve in order: flags, environment (PLAYGROUND_*), playground.toml, defaults.

playground.toml is read from the current directory, then from
~/.config/playground/playground.toml; each value remembers where it came from.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Optional

from .errors import PlaygroundError

# The launch default, from measured memory (issue 16; bench/launch.py, bench/throughput.py, 2026-12-02): a
# playground holds 1.10 GiB idle and 1.63 GiB at the peak of a 60-task run (PSS summed over its processes,
# parallelism 8), and every throughput figure is measured on 2 CPUs. e2-standard-2 has 2 vCPUs and 8 GB: 4.6x
# that peak, room for the team's own tasks' data; at half e2-standard-4's price. Tasks that hold more than
# about 700 MB each at 8 at a time: --machine-type e2-standard-4 (16 GB) or e2-highmem-2 (16 GB, 2 vCPUs).
DEFAULT_MACHINE_TYPE = "e2-standard-2"
DEFAULTS: dict[str, Any] = {"provider": "local", "zone": "europe-west2-b", "machine_type": DEFAULT_MACHINE_TYPE,
                             "disk_size_gb": 50, "data_disk_gb": 20, "disk_type": "pd-balanced", "network": "default",
                             "subnetwork": "", "service_account": "default", "image_project": "",
                             "gce_profile": "seed", "schedule_method": "scheduler", "timezone": ""}
# Settings `playground config show` lists, in that order.
KNOWN = ["provider", "project", "zone", "machine_type", "disk_size_gb", "data_disk_gb", "disk_type", "network",
         "subnetwork", "service_account", "image_project", "gce_profile", "schedule_method", "timezone"]
PROVIDERS = ("local", "gce")


def toml_files() -> list[Path]:
    return [Path.cwd() / "playground.toml", Path.home() / ".config" / "playground" / "playground.toml"]


def _toml() -> list[tuple[Path, dict]]:
    found = []
    for path in toml_files():
        if path.is_file():
            try:
                found.append((path, tomllib.loads(path.read_text())))
            except tomllib.TOMLDecodeError as exc:
                raise PlaygroundError(f"{path}: not valid TOML: {exc}") from exc
    return found


def resolve(key: str, flag: Optional[Any] = None) -> tuple[Any, str]:
    """(value, where it came from) for one setting."""
    if flag is not None:
        return flag, "flag --" + key.replace("_", "-")
    env = "PLAYGROUND_" + key.upper()
    if os.environ.get(env):
        return os.environ[env], "environment " + env
    for path, doc in _toml():
        if key in doc:
            return doc[key], str(path)
    if key in DEFAULTS:
        return DEFAULTS[key], "default"
    return None, "unset"


def provider(flag: Optional[str]) -> tuple[str, str]:
    value, source = resolve("provider", flag)
    if value not in PROVIDERS:
        raise PlaygroundError(f"provider (from {source}): expected one of {', '.join(PROVIDERS)}, got {value!r}")
    return value, source


GCE_KEYS = ("machine_type", "disk_size_gb", "data_disk_gb", "disk_type", "network", "subnetwork", "service_account",
            "image_project")


def gce(project: Optional[str], zone: Optional[str] = None, **flags: Any):
    """GceSettings from flags, environment, playground.toml and defaults, checked before any request.

    Every GCE setting is resolved, flagged or not (image_project from the environment counts for a
    command without an --image-project flag too)."""
    from .gce.compute import GceSettings

    unknown = set(flags) - set(GCE_KEYS)
    if unknown:
        raise TypeError(f"not GCE settings: {sorted(unknown)}")
    proj, _ = resolve("project", project)
    if not proj:
        raise PlaygroundError("--project: the GCP project id is required for the gce provider "
                              "(or PLAYGROUND_PROJECT, or project in playground.toml)")
    values = {k: resolve(k, flags.get(k))[0] for k in GCE_KEYS}
    sizes = {}
    for key in ("disk_size_gb", "data_disk_gb"):
        try:
            sizes[key] = int(values[key])
        except (TypeError, ValueError) as exc:
            raise PlaygroundError(f"{key}: expected a whole number of GB, got {values[key]!r}") from exc
    zone_value, zone_source = resolve("zone", zone)
    s = GceSettings(project=str(proj), zone=str(zone_value), zone_chosen=zone_source != "default",
                    machine_type=str(values["machine_type"]), disk_size_gb=sizes["disk_size_gb"],
                    data_disk_gb=sizes["data_disk_gb"], disk_type=str(values["disk_type"]),
                    network=str(values["network"]), subnetwork=str(values["subnetwork"] or ""),
                    service_account=str(values["service_account"]), image_project=str(values["image_project"] or ""),
                    profile=str(resolve("gce_profile", None)[0]))
    s.check()
    return s


def show() -> list[tuple[str, Any, str]]:
    """Every known setting with its value and where it came from."""
    return [(key, *resolve(key)) for key in KNOWN]
