"""Idle autostop on a real local instance, through the CLI (issue 16): launched with `--autostop 1`, an open
tunnel holds it up, then a running task does; once both are over it powers itself off within a minute and a
check, leaves no process of its own behind, and starts again with everything there; `playground autostop`
changes it on a stopped machine and on a running one.

Each SSH command here is one short connection (plain ssh, no ControlMaster): seen at one autostop check at
most, so it does not hold the machine up itself, as the tunnel does.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import support
from playground.local import instance, netns
from playground_agent.autostop import CHECK_S
from support import eventually, instance_ssh, remove_instance, stop_process

pytestmark = pytest.mark.image

NAME = "pgautostop"
PROJECT = "playground-autostop"
CLI = str(Path(sys.executable).with_name("playground"))
DAG_ID = "pg_autostop_sleep"
TASK_S = 100  # longer than the autostop minute: only the task can be holding the machine up
SLEEP_DAG = f'''
import datetime
from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG("{DAG_ID}", start_date=datetime.datetime(2026, 1, 1), schedule_interval=None, catchup=False) as dag:
    BashOperator(task_id="sleep", bash_command="sleep {TASK_S}")
'''


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"playground {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


def listed_state() -> str:
    """What `playground list` says, without SSH."""
    rows = json.loads(cli("list", "--json", "--provider", "local").stdout)
    return next(r["state"] for r in rows if r["name"] == NAME)


def on_machine(command: list[str], stdin: str = "") -> str:
    return instance_ssh(instance.load(NAME), command, stdin=stdin)


def autostop_state() -> dict:
    return json.loads(on_machine(["sudo", "-n", "cat", "/run/playground/autostop.json"]))


def airflow_api(method: str, path: str, body: dict | None = None) -> dict:
    return support.airflow_api(instance.load(NAME), method, path, body)


@pytest.fixture(scope="module")
def launched(image, image_profile):
    remove_instance(NAME)
    cli("launch", "--project", PROJECT, "--name", NAME, "--profile", image_profile, "--autostop", "1",
        "--provider", "local")
    yield instance.load(NAME)
    remove_instance(NAME)


def test_a_tunnel_then_a_task_hold_the_machine_up_and_then_it_stops_itself(launched):
    row = json.loads(subprocess.run([CLI, "status", "--name", NAME, "--json", "--provider", "local"],
                                    capture_output=True, text=True, timeout=60).stdout)["instances"][0]
    assert row["autostop"]["minutes"] == 1 and row["autostop"]["state"] in ("idle", "held"), row["autostop"]

    # An open tunnel holds it up for longer than the minute.
    tunnel = subprocess.Popen([CLI, "tunnel", "--name", NAME, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert tunnel.stdout.readline(), "the tunnel printed nothing"
        on_machine(["sudo", "-n", "tee", f"/var/lib/airflow/dags/{DAG_ID}.py"], stdin=SLEEP_DAG)
        held = eventually(lambda: "SSH" in " ".join(autostop_state()["held_by"]), 3 * CHECK_S, every=2)
        assert held, autostop_state()
        assert eventually(lambda: airflow_api("GET", f"dags/{DAG_ID}").get("dag_id"), 120), "the DAG was not parsed"
        time.sleep(75)
        assert listed_state() == "running"
        assert autostop_state()["state"] == "held"
    finally:
        stop_process(tunnel, 20)

    # Then a running task does, with no SSH connection open.
    airflow_api("PATCH", f"dags/{DAG_ID}?update_mask=is_paused", {"is_paused": False})
    assert airflow_api("POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": "autostop-1"}).get("dag_run_id")
    assert eventually(lambda: "task" in " ".join(autostop_state()["held_by"]), 60, every=2), autostop_state()
    time.sleep(75)
    assert listed_state() == "running"
    during = autostop_state()
    assert during["state"] == "held" and not any("SSH" in h for h in during["held_by"]), during

    # Once the task is over, the idle minute runs out and the machine powers itself off.
    idle = eventually(lambda: autostop_state().get("idle_since"), TASK_S + 30, every=2)
    assert idle, "never idle after the task"
    stopped = eventually(lambda: listed_state() == "stopped", 60 + 3 * CHECK_S + 90, every=2)
    assert stopped, "did not power itself off"
    # `list` says stopped once the container has ended; the reaper then tears down what surrounded it and
    # records that, a few seconds later.
    assert eventually(lambda: instance.load(NAME).pids == {}, 60, every=1), instance.load(NAME)
    inst = instance.load(NAME)
    assert inst.state == "stopped", inst
    assert not netns.exists(inst.slot)
    assert not (inst.dir / "rootfs").is_mount()
    last = json.loads((inst.dir / "upper/var/lib/playground/autostop-last.json").read_text())
    assert last["minutes"] == 1

    # A new setting on the stopped machine counts from its next start; it starts with its run there; and
    # `playground autostop off` takes effect on the running machine.
    assert "after 5 idle minute(s) (takes effect at its next start)" in cli("autostop", "5", "--name", NAME).stderr
    cli("start", "--name", NAME)
    assert autostop_state()["minutes"] == 5
    assert airflow_api("GET", f"dags/{DAG_ID}/dagRuns/autostop-1").get("state") == "success"
    assert "autostop on pgautostop: off (takes effect now)" in cli("autostop", "off", "--name", NAME).stderr
    assert eventually(lambda: autostop_state()["state"] == "off", 3 * CHECK_S, every=2), autostop_state()
    assert json.loads(instance.load(NAME).dir.joinpath("metadata.json").read_text()
                      )["instance"]["attributes"]["autostop"] == "off"
