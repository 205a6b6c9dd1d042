"""Exposure of each playground unit as `systemd-analyze security` scores it (0 safest, 10 most exposed),
from the unit files as the image installs them (--offline: no instance needed) (issue 18).

    .venv/bin/python bench/security.py
Aim: 5.0 or less for the units that run Airflow, MLflow, lineage delivery, the bucket sync and the proxy.
The root units (the agent, health, the gcsfuse mount, host keys) are printed without an aim: they write
/etc, create users and run systemctl, which a sandbox would forbid.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from common import Row

UNITS = Path(__file__).resolve().parents[1] / "units"
SANDBOXED = ("airflow-webserver.service", "airflow-scheduler@.service", "airflow-triggerer.service",
             "mlflow-server.service", "playground-lineage.service", "playground-bucket-sync.service",
             "cloud-sql-proxy.service")
AS_ROOT = ("playground-agent.service", "playground-agent-watch.service", "playground-health.service",
           "playground-bucket-mount.service", "playground-ssh-hostkeys.service")
AIM = 5.01  # "5.0 or less"; a row meets its aim when under it


def exposure(unit: str) -> float:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNITS / unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    if not found:
        raise RuntimeError(f"systemd-analyze security {unit}: no score ({proc.stderr.strip()[-300:]})")
    return float(found.group(1))


def figures() -> list[Row]:
    rows = [Row(f"exposure: {u.rsplit('.', 1)[0]}", [exposure(u)], AIM) for u in SANDBOXED]
    rows += [Row(f"exposure: {u.rsplit('.', 1)[0]} (root)", [exposure(u)]) for u in AS_ROOT]
    return rows


def main() -> None:
    from common import table
    from rich.console import Console

    Console().print(table(figures(), "Unit exposure (0 safest, 10 most exposed)"))


if __name__ == "__main__":
    main()
