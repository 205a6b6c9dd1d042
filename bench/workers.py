"""Worker machines (issue 17): one machine with LocalExecutor against a main with two Celery workers, on this
machine, in one run.

Run as root on a machine with a built local image:
    .venv/bin/python bench/workers.py [--tasks 60] [--repeat 1]

Measured: a worker's launch to healthy (its main already up); the same DAG of independent tasks on each
side (tasks a minute, queued_at to the last task's end from Airflow's database); and the latency of a chain
of 10 one-after-another no-op tasks on each side, per task, whose difference is what Celery adds to a task
(a broker round trip, a worker process picking it up). Here every instance shares the same two cores: the
workers add no CPU, so the ratio shows Celery's cost on one host, not the gain of real machines; on GCE each
worker brings its own vCPUs.
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import Row, bench_instance, print_rows
from playground.image import local_build
from playground.local import instance
from playground.providers.workers import worker_name, worker_slots
from playground_agent import schema
from throughput import PG_SPAN, Api, dag_code, healthy, psql, put_dag, span_of, spool_empty, wait

FANOUT = "bench_workers_fanout"
CHAIN = "bench_workers_chain"
CHAIN_LEN = 10
CHAIN_CODE = '''"""{n} no-op tasks one after another: the latency of a task, not its work."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator

with DAG(dag_id="{dag_id}", start_date=datetime(2024, 1, 1), schedule_interval=None, catchup=False) as dag:
    previous = None
    for n in range({n}):
        task = PythonOperator(task_id="c%02d" % n, python_callable=lambda: None)
        if previous is not None:
            previous >> task
        previous = task
'''.format(n=CHAIN_LEN, dag_id=CHAIN)


def runs(main, tasks: int, repeat: int, label: str) -> tuple[list[float], list[float]]:
    """(spans of the fan-out, per-task latencies of the chain) on a playground whose main is `main`."""
    put_dag(main, FANOUT, dag_code(tasks, FANOUT))
    put_dag(main, CHAIN, CHAIN_CODE)
    api = Api(main)
    for dag in (FANOUT, CHAIN):
        url = "dags/" + dag
        wait(f"{label}: {dag} parsed", lambda u=url: api.call("GET", u).get("dag_id"), 240, 2)
        api.call("PATCH", url + "?update_mask=is_paused", {"is_paused": False})
    spans, chain = [], []
    for i in range(repeat):
        for dag, count, out in ((FANOUT, tasks, spans), (CHAIN, CHAIN_LEN, chain)):
            run_id = f"bench-{label}-{dag}-{i}"
            spool_empty(main)
            api.call("POST", f"dags/{dag}/dagRuns", {"dag_run_id": run_id})
            span = span_of(label, run_id, lambda r, d=dag: psql(main, PG_SPAN.format(dag=d, run=r)), count, 1)
            out.append(span if dag == FANOUT else span / CHAIN_LEN)
    return spans, chain


def measure(tasks: int = 60, repeat: int = 1) -> list[Row]:
    with bench_instance("pgbwl") as (single, _):
        local_spans, local_chain = runs(single, tasks, repeat, "local")
    image = local_build.newest_image("local")
    name = "pgbwc"
    if (instance.paths.instances_dir() / name).exists():
        instance.destroy(name)
    try:
        # As `launch --workers 2` makes it: the main hands out as many tasks as the two workers have slots.
        slots = str(2 * worker_slots({}))
        main, _ = instance.launch(name, "playground-bench", {"airflow-parallelism": slots}, image, "local",
                                  lambda s: None, 300, with_workers=True)
        launch_s = []
        for k in (1, 2):
            t0 = time.monotonic()
            instance.launch(worker_name(name, k), "playground-bench", {}, image, "local", lambda s: None, 300,
                            worker_of=main, worker_host=instance.WORKER_HOST_0 + k - 1)
            launch_s.append(time.monotonic() - t0)
        wait("the main healthy with its workers", lambda: healthy(main), 120, 2)
        celery_spans, celery_chain = runs(main, tasks, repeat, "celery")
    finally:
        if (instance.paths.instances_dir() / name).exists():
            instance.destroy(name)
    local_rate = [tasks * 60 / s for s in local_spans]
    celery_rate = [tasks * 60 / s for s in celery_spans]
    return [Row("worker: launch to healthy, main up (s)", launch_s),
            Row(f"one machine, LocalExecutor, parallelism {schema.default('airflow-parallelism')}, {tasks} tasks "
                "(tasks/min)", local_rate),
            Row(f"main + 2 workers, CeleryExecutor, parallelism {slots}, {tasks} tasks (tasks/min)", celery_rate),
            Row("Celery / Local, same host (x)", [statistics.median(celery_rate) / statistics.median(local_rate)]),
            Row(f"LocalExecutor: a task's latency in a chain of {CHAIN_LEN} (s)", local_chain),
            Row(f"CeleryExecutor: a task's latency in a chain of {CHAIN_LEN} (s)", celery_chain),
            Row("what Celery adds to a task (s)", [statistics.median(celery_chain) - statistics.median(local_chain)])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=1, help="DAG runs of each kind on each side")
    args = parser.parse_args()
    print_rows(measure(args.tasks, args.repeat), f"workers: {args.tasks} independent tasks, 2 CPUs shared")


if __name__ == "__main__":
    main()
