"""Upgrade (issue 16): a local instance on the second-newest local image, holding 1,000 MLflow runs (a
parameter, a metric and an artifact each) and 100 finished DAG runs, is moved by `playground upgrade` to the
newest image (built first when there is only one); the time from the command to healthy on the new image,
and whether every count the agent's backup code reads came back.

Run as root on a machine with a built local image:
    .venv/bin/python bench/upgrade.py [--runs 1000] [--dag-runs 100]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from backup import cli, fill
from common import Row, print_rows

CLI = str(Path(sys.executable).with_name("playground"))
NAME = "pgbench-upgrade"
COUNTS = ("import json; from playground_agent import backup; print(json.dumps({r: backup.counts(r, d) for r, "
          "(d, o) in backup.databases(backup.machine_config()).items()}))")


def counts(inst) -> dict:
    from throughput import sh

    return json.loads(sh(inst, "sudo -n env PYTHONPATH=/opt/playground/agent python3 -c " + shlex.quote(COUNTS)))


def images() -> tuple[Path, Path]:
    """The second-newest and the newest local image (a build first when there is one only)."""
    from playground.image import local_build

    if len(local_build.complete_images("local")) < 2:
        subprocess.run([CLI, "image", "build"], check=True, capture_output=True, timeout=3600)
    found = local_build.complete_images("local")
    return found[-2], found[-1]


def measure(runs: int = 1000, dag_runs: int = 100) -> list[Row]:
    from playground import paths
    from playground.local import instance

    older, newer = images()
    if (paths.instances_dir() / NAME).exists():
        instance.destroy(NAME)
    try:
        inst, _ = instance.launch(NAME, "playground-bench", {}, older, "local", lambda s: None, 300)
        fill(inst, runs, dag_runs)
        before = counts(inst)
        done, took = cli("upgrade", "--name", NAME, "--image", str(newer))
        if not done["upgraded"] or not done["healthy"]:
            raise SystemExit(f"upgrade did not end healthy: {done}")
        after = counts(instance.load(NAME))
        lost = sum(max(0, before[db][k] - after.get(db, {}).get(k, 0)) for db in before for k in before[db])
        return [
            Row(f"upgrade of a playground with {before['mlflow']['runs']} MLflow runs, "
                f"{before['airflow']['dag_runs']} DAG runs: command to healthy on the new image (s)", [took]),
            Row("rows lost in the upgrade", [float(lost)], aim=1),
        ]
    finally:
        if (paths.instances_dir() / NAME).exists():
            instance.destroy(NAME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--dag-runs", type=int, default=100)
    args = parser.parse_args()
    print_rows(measure(args.runs, args.dag_runs), "Upgrade")


if __name__ == "__main__":
    main()
