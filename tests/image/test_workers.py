"""Worker machines (issue 17): `playground launch --workers 2` makes a main (CeleryExecutor, Redis, its
PostgreSQL and MLflow open to the playground's private network only) and two workers from the same image.

What runs for real: Airflow's CeleryExecutor and `airflow celery worker` on each worker machine, Redis from
Debian's package as the broker, the main's PostgreSQL reached over the private bridge with a password, the
DAG folder and the task logs shared from the main, MLflow reached through each worker's forward. Checked:
60 independent tasks spread over both workers (their hostnames in Airflow's database), each recorded in
MLflow once by lineage, their logs readable through the main's webserver; a worker machine killed mid-run
(its container SIGKILLed, as a VM that dies) and the run still ending in success, the lost tasks retried on
the other worker; the broker, PostgreSQL and MLflow's forward listening on the private address and
127.0.0.1 only; destroy taking the workers and the network with the main.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess

import pytest
from playground.local import instance, netns
from playground.main import app
from support import airflow_api, eventually, need_local, remove_instance
from typer.testing import CliRunner

pytestmark = pytest.mark.image

NAME = "pgw"
WORKERS = ("pgw-w1", "pgw-w2")
DAG_ID = "fanout_workers"
TASKS = 60
# The fault runs (a worker killed or stopped mid-run, the main alone after scale 0) need tasks running when
# the fault strikes, not sixty of them: one task for each of the two workers' 16 slots.
SMALL_DAG_ID = "fanout_workers_small"
SMALL_TASKS = 16
DAG = '''"""{tasks} independent tasks, each a second or two of work: spread over the workers."""
from datetime import datetime, timedelta
import time

from airflow import DAG
from airflow.operators.python import PythonOperator


def work(n):
    time.sleep(1.5)
    return n


with DAG(dag_id="{dag_id}", start_date=datetime(2024, 1, 1), schedule_interval=None, catchup=False,
         default_args={{"retries": 2, "retry_delay": timedelta(seconds=5)}}) as dag:
    for n in range({tasks}):
        PythonOperator(task_id="t%02d" % n, python_callable=work, op_args=[n])
'''


def sh(inst, command: str, timeout: float = 120) -> str:
    proc = instance.remote(inst, command, timeout=timeout)
    assert proc.returncode == 0, f"{command[:100]} on {inst.name}: {proc.stderr[-1500:]}"
    return proc.stdout


def psql(main, sql: str) -> str:
    return sh(main, f"sudo -n -u postgres psql -d airflow -Atc {shlex.quote(sql)}").strip()


def api(main, method: str, path: str, body: dict | None = None) -> dict:
    return airflow_api(main, method, path, body)


@pytest.fixture(scope="module")
def playground(request, image_profile):
    if request.config.getoption("hosts"):
        pytest.skip("needs local instances (workers and their private network)")
    if image_profile != "local":
        pytest.skip("CeleryExecutor needs the Celery provider, which the local and current profiles carry")
    need_local()
    request.getfixturevalue("image")
    for name in (*WORKERS, NAME):
        remove_instance(name)
    res = CliRunner().invoke(app, ["launch", "--project", "playground-workers", "--name", NAME, "--workers", "2",
                                   "--no-build"], catch_exceptions=False)
    try:
        assert res.exit_code == 0, res.output
        main = instance.load(NAME)
        for dag_id, tasks in ((DAG_ID, TASKS), (SMALL_DAG_ID, SMALL_TASKS)):
            code = DAG.format(tasks=tasks, dag_id=dag_id).replace("'", "'\\''")
            sh(main, f"printf %s '{code}' | sudo -n -u airflow tee /var/lib/airflow/dags/{dag_id}.py >/dev/null")
        sh(main, "sudo -n airflow dags reserialize", timeout=180)
        for dag_id in (DAG_ID, SMALL_DAG_ID):
            eventually(lambda d=dag_id: api(main, "GET", f"dags/{d}").get("dag_id"), 180)
            api(main, "PATCH", f"dags/{dag_id}?update_mask=is_paused", {"is_paused": False})
        yield main
    finally:
        CliRunner().invoke(app, ["destroy", "--name", NAME, "--yes"], catch_exceptions=False)


def finished(main, run_id: str, dag_id: str = DAG_ID):
    state = psql(main, f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'")
    return state if state in ("success", "failed") else None


def hosts(main, run_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
    rows = psql(main, f"SELECT task_id, hostname, try_number FROM task_instance WHERE dag_id = '{dag_id}' "
                      f"AND run_id = '{run_id}' AND state = 'success'")
    return {r.split("|")[0]: r.split("|")[1] for r in rows.splitlines() if r}


def test_sixty_tasks_spread_over_both_workers_each_recorded_once_with_its_log(playground):
    main = playground
    api(main, "POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": "spread"})
    assert eventually(lambda: finished(main, "spread"), 400, 1) == "success"
    ran = hosts(main, "spread")
    assert len(ran) == TASKS
    assert set(ran.values()) == set(WORKERS), ran  # both workers, and never the main (it runs no worker)
    assert min(list(ran.values()).count(w) for w in WORKERS) >= 10, ran
    # Lineage delivered from each worker through its forward to the main's MLflow: one run per task.
    # Delivery is asynchronous (a spool on each worker): the experiment itself may come after the run ends.
    def recorded():
        found = json.loads(sh(main, "curl -s 'http://127.0.0.1:5000/api/2.0/mlflow/experiments/get-by-name?"
                                    f"experiment_name=airflow/{DAG_ID}'"))
        if "experiment" not in found:
            return None
        body = json.dumps({"experiment_ids": [found["experiment"]["experiment_id"]], "max_results": 500,
                           "filter": "tags.`airflow.run_id` = 'spread'"})
        runs = json.loads(sh(main, "curl -s -X POST -H 'Content-Type: application/json' "
                                   f"http://127.0.0.1:5000/api/2.0/mlflow/runs/search -d {shlex.quote(body)}"))
        tasks = [{t["key"]: t["value"] for t in r["data"]["tags"]}["airflow.task_id"] for r in runs.get("runs", [])]
        return tasks if len(tasks) >= TASKS else None

    tasks = eventually(recorded, 180, 2)
    assert sorted(tasks) == sorted(ran), "each task recorded in MLflow exactly once"
    # A task's log, written on the worker, read by the main's webserver.
    task = next(t for t, h in ran.items() if h == WORKERS[1])
    log = api(main, "GET", f"dags/{DAG_ID}/dagRuns/spread/taskInstances/{task}/logs/1?full_content=true")
    text = json.dumps(log)
    assert WORKERS[1] in text and "Marking task as SUCCESS" in text, text[-1500:]


def test_a_worker_killed_mid_run_and_the_run_still_succeeds_on_the_other(playground):
    main = playground
    w1 = instance.load(WORKERS[0])
    api(main, "POST", f"dags/{SMALL_DAG_ID}/dagRuns", {"dag_run_id": "killed"})
    eventually(lambda: psql(main, f"SELECT count(*) FROM task_instance WHERE run_id = 'killed' AND state = 'running' "
                                  f"AND hostname = '{WORKERS[0]}'") not in ("", "0"), 120, 0.5)
    # The whole machine at once, no warm shutdown: the container's init, whose end takes every process of its
    # PID namespace with it (SIGKILL of nspawn alone would leave them running).
    init = int(open(f"/proc/{w1.pids['nspawn']}/task/{w1.pids['nspawn']}/children").read().split()[0])
    os.kill(init, signal.SIGKILL)
    assert eventually(lambda: finished(main, "killed", SMALL_DAG_ID), 600, 2) == "success"
    ran = hosts(main, "killed", SMALL_DAG_ID)
    assert len(ran) == SMALL_TASKS
    retried = psql(main, "SELECT count(*) FROM task_instance WHERE run_id = 'killed' AND try_number > 1")
    assert int(retried) >= 1, "the killed worker's tasks were retried"
    assert int(psql(main, f"SELECT count(*) FROM task_instance WHERE run_id = 'killed' AND try_number > 1 "
                          f"AND hostname = '{WORKERS[1]}'")) == int(retried)


def test_the_broker_database_and_mlflow_listen_on_the_private_network_only(playground):
    main = playground
    private = netns.private_ip(main.private_net, main.private_host)
    listening = sh(main, "ss -Hltn")
    for port in (6379, 5432, 5000):
        addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()
                     if line.split()[3].endswith(f":{port}")}
        assert addresses <= {"127.0.0.1", private}, (port, addresses)
    # The main's address toward this machine reaches none of them (the per-instance filter, and nothing there).
    for port in (6379, 5432):
        probe = subprocess.run(["timeout", "3", "bash", "-c", f"echo > /dev/tcp/{main.address}/{port}"],
                               capture_output=True)
        assert probe.returncode != 0, port
    # The broker refuses a client without the password, from a worker on the private network.
    w2 = instance.load(WORKERS[1])
    said = sh(w2, f"printf 'PING\\r\\n' | timeout 3 socat - TCP:{private}:6379 || true")
    assert "NOAUTH" in said, said


def test_status_shows_each_worker_with_its_broker_queue_and_the_tasks_it_runs(playground):
    main = playground

    def rows():
        res = CliRunner().invoke(app, ["status", "--name", WORKERS[1], "--json"], catch_exceptions=False)
        return {s["name"]: s for s in json.loads(res.output)["instances"][0]["services"]}

    api(main, "POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": "watched"})
    # While the run goes, the worker names tasks of it from the main's database, and the broker its queue.
    busy = eventually(lambda: (lambda r: r if f"{DAG_ID}.t" in r["celery worker"]["reason"] else None)(rows()), 120, 1)
    assert "queue default (" in busy["celery worker"]["reason"] and busy["broker"]["level"] == "green", busy
    assert busy["mlflow (main's)"]["level"] in ("green", "amber"), busy
    assert eventually(lambda: finished(main, "watched"), 300, 1) == "success"
    assert "runs no task" in rows()["celery worker"]["reason"]


def test_a_worker_stopped_mid_run_and_the_run_still_succeeds(playground):
    """The other fault: a machine stopped (`playground stop`, a poweroff). Its Celery worker's warm shutdown
    lets its running tasks finish; what it had taken and not started goes back to the broker; the run ends
    in success on the other worker, started again after the kill above."""
    main = playground
    if not instance.is_running(instance.load(WORKERS[0])):
        res = CliRunner().invoke(app, ["start", "--name", WORKERS[0]], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    api(main, "POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": "stopped"})
    eventually(lambda: psql(main, f"SELECT count(*) FROM task_instance WHERE run_id = 'stopped' AND state = "
                                  f"'running' AND hostname = '{WORKERS[1]}'") not in ("", "0"), 120, 0.5)
    res = CliRunner().invoke(app, ["stop", "--name", WORKERS[1]], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert eventually(lambda: finished(main, "stopped"), 600, 2) == "success"
    ran = hosts(main, "stopped")
    assert len(ran) == TASKS and WORKERS[0] in ran.values()


def scale(*args: str) -> str:
    res = CliRunner().invoke(app, ["scale", "--name", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_scale_removes_stopped_workers_first_adds_them_back_and_at_0_the_main_runs_its_tasks(playground):
    main = playground
    refused = CliRunner().invoke(app, ["scale", "--name", WORKERS[1], "--workers", "1"], catch_exceptions=False)
    assert refused.exit_code == 1 and f"is a worker of {NAME}" in refused.output
    # A stopped worker goes first (the one stopped above), else the highest number; the other stays.
    gone = WORKERS[0] if not instance.is_running(instance.load(WORKERS[0])) else WORKERS[1]
    env = "sudo -n cat /etc/playground/airflow.env"
    assert 'AIRFLOW__CORE__PARALLELISM="16"' in sh(main, env)  # launch: 2 workers of 8 slots
    said = scale(NAME, "--workers", "1")
    assert f"removed worker {gone}" in said and not (instance.paths.instances_dir() / gone).exists()
    assert len(instance.workers_of(NAME)) == 1
    # The main hands out no more tasks than the workers left can take (else they wait in the broker).
    assert "airflow-parallelism 8" in said and 'AIRFLOW__CORE__PARALLELISM="8"' in sh(main, env)
    said = scale(NAME, "--workers", "2")  # the lowest free number again
    assert f"launched worker {gone}" in said and 'AIRFLOW__CORE__PARALLELISM="16"' in sh(main, env)
    assert '"healthy": true' in sh(instance.load(gone), "sudo -n playground-agent status --json")
    said = scale(NAME, "--workers", "0")  # warm shutdown of both, then LocalExecutor on the main
    assert f"removed worker {WORKERS[0]}" in said and f"removed worker {WORKERS[1]}" in said and "LocalExecutor" in said
    eventually(lambda: 'AIRFLOW__CORE__EXECUTOR="LocalExecutor"' in sh(main, env), 60)
    eventually(lambda: '"healthy": true' in instance.remote(main, "sudo -n playground-agent status --json").stdout, 180)
    api(main, "POST", f"dags/{SMALL_DAG_ID}/dagRuns", {"dag_run_id": "alone"})
    assert eventually(lambda: finished(main, "alone", SMALL_DAG_ID), 400, 1) == "success"
    assert set(hosts(main, "alone", SMALL_DAG_ID).values()) == {NAME}
    assert "CeleryExecutor again" in scale(NAME, "--workers", "1")  # and one for destroy to take along


def test_deploy_gives_the_workers_the_projects_packages_before_its_dags(playground):
    """A project with a requirements.txt (humanize, imported by a task): its workers get the packages too,
    first, and the task that imports them succeeds on one."""
    from support import REPO

    main = playground
    res = CliRunner().invoke(app, ["deploy", str(REPO / "examples" / "project"), "--name", NAME, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    done = json.loads(res.stdout)  # the progress goes to stderr
    workers = sorted(w.name for w in instance.workers_of(NAME))
    assert sorted(done["workers"]) == workers and all(p["installed"] for p in done["workers"].values()), done
    assert done["dags"] == ["orders_pipeline"] and done["import_errors"] == {}
    eventually(lambda: api(main, "GET", "dags/orders_pipeline").get("dag_id"), 180)  # the scheduler parsed it
    api(main, "PATCH", "dags/orders_pipeline?update_mask=is_paused", {"is_paused": False})
    api(main, "POST", "dags/orders_pipeline/dagRuns", {"dag_run_id": "on-a-worker"})
    state = eventually(lambda: psql(main, "SELECT state FROM dag_run WHERE dag_id = 'orders_pipeline' AND "
                                          "run_id = 'on-a-worker' AND state IN ('success', 'failed')") or None, 300, 1)
    ran = psql(main, "SELECT hostname FROM task_instance WHERE dag_id = 'orders_pipeline' AND run_id = 'on-a-worker' "
                     "AND task_id = 'read_settings'")
    assert state == "success" and ran in workers, "humanize imported by the task on a worker"
    again = CliRunner().invoke(app, ["deploy", str(REPO / "examples" / "project"), "--name", NAME, "--json"],
                               catch_exceptions=False)
    assert json.loads(again.stdout)["workers"] == {w: None for w in workers}, "the same requirements.txt: nothing"


def test_destroy_takes_the_workers_and_the_network_with_the_main(playground):
    res = CliRunner().invoke(app, ["destroy", "--name", NAME, "--yes"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in (NAME, *WORKERS):
        assert not (instance.paths.instances_dir() / name).exists()
    assert not (netns.NETNS_DIR / netns.private_names(playground.private_net)["netns"]).exists()
