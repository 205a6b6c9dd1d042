"""Settings resolve in order: flags, environment (PLAYGROUND_*), playground.toml, defaults.

playground.toml is read from the current directory, then from
~/.config/playground/playground.toml; each value remembers where it came from.
"""
from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import PlaygroundError

# The launch default, from measured memory (issue 16; bench/launch.py, bench/throughput.py, 2026-12-02): a
# playground holds 1.10 GiB idle and 1.63 GiB at the peak of a 60-task run (PSS summed over its processes,
# parallelism 8), and every throughput figure is measured on 2 CPUs. e2-standard-2 has 2 vCPUs and 8 GB: 4.6x
# that peak, room for the team's own tasks' data; at half e2-standard-4's price. Tasks that hold more than
# about 700 MB each at 8 at a time: --machine-type e2-standard-4 (16 GB) or e2-highmem-2 (16 GB, 2 vCPUs).
DEFAULT_MACHINE_TYPE = "e2-standard-2"


@dataclass(frozen=True)
class Setting:
    """One CLI setting, defined once: its default, what is expected and what it means. The defaults, the
    list `config show` prints, the GCE settings and docs/settings.md (`python -m playground.settings`) all
    come from SETTINGS, as Airflow's config.yml drives its options."""

    key: str
    default: Any  # None: no default
    expected: str
    meaning: str
    gce: bool = False  # a field of GceSettings (gce/vm_settings.py), resolved for every GCE command


SETTINGS: tuple[Setting, ...] = (
    Setting("provider", "local", "`local` or `gce`", "where playgrounds run: this machine, or Compute Engine"),
    Setting("project", None, "GCP project id (6-30 of a-z 0-9 -)", "the project a playground works for"),
    Setting("zone", "europe-west2-b", "a zone such as `europe-west2-b`", "gce: the zone new VMs go to"),
    Setting("machine_type", DEFAULT_MACHINE_TYPE, "a machine type such as `e2-standard-4`",
            "gce: the VM's shape (2 vCPUs and 8 GB by default, from measured memory: see Day two)", gce=True),
    Setting("disk_size_gb", 50, "10-65536", "gce: the boot disk's size in GB", gce=True),
    Setting("data_disk_gb", 20, "10-65536", "gce: the data volume's disk in GB (databases, artifacts, task logs; "
            "kept by `upgrade`)", gce=True),
    Setting("disk_type", "pd-balanced", "a disk type such as `pd-ssd`", "gce: both disks' type", gce=True),
    Setting("network", "default", "a network name", "gce: the VPC network of new VMs", gce=True),
    Setting("subnetwork", "", "a subnetwork name, or empty", "gce: the subnetwork (empty: the network's own in the "
            "region)", gce=True),
    Setting("service_account", "default", "`default` or a service account email",
            "gce: the VM's identity (its project's Compute Engine default account)", gce=True),
    Setting("image_project", "", "GCP project id, or empty", "gce: the project that keeps the images (empty: "
            "`project`)", gce=True),
    Setting("gce_profile", "seed", "an image profile", "gce: the profile `launch` and `image build` use"),
    Setting("schedule_method", "scheduler", "`scheduler` or `resource-policy`", "gce: how `schedule` stops and "
            "starts VMs (Cloud Scheduler jobs, or an instance schedule resource policy)"),
    Setting("timezone", "", "an IANA zone such as `Europe/London`, or empty", "gce: the zone `schedule` reads its "
            "times in (empty: this machine's)"),
)
BY_KEY = {s.key: s for s in SETTINGS}
DEFAULTS: dict[str, Any] = {s.key: s.default for s in SETTINGS if s.default is not None}
KNOWN = [s.key for s in SETTINGS]  # `playground config show` lists them in this order
GCE_KEYS = tuple(s.key for s in SETTINGS if s.gce)
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


def show() -> list[tuple[str, Any, str]]:
    """Every known setting with its value and where it came from."""
    return [(key, *resolve(key)) for key in KNOWN]


def default_text(key: str) -> str:
    """For a flag's help: where else the value may come from, and its default."""
    setting = BY_KEY[key]
    default = f", else {setting.default}" if setting.default not in (None, "") else ""
    return f"PLAYGROUND_{key.upper()}, {key} in playground.toml{default}"


def reference() -> str:
    """docs/settings.md: the table, generated from SETTINGS (tests/unit/test_settings_reference.py)."""
    lines = ["# Settings", "", "Generated by `python -m playground.settings` from `cli/playground/settings.py`; "
             "do not edit by hand.", "", "Each resolves from its flag, then `PLAYGROUND_<KEY>` (e.g. "
             "`PLAYGROUND_ZONE`), then `./playground.toml`, then `~/.config/playground/playground.toml`, then "
             "the default. `playground config show` prints each value and where it came from.", "",
             "| setting | default | expected | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = "none" if s.default is None else ("empty" if s.default == "" else f"`{s.default}`")
        lines.append(f"| `{s.key}` | {default} | {s.expected} | {s.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
