"""What `playground upgrade` allows, decided from the two images' manifests before anything changes.

The new image's agent runs Airflow's migration at its first boot (bootstrap.py: a new boot disk is a first
boot) and MLflow migrates its own database when its server starts; neither can go back, so a downgrade is
refused. PostgreSQL keeps its clusters on the data volume in the on-disk format of its major version: a new
major needs pg_upgradecluster with both versions' binaries, and an image holds one version, so a change of
major is refused too (the way across is `playground backup`, a new playground, `playground restore`;
pg_restore reads an older major's dump). The agent's data.py refuses the same at boot, for a volume attached
by hand.
"""
from __future__ import annotations

import re
from typing import Optional

from .errors import PlaygroundError

# Components whose newer version changes what is stored (schema migrations that only go forward).
FORWARD_ONLY = ("airflow", "mlflow")
# Airflow 3 migrates a database of Airflow 2.7 or later only: "Make sure that you are on Airflow 2.7 or
# later" (Airflow's "Upgrading to Airflow 3", installation/upgrading_to_airflow3.rst, 3.0.0 onwards).
AIRFLOW3_FROM = (2, 7)


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.11.2' -> (2, 11, 2); the leading numeric part only ('15.20 (Debian 15.20-0+deb12u1)' -> (15, 20))."""
    match = re.match(r"\d+(?:\.\d+)*", text or "")
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def check(name: str, current: dict, new: dict) -> list[str]:
    """The changes an upgrade from the image `current` to `new` makes, one line each; PlaygroundError naming
    the component when it is refused."""
    old_parts, new_parts = current.get("components", {}), new.get("components", {})
    changes = []
    for part in FORWARD_ONLY:
        before, after = version_tuple(old_parts.get(part, "")), version_tuple(new_parts.get(part, ""))
        if not before or not after:
            raise PlaygroundError(f"--image: {new.get('name')} or {current.get('name')} says no {part} version "
                                  "in its manifest; refused")
        if after < before:
            raise PlaygroundError(f"--image: {new.get('name')} has {part} {new_parts[part]}, older than the "
                                  f"{old_parts[part]} {name} runs: a downgrade is refused ({part}'s database "
                                  "migrations only go forward)")
        if part == "airflow" and after[:1] >= (3,) and before[:2] < AIRFLOW3_FROM:
            raise PlaygroundError(f"--image: {new.get('name')} has Airflow {new_parts[part]}, and Airflow 3 "
                                  f"migrates only from 2.7 or later; {name} runs {old_parts[part]}: upgrade it "
                                  "to an image with the last Airflow 2 (2.11) first, then to this one")
        if after != before:
            changes.append(f"{part} {old_parts[part]} -> {new_parts[part]}")
    pg_before = version_tuple(old_parts.get("postgresql", ""))[:1]
    pg_after = version_tuple(new_parts.get("postgresql", ""))[:1]
    if not pg_before or not pg_after:  # a GCE image made before its postgresql label: unknown is not equal
        raise PlaygroundError(f"--image: {new.get('name') if not pg_after else current.get('name')} says no "
                              "postgresql version (an image built before that label): rebuild it, or `playground "
                              "backup` and restore onto a new playground")
    if pg_before != pg_after:
        raise PlaygroundError(
            f"--image: {new.get('name')} has PostgreSQL {new_parts.get('postgresql')}, {name} runs "
            f"{old_parts.get('postgresql')}: a change of major version is refused (its clusters' files need "
            "pg_upgradecluster with both versions, and an image holds one); `playground backup`, launch a new "
            "playground from that image and `playground restore` onto it")
    if (new.get("built_at") or "") < (current.get("built_at") or "") and not changes:
        raise PlaygroundError(f"--image: {new.get('name')} was built before {current.get('name')}, which {name} "
                              "runs: a downgrade is refused")
    return changes


def summary(current: dict, new: dict, changes: list[str]) -> str:
    text = f"{current.get('name')} -> {new.get('name')}"
    return text + (f" ({', '.join(changes)})" if changes else " (same versions, a newer build)")


def same_image(current: Optional[dict], new: dict) -> bool:
    return bool(current) and current.get("name") == new.get("name") and current.get("checksum") == new.get(
        "checksum")
