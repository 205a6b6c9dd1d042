"""Image profiles are data: packer/profiles/<name>.pkrvars.hcl plus packer/locks/<name>/."""
from __future__ import annotations

import re
from pathlib import Path

from .. import paths
from ..errors import PlaygroundError


def known() -> list[str]:
    return sorted(p.name.removesuffix(".pkrvars.hcl") for p in (paths.PACKER_DIR / "profiles").glob("*.pkrvars.hcl"))


def check(profile: str) -> None:
    if profile not in known():
        raise PlaygroundError(f"--profile: unknown profile {profile!r}; expected one of {', '.join(known())}")


def var_file(profile: str) -> Path:
    check(profile)
    return paths.PACKER_DIR / "profiles" / f"{profile}.pkrvars.hcl"


def variables(profile: str) -> dict[str, str]:
    """The simple `name = "value"` lines of a profile (enough for versions and labels)."""
    values = {}
    for line in var_file(profile).read_text().splitlines():
        m = re.match(r'^\s*([a-z_]+)\s*=\s*"([^"]*)"', line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


def debian_suite(profile: str) -> str:
    """The Debian release a local profile is debootstrapped from; empty for a GCE profile."""
    return variables(profile).get("debian_suite", "")


def local_profiles() -> list[str]:
    """Profiles built here as a rootfs (their var-file names a debian_suite)."""
    return [p for p in known() if debian_suite(p)]


def gce_profiles() -> list[str]:
    return [p for p in known() if not debian_suite(p)]


def has_celery(profile: str) -> bool:
    """Whether the profile's Airflow lock has the Celery provider that CeleryExecutor and workers need
    (seed's Airflow 2.0.2 lock has none: its workers would fail at their first start)."""
    lock = paths.PACKER_DIR / "locks" / profile / "airflow.txt"
    return lock.exists() and re.search(r"(?m)^apache-airflow-providers-celery==", lock.read_text()) is not None
