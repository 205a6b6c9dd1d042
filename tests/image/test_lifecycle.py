"""End to end through the CLI, on a real local instance.

launch -> healthy -> the Airflow REST API answers through an SSH tunnel and
refuses a request without credentials -> the example DAG runs and succeeds ->
the MLflow server lists the run it logged -> stop -> start -> the DAG run and
the MLflow run are still there -> destroy leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from playground import paths
from playground.local import instance, netns
from support import hold_port

pytestmark = pytest.mark.image

NAME = "pge2e"
PROJECT = "playground-e2e"
DAG = "mlflow_connection_test"
RUN_ID = "e2e-run-1"
CLI = str(Path(sys.executable).with_name("playground"))


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def cli_ok(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    proc = cli(*args, timeout=timeout)
    assert proc.returncode == 0, f"playground {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


class Tunnel:
    """`playground tunnel --json` as a user runs it, stopped with Ctrl-C."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen([CLI, "tunnel", "--name", NAME, "--json", *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, f"tunnel printed nothing: {self.proc.stderr.read()[-2000:]}"
        self.info = json.loads(line)
        self.url = {f["service"]: f["url"] for f in self.info["forwards"]}

    def close(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # a failed close must not leave the tunnel running
            self.proc.communicate()
            pytest.fail("the tunnel did not close within 20 s of SIGINT")
        assert self.proc.returncode == 0, err
        for fw in self.info["forwards"]:
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", fw["local_port"])) != 0, f"port {fw['local_port']} still open"
        return err


def wait_for(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(every)
    pytest.fail(f"{what} not reached in {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def launched(image, image_profile):
    if (paths.instances_dir() / NAME).exists():
        instance.destroy(NAME)
    proc = cli_ok("launch", "--project", PROJECT, "--name", NAME, "--provider", "local", "--profile", image_profile)
    assert "healthy" in proc.stderr and "playground tunnel --name pge2e" in proc.stderr
    password = cli_ok("ssh", "--name", NAME, "--", "sudo", "-n", "playground-agent", "admin-password").stdout.strip()
    assert len(password) >= 16
    state = {"password": password, "slot": instance.load(NAME).slot, "dir": instance.load(NAME).dir}
    yield state
    if (paths.instances_dir() / NAME).exists():
        instance.destroy(NAME)


def airflow_dag_run(tunnel: Tunnel, auth) -> dict:
    r = requests.get(f"{tunnel.url['airflow']}/api/v1/dags/{DAG}/dagRuns/{RUN_ID}", auth=auth, timeout=10)
    r.raise_for_status()
    return r.json()


def mlflow_runs(tunnel: Tunnel) -> list[dict]:
    base = tunnel.url["mlflow"]
    exp = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name",
                       params={"experiment_name": "playground-connection-test"}, timeout=10)
    exp.raise_for_status()
    found = requests.post(f"{base}/api/2.0/mlflow/runs/search", timeout=10, json={
        "experiment_ids": [exp.json()["experiment"]["experiment_id"]],
        "filter": f"tags.`airflow.run_id` = '{RUN_ID}'"})
    found.raise_for_status()
    return found.json().get("runs", [])


def test_rest_api_through_tunnel_dag_and_mlflow(launched):
    # Someone already uses the MLflow port here (the session holds it too): the tunnel must pick another.
    squatter = hold_port(5000)
    try:
        tunnel = Tunnel()
    finally:
        if squatter is not None:
            squatter.close()
    auth = (tunnel.info["admin_user"], launched["password"])
    try:
        ml_fw = next(f for f in tunnel.info["forwards"] if f["service"] == "mlflow")
        assert ml_fw["remote_port"] == 5000 and ml_fw["local_port"] != 5000

        af = tunnel.url["airflow"]
        # Refused without credentials or with a wrong password (Airflow 2.11 says 403, 2.0 says 401).
        for bad in (None, (auth[0], "wrong-password")):
            r = requests.get(f"{af}/api/v1/dags", auth=bad, timeout=10)
            assert r.status_code in (401, 403) and DAG not in r.text, (bad, r.status_code)

        wait_for("the example DAG parsed", lambda: requests.get(f"{af}/api/v1/dags/{DAG}", auth=auth, timeout=10)
                 .status_code == 200, 180)
        r = requests.patch(f"{af}/api/v1/dags/{DAG}", params={"update_mask": "is_paused"},
                           json={"is_paused": False}, auth=auth, timeout=10)
        assert r.status_code == 200, r.text
        r = requests.post(f"{af}/api/v1/dags/{DAG}/dagRuns", json={"dag_run_id": RUN_ID}, auth=auth, timeout=10)
        assert r.status_code == 200, r.text

        run = wait_for("the DAG run finished", lambda: (lambda d: d if d["state"] in ("success", "failed") else None)(
            airflow_dag_run(tunnel, auth)), 240, every=1)
        assert run["state"] == "success", run

        runs = mlflow_runs(tunnel)
        assert len(runs) == 1, runs
        ml_run = runs[0]
        assert ml_run["info"]["status"] == "FINISHED"
        assert {"key": "project", "value": PROJECT} in ml_run["data"]["params"]
        assert any(m["key"] == "connection_ok" and m["value"] == 1.0 for m in ml_run["data"]["metrics"])
        art = requests.get(f"{tunnel.url['mlflow']}/get-artifact", timeout=10,
                           params={"path": "hello.txt", "run_uuid": ml_run["info"]["run_id"]})
        assert art.status_code == 200 and art.text == "hello from the playground\n"
        launched["mlflow_run_id"] = ml_run["info"]["run_id"]
    finally:
        tunnel.close()


def status_json(*extra: str) -> tuple[int, dict]:
    proc = cli("status", "--name", NAME, "--json", *extra, timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def test_status_healthy_then_a_service_held_down(launched):
    rc, model = status_json()
    row = model["instances"][0]
    assert (rc, row["level"], row["state"]) == (0, "green", "running"), row
    assert {"postgresql", "airflow webserver", "airflow scheduler 1", "mlflow"} <= {s["name"] for s in row["services"]}
    shown = cli("status", "--name", NAME, timeout=60)
    assert shown.returncode == 0 and NAME in shown.stdout and "airflow scheduler 1" in shown.stdout

    cli_ok("ssh", "--name", NAME, "--", "sudo", "-n", "systemctl", "stop", "mlflow-server.service")
    try:
        rc, model = status_json()
        mlflow = next(s for s in model["instances"][0]["services"] if s["name"] == "mlflow")
        assert rc == 1 and model["instances"][0]["level"] == "red"
        assert mlflow["level"] == "red" and "mlflow-server.service is inactive" in mlflow["reason"]
        assert mlflow["journal"], "the last journal lines of a red service are shown"
    finally:
        cli_ok("ssh", "--name", NAME, "--", "sudo", "-n", "systemctl", "start", "mlflow-server.service")
    wait_for("status green again", lambda: status_json()[0] == 0, 90)


def test_stop_start_keeps_runs(launched):
    assert "mlflow_run_id" in launched, "needs the DAG run of the previous test"
    out = cli_ok("stop", "--name", NAME).stderr
    assert "container" in out
    rows = {r["name"]: r for r in json.loads(cli_ok("list", "--json").stdout)}
    assert rows[NAME]["state"] == "stopped"
    refused = cli("tunnel", "--name", NAME)
    assert refused.returncode != 0 and "is stopped" in refused.stderr
    rc, model = status_json()
    assert rc == 2 and model["instances"][0]["level"] == "down"
    assert model["instances"][0]["next_step"] == f"playground start --name {NAME}"

    cli_ok("start", "--name", NAME)
    tunnel = Tunnel()
    try:
        auth = (tunnel.info["admin_user"], launched["password"])
        assert airflow_dag_run(tunnel, auth)["state"] == "success"
        assert [r["info"]["run_id"] for r in mlflow_runs(tunnel)] == [launched["mlflow_run_id"]]
    finally:
        tunnel.close()
    # Secrets are made on first boot only: the password survived the reboot.
    again = cli_ok("ssh", "--name", NAME, "--", "sudo", "-n", "playground-agent", "admin-password").stdout.strip()
    assert again == launched["password"]


def test_destroy_leaves_nothing(launched):
    nspawn_pid = instance.load(NAME).pids.get("nspawn")
    out = cli_ok("destroy", "--name", NAME, "--yes").stderr
    assert "removed folder" in out
    net = netns.names(launched["slot"])
    assert not launched["dir"].exists()
    assert not netns.exists(launched["slot"])
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {net['host_if']}@" not in links and not netns.link_exists(net["host_if"])
    assert str(launched["dir"]) not in Path("/proc/mounts").read_text()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        assert str(launched["dir"]) not in cmdline, f"process {pid} left: {cmdline}"
    assert nspawn_pid is None or not Path(f"/proc/{nspawn_pid}").exists() or \
        str(launched["dir"]) not in Path(f"/proc/{nspawn_pid}/cmdline").read_bytes().decode(errors="replace")
    assert NAME not in cli_ok("list", "--json").stdout
