"""Backup and restore (issue 16): a local instance with 1,000 MLflow runs (a parameter, a metric and a small
artifact each) and 100 finished DAG runs is backed up through `playground backup` while it runs, and the
file restored onto a fresh instance through `playground restore`; the time of each, the file's size, and
whether every count came back.

Run as root on a machine with a built local image:
    .venv/bin/python bench/backup.py [--runs 1000] [--dag-runs 100]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, bench_instance, print_rows
from throughput import psql, put_dag, sh, wait

CLI = str(Path(sys.executable).with_name("playground"))
SOURCE, TARGET = "pgbench-backup-a", "pgbench-backup-b"
DAG_ID = "pg_bench_backup"
DAG = f'''
import datetime
from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("{DAG_ID}", start_date=datetime.datetime(2026, 1, 1), schedule_interval=None, catchup=False) as dag:
    BashOperator(task_id="echo", bash_command="echo backed up")
'''
MLFLOW_RUNS = '''
import mlflow
mlflow.set_experiment("bench-backup")
for i in range({runs}):
    with mlflow.start_run():
        mlflow.log_param("i", i)
        mlflow.log_metric("score", i / 7)
        mlflow.log_text("run %d" % i, "notes.txt")
'''

TRIGGER = r"""
set -e
api="sudo -n playground-agent airflow-api"
$api PATCH "dags/{dag}?update_mask=is_paused" '{{"is_paused": false}}' >/dev/null
for n in $(seq 1 {n}); do
  $api POST "dags/{dag}/dagRuns" "{{\"dag_run_id\": \"bench-$n\"}}" >/dev/null
done
"""


def fill(inst, runs: int, dag_runs: int) -> None:
    sh(inst, "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 /opt/mlflow/bin/python3 -c "
       + shlex.quote(MLFLOW_RUNS.format(runs=runs)), timeout=1200)
    put_dag(inst, DAG_ID, DAG)
    # Through the REST API in one shell: an `airflow dags trigger` is a CLI start of seconds each.
    sh(inst, "bash -c " + shlex.quote(TRIGGER.format(dag=DAG_ID, n=dag_runs)), timeout=600)
    done = f"SELECT count(*) FROM dag_run WHERE dag_id = '{DAG_ID}' AND state = 'success'"
    wait(f"the {dag_runs} DAG runs succeeded", lambda: psql(inst, done) == str(dag_runs), 1200, every=5)


def cli(*args: str) -> tuple[dict, float]:
    started = time.monotonic()
    proc = subprocess.run([CLI, *args, "--json", "--provider", "local"], capture_output=True, text=True,
                          timeout=3600)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"playground {' '.join(args)}: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout), took


def measure(runs: int = 1000, dag_runs: int = 100) -> list[Row]:
    with bench_instance(SOURCE) as (source, _), bench_instance(TARGET) as (target, _), \
            tempfile.TemporaryDirectory() as folder:
        fill(source, runs, dag_runs)
        made, backup_s = cli("backup", "--name", SOURCE, "--to", folder)
        result, restore_s = cli("restore", "--name", TARGET, "--from", made["path"])
        counts = made["manifest"]["databases"]
        lost = sum(max(0, counts[db]["counts"][k] - result["found"].get(db, {}).get(k, 0))
                   for db in counts for k in counts[db]["counts"])
        return [
            Row(f"backup of {counts['mlflow']['counts']['runs']} MLflow runs, "
                f"{counts['airflow']['counts']['dag_runs']} DAG runs (s)", [backup_s]),
            Row("backup file (MiB)", [made["bytes"] / 2**20]),
            Row("restore onto a fresh instance, counted again (s)", [restore_s]),
            Row("rows lost in backup and restore", [float(lost)], aim=1),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--dag-runs", type=int, default=100)
    args = parser.parse_args()
    print_rows(measure(args.runs, args.dag_runs), "Backup and restore")


if __name__ == "__main__":
    main()
