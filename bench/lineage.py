"""Lineage cost and durability on a local instance.

Run as root on a machine with a built local image:
    .venv/bin/python bench/lineage.py [--tasks 60] [--repeat 3]
Aims (issue 7): the time lineage adds to a task, p50 and p95 over a DAG of independent tasks, with
p95 under 50 ms; no record lost across an MLflow outage.

A task's time is its LocalTaskJob's span in Airflow's database (job start to end: the task process with
every listener hook, start and end), compared between DAG runs with the instance's `lineage` attribute
on and off (re-applied by the agent), alternated so drift hits both. The DAG runs one task at a time,
so a span is the task's own work, not its share of busy cores. Then MLflow is stopped, the DAG
runs, MLflow is started, and every task's record must arrive, once.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time

from common import Row, bench_instance, print_rows
from playground.local import instance
from throughput import Api as AirflowApi
from throughput import dag_code, healthy, put_dag, sh, spool_empty, wait

AIM_P95_MS = 50.0
NAME = "pgblin"
# One task at a time: a task's span is then its own work, not its share of two busy cores.
DAG_ID = "bench_lineage"
JOB_SPANS = ("SELECT extract(epoch from j.end_date - j.start_date) FROM task_instance ti JOIN job j ON "
             "j.id = ti.job_id WHERE ti.dag_id = '{dag}' AND ti.run_id = '{run}' AND ti.state = 'success'")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def set_lineage(inst, value: str) -> None:
    """Change the instance's metadata as `gcloud compute instances add-metadata` would, then re-apply."""
    path = inst.dir / "metadata.json"
    doc = json.loads(path.read_text())
    doc["instance"]["attributes"]["lineage"] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    sh(inst, "sudo -n playground-agent apply", timeout=180)
    wait(f"healthy with lineage={value}", lambda: healthy(inst), 180, 2)


class Api(AirflowApi):
    """The REST API, and one DAG run of the lineage benchmark's DAG to its end."""

    def run_dag(self, run_id: str, tasks: int) -> None:
        api = f"dags/{DAG_ID}/dagRuns"
        self.call("POST", api, {"dag_run_id": run_id})
        state = wait(f"DAG run {run_id}", lambda: (lambda s: s if s in ("success", "failed") else None)(
            self.call("GET", f"{api}/{run_id}").get("state")), 60 + tasks * 10, 2)
        if state != "success":
            raise SystemExit(f"bench: DAG run {run_id} ended {state}")


def job_spans(inst, run_id: str) -> list[float]:
    out = sh(inst, "sudo -n -u postgres psql -d airflow -Atc " + shlex.quote(JOB_SPANS.format(dag=DAG_ID,
                                                                                             run=run_id)))
    return [float(x) for x in out.split()]


def recorded(inst, run_id: str) -> dict[str, int]:
    """task id -> how many MLflow runs record it, for one DAG run."""
    code = ("import json, urllib.request as u\n"
            "def call(p, b=None):\n"
            "    r = u.Request('http://127.0.0.1:5000/api/2.0/mlflow/' + p, data=json.dumps(b).encode() if b else None,"
            " headers={'Content-Type': 'application/json'}, method='POST' if b else 'GET')\n"
            "    return json.load(u.urlopen(r, timeout=10))\n"
            f"e = call('experiments/get-by-name?experiment_name=airflow/{DAG_ID}')['experiment']['experiment_id']\n"
            f"runs = call('runs/search', {{'experiment_ids': [e], 'max_results': 1000, 'filter': "
            f"\"tags.`airflow.run_id` = '{run_id}'\"}}).get('runs', [])\n"
            "out = {}\n"
            "for r in runs:\n"
            "    t = {x['key']: x['value'] for x in r['data'].get('tags', [])}\n"
            "    if t.get('playground.lineage.end'):\n"
            "        out[t['airflow.task_id']] = out.get(t['airflow.task_id'], 0) + 1\n"
            "print(json.dumps(out))\n")
    proc = instance.remote(inst, f"python3 -c {shlex.quote(code)}", timeout=60)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}  # MLflow still starting: nothing yet


def measure(tasks: int = 60, repeat: int = 3) -> list[Row]:
    spans: dict[str, list[list[float]]] = {"on": [], "off": []}
    with bench_instance(NAME) as (inst, _):
        put_dag(inst, DAG_ID, dag_code(tasks, DAG_ID, "max_active_tasks=1, "))
        api = Api(inst)
        wait("the DAG parsed", lambda: api.call("GET", f"dags/{DAG_ID}").get(
            "dag_id"), 240, 2)
        api.call("PATCH", f"dags/{DAG_ID}?update_mask=is_paused", {"is_paused": False})
        for i in range(repeat):
            for mode in ("on", "off"):
                set_lineage(inst, mode)
                run_id = f"bench-lineage-{mode}-{i}"
                api.run_dag(run_id, tasks)
                spans[mode].append(job_spans(inst, run_id))
                spool_empty(inst)  # delivered after the burst: the next run starts at rest
        # Outage: lineage on, MLflow down for the whole DAG run, then back.
        set_lineage(inst, "on")
        sh(inst, "sudo -n systemctl stop mlflow-server")
        try:
            api.run_dag("bench-outage", tasks)
        finally:
            sh(inst, "sudo -n systemctl start mlflow-server")
        t0 = time.monotonic()
        while True:  # a lost record shows as a count, not as a failed run
            got = recorded(inst, "bench-outage")
            if len(got) >= tasks or time.monotonic() - t0 > 300:
                break
            time.sleep(2)
        catch_up = time.monotonic() - t0
        lost = tasks - len(got)
        doubled = sum(1 for n in got.values() if n > 1)
    rows = []
    for q, label in ((0.5, "p50"), (0.95, "p95")):
        added = [1000 * (percentile(on, q) - percentile(off, q)) for on, off in zip(spans["on"], spans["off"],
                                                                                      strict=True)]
        rows.append(Row(f"time lineage adds per task, {label} (ms)", added, AIM_P95_MS if label == "p95" else None))
    rows += [Row("task span with lineage off, p50 (ms)", [1000 * statistics.median(s) for s in spans["off"]]),
             Row("records lost across an MLflow outage", [float(lost)], 0.5),
             Row("records doubled across an MLflow outage", [float(doubled)], 0.5),
             Row("outage: MLflow back to every record in (s)", [catch_up])]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3, help="DAG runs with lineage on, and as many off")
    args = parser.parse_args()
    print_rows(measure(args.tasks, args.repeat), f"lineage, {args.tasks} independent tasks")


if __name__ == "__main__":
    main()
