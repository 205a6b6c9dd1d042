"""Pipeline throughput: a playground local instance against a fresh `airflow standalone`, same machine.

Run as root on a machine with a built local image:
    .venv/bin/python bench/throughput.py [--tasks 60] [--repeat 3]
Aim (issue 8): the playground runs a DAG of independent PythonOperator tasks at least 7x as many
tasks/minute as `airflow standalone` (SQLite, SequentialExecutor) of the same Airflow version.

Both run inside one launched instance, one after the other, on the same Airflow install: the
standalone with a home of its own under /tmp and nothing of the playground's config (playground.target
is stopped while it runs), then the playground as launched by default. The span of a DAG run is from
its `queued_at` to its last task's `end_date`, read from that Airflow's own database, after the DAG
is parsed and unpaused.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time

from common import Row, fresh_instance, print_rows
from playground.local import instance

AIM_RATIO = 7.0
NAME = "pgbthru"
DAG_ID = "bench_fanout"
SA_HOME = "/tmp/bench-standalone"
DAG_CODE = '''"""{tasks} independent PythonOperator tasks: a benchmark's pipeline."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator


def work(n):
    return sum(i * i for i in range(1000)) + n


with DAG(dag_id="{dag_id}", start_date=datetime(2024, 1, 1), schedule_interval=None, catchup=False,
         {dag_args}default_args={{"retries": 0}}) as dag:
    for n in range({tasks}):
        PythonOperator(task_id="t%02d" % n, python_callable=work, op_args=[n])
'''
# Span of a DAG run: queued_at to the last task's end, from the database (seconds), and its state.
SPAN_SQL = ("SELECT dr.state, {epoch_end} - {epoch_queued}, sum(CASE WHEN ti.state = 'success' THEN 1 ELSE 0 END) "
            "FROM dag_run dr JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
            "WHERE dr.dag_id = '{dag}' AND dr.run_id = '{run}' GROUP BY dr.state, dr.queued_at")
PG_SPAN = SPAN_SQL.format(epoch_end="extract(epoch from max(ti.end_date))", epoch_queued="extract(epoch from "
                          "dr.queued_at)", dag="{dag}", run="{run}")
SQLITE_SPAN = SPAN_SQL.format(epoch_end="(julianday(max(ti.end_date)) * 86400.0)", epoch_queued="(julianday("
                              "dr.queued_at) * 86400.0)", dag="{dag}", run="{run}")


def sh(inst, command: str, timeout: float = 120) -> str:
    proc = instance.remote(inst, command, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"bench: `{command[:120]}` failed on {inst.name}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def dag_code(tasks: int, dag_id: str, dag_args: str = "") -> str:
    return DAG_CODE.format(tasks=tasks, dag_id=dag_id, dag_args=dag_args)


def put_dag(inst, dag_id: str, code: str) -> None:
    """Into the playground's DAG folder, parsed now (not at the next folder listing)."""
    sh(inst, f"printf %s {shlex.quote(code)} | sudo -n -u airflow tee /var/lib/airflow/dags/{dag_id}.py >/dev/null")
    sh(inst, "sudo -n airflow dags reserialize", timeout=180)


def healthy(inst) -> bool:
    """The agent's report with live checks says healthy (its exit code is non-zero until then)."""
    return '"healthy": true' in instance.remote(inst, "sudo -n playground-agent status --json", timeout=60).stdout


def spool_empty(inst, timeout: float = 180) -> None:
    """Lineage records of earlier runs delivered: each DAG run starts on a machine at rest."""
    wait("the lineage spool delivered", lambda: sh(
        inst, "sudo -n find /var/lib/airflow/lineage-spool -name '*.json' | wc -l").strip() == "0", timeout, 1)


def wait(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"bench: {what} not reached in {timeout:.0f} s")


def standalone_airflow(inst, args: str) -> str:
    env = (f"env -i PATH=/opt/airflow/bin:/usr/bin:/bin HOME={SA_HOME} AIRFLOW_HOME={SA_HOME} "
           f"AIRFLOW__CORE__DAGS_FOLDER={SA_HOME}/dags AIRFLOW__CORE__LOAD_EXAMPLES=False")
    return sh(inst, f"sudo -n -u airflow {env} airflow {args}", timeout=180)


def sqlite(inst, sql: str) -> str:
    code = f"import sqlite3; print('|'.join(map(str, sqlite3.connect('{SA_HOME}/airflow.db').execute(" \
           f"{sql!r}).fetchone() or ())))"
    return sh(inst, f"sudo -n -u airflow /opt/airflow/bin/python -c {shlex.quote(code)}")


def psql(inst, sql: str) -> str:
    return sh(inst, f"sudo -n -u postgres psql -d airflow -Atc {shlex.quote(sql)}").strip()


def finished(row: str):
    parts = row.strip().split("|")
    if len(parts) == 3 and parts[0] in ("success", "failed"):
        return parts[0], float(parts[1]), int(parts[2])
    return None


class Api:
    """The instance's Airflow REST API as the admin, through its agent (`playground-agent airflow-api`: the
    API's version and auth, the password kept on the machine); paths below the API's root."""

    def __init__(self, inst) -> None:
        self.inst = inst

    def call(self, method: str, path: str, body=None) -> dict:
        cmd = f"sudo -n playground-agent airflow-api {method} {shlex.quote(path)}"
        if body is not None:
            cmd += f" {shlex.quote(json.dumps(body))}"
        from playground.local import instance

        # stdout also of a refused call: a DAG not parsed yet answers 404, and callers poll.
        out = instance.remote(self.inst, cmd, timeout=120).stdout
        return json.loads(out) if out.strip().startswith("{") else {}


def span_of(label: str, run_id: str, query, tasks: int, every: float) -> float:
    """A finished DAG run's span in seconds, from query(run_id) on that Airflow's database; every task
    must have succeeded."""
    state, span, done = wait(f"{label} run {run_id}", lambda: finished(query(run_id)), 60 + tasks * 10, every)
    if state != "success" or done != tasks:
        raise SystemExit(f"bench: {label} run {run_id} ended {state} with {done}/{tasks} tasks done")
    return span


def run_standalone(inst, tasks: int, repeat: int) -> list[float]:
    sh(inst, "sudo -n systemctl stop playground.target 'airflow-scheduler@*' airflow-webserver mlflow-server")
    sh(inst, f"sudo -n rm -rf {SA_HOME} && sudo -n -u airflow mkdir -p {SA_HOME}/dags && "
             f"printf %s {shlex.quote(dag_code(tasks, DAG_ID))} | sudo -n -u airflow tee {SA_HOME}/dags/{DAG_ID}.py "
             ">/dev/null")
    # A transient unit: stopping it stops every process standalone started (its cgroup).
    env = {"HOME": SA_HOME, "AIRFLOW_HOME": SA_HOME, "AIRFLOW__CORE__DAGS_FOLDER": f"{SA_HOME}/dags",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
           "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": "8090", "PATH": "/opt/airflow/bin:/usr/bin:/bin"}
    sh(inst, "sudo -n systemd-run --unit=bench-standalone --uid=airflow --gid=airflow "
             f"-p WorkingDirectory={SA_HOME} " + " ".join(f"--setenv={k}={v}" for k, v in env.items())
       + " /opt/airflow/bin/airflow standalone")
    try:
        wait("standalone's database", lambda: "ok" in sh(inst, f"test -s {SA_HOME}/airflow.db && echo ok || true"),
             240)
        standalone_airflow(inst, "dags reserialize")  # now, not at the next DAG folder listing
        wait("standalone parsed the DAG", lambda: DAG_ID in sqlite(inst, f"SELECT dag_id FROM dag WHERE "
                                                                       f"dag_id = '{DAG_ID}'"), 240, 2)
        standalone_airflow(inst, f"dags unpause {DAG_ID}")
        spans = []
        for i in range(repeat):
            run_id = f"bench-sa-{i}"
            standalone_airflow(inst, f"dags trigger {DAG_ID} -r {run_id}")
            spans.append(span_of("standalone", run_id, lambda r: sqlite(inst, SQLITE_SPAN.format(dag=DAG_ID, run=r)),
                                 tasks, 2))
        return spans
    finally:
        sh(inst, "sudo -n systemctl stop bench-standalone; sudo -n systemctl reset-failed bench-standalone 2>/dev/null "
                 "|| true")


class PeakMemory:
    """The largest PSS sum over the instance's processes (launch.py's measure), sampled every second while
    a run goes on: what the machine type must hold, beside the idle figure."""

    def __init__(self, inst) -> None:
        import threading

        self.root, self.peak, self.done = inst.pids["nspawn"], 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        from launch import descendants, memory_of

        while not self.done.wait(1.0):
            self.peak = max(self.peak, memory_of(descendants(self.root))[0])

    def __enter__(self) -> "PeakMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def run_playground(inst, tasks: int, repeat: int, peaks: list | None = None) -> list[float]:
    sh(inst, "sudo -n systemctl start playground.target")
    wait("the playground healthy again", lambda: healthy(inst), 180, 3)
    put_dag(inst, DAG_ID, dag_code(tasks, DAG_ID))
    api, dag = Api(inst), "dags/" + DAG_ID
    wait("the playground parsed the DAG", lambda: api.call("GET", dag).get("dag_id"), 240, 2)
    api.call("PATCH", dag + "?update_mask=is_paused", {"is_paused": False})
    spans = []
    for i in range(repeat):
        run_id = f"bench-pg-{i}"
        spool_empty(inst)
        api.call("POST", dag + "/dagRuns", {"dag_run_id": run_id})
        spans.append(span_of("playground", run_id, lambda r: psql(inst, PG_SPAN.format(dag=DAG_ID, run=r)), tasks, 1))
    if peaks is not None:
        # One more run, untimed: sampling every process's memory each second takes CPU the timed runs
        # must not share (measured: 90 tasks/min with it running, against about 230 without, on 2 CPUs).
        spool_empty(inst)
        with PeakMemory(instance.load(inst.name)) as memory:
            api.call("POST", dag + "/dagRuns", {"dag_run_id": "bench-pg-memory"})
            span_of("playground", "bench-pg-memory", lambda r: psql(inst, PG_SPAN.format(dag=DAG_ID, run=r)),
                    tasks, 1)
        peaks.append(memory.peak)
    return spans


def measure(tasks: int = 60, repeat: int = 3) -> list[Row]:
    # A fresh one even in the smoke run: on the shared instance, deploy's 50 DAG files were still being
    # parsed, and `dags reserialize` met the scheduler writing the same serialized DAGs.
    with fresh_instance(NAME) as (inst, _):
        standalone = run_standalone(inst, tasks, repeat)
        peaks: list[int] = []
        playground = run_playground(inst, tasks, repeat, peaks)
    sa_rate = [tasks * 60 / s for s in standalone]
    pg_rate = [tasks * 60 / s for s in playground]
    ratio = statistics.median(pg_rate) / statistics.median(sa_rate)
    return [Row(f"standalone, {tasks} tasks (tasks/min)", sa_rate),
            Row(f"playground, {tasks} tasks (tasks/min)", pg_rate),
            Row("playground / standalone (x)", [ratio], AIM_RATIO, higher_is_better=True),
            Row(f"playground: peak memory during the {tasks}-task run, PSS sum (GiB)", [b / 2**30 for b in peaks])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3, help="DAG runs on each side")
    args = parser.parse_args()
    print_rows(measure(args.tasks, args.repeat), f"pipeline throughput, {args.tasks} independent tasks")


if __name__ == "__main__":
    main()
