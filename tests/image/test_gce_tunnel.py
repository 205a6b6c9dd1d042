"""The GCE way in (SSH through IAP) end to end, on a real local instance.

IAP is out of reach here, so `gcloud` is tests/fakegcloud/gcloud: it relays
`start-iap-tunnel VM 22 --listen-on-stdin` to the local instance's sshd. Compute
is the fake Google server. Everything else is the real path a GCE user takes:
the instance found by label through google-cloud-compute, fabric over the
ProxyCommand gateway, the forwards, `ssh` through the same gateway, `status`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess

import pytest
import requests
from playground.gce import compute
from playground.local import instance
from support import REPO

CLI = str(REPO / ".venv" / "bin" / "playground")
PROJECT, ZONE = "team-gce-project", "europe-west2-b"


@pytest.fixture
def gce_env(local_instance, fake_google, tmp_path):
    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    compute.launch(compute.GceSettings(project=PROJECT, zone=ZONE), local_instance.name, {}, lambda m: None)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "google_compute_engine"
    shutil.copy(instance.ssh_key(), key)  # the key gcloud would have registered
    key.chmod(0o600)
    env = dict(os.environ, HOME=str(home), PATH=f"{REPO / 'tests' / 'fakegcloud'}:{os.environ['PATH']}",
               PLAYGROUND_SSH_USER=instance.SSH_USER, PLAYGROUND_PROVIDER="gce",
               FAKE_IAP_TARGETS=json.dumps({local_instance.name: local_instance.address}))
    return env


def where(name):
    return ["--project", PROJECT, "--zone", ZONE, "--name", name]


def test_tunnel_through_iap_forwards_airflow_and_mlflow_and_closes(gce_env, local_instance):
    proc = subprocess.Popen([CLI, "tunnel", *where(local_instance.name), "--json"], env=gce_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-2000:]
        info = json.loads(line)
        urls = {f["service"]: f["url"] for f in info["forwards"]}
        health = requests.get(f"{urls['airflow']}/health", timeout=10).json()
        assert health["metadatabase"]["status"] == "healthy"
        assert requests.get(f"{urls['mlflow']}/health", timeout=10).text.strip() == "OK"
        assert info["admin_user"] == "admin"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    for f in info["forwards"]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", f["local_port"]), timeout=2).close()


def test_ssh_and_status_go_through_the_same_gateway(gce_env, local_instance):
    out = subprocess.run([CLI, "ssh", *where(local_instance.name), "--", "hostname"], env=gce_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == local_instance.name, out.stderr
    res = subprocess.run([CLI, "status", *where(local_instance.name), "--json"], env=gce_env,
                         capture_output=True, text=True, timeout=60)
    row = next(r for r in json.loads(res.stdout)["instances"] if r["provider"] == "gce")
    assert row["level"] == "green" and row["state"] == "running", row
    assert {s["name"] for s in row["services"]} >= {"postgresql", "mlflow"}


def test_without_gcloud_the_user_is_told_what_to_install(gce_env, local_instance, tmp_path):
    env = dict(gce_env, PATH=str(tmp_path))  # no gcloud anywhere
    res = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "playground.main", "tunnel",
                          *where(local_instance.name)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "needs the gcloud CLI: install the Google Cloud SDK" in " ".join(res.stderr.split())


def test_gce_launch_waits_for_healthy_through_iap(gce_env, local_instance):
    """`launch --provider gce` creates the VM, then waits on the agent's report over SSH through IAP, with
    the same progress and outcome as a local launch (the relay leads to the real local instance)."""
    env = dict(gce_env, FAKE_IAP_TARGETS=json.dumps({"pg-wait": local_instance.address}))
    res = subprocess.run([CLI, "launch", "--project", PROJECT, "--zone", ZONE, "--name", "pg-wait",
                          "--timeout", "120"], env=env, capture_output=True, text=True, timeout=180)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 0, out
    assert "pg-wait is healthy at 10." in out and "no external IP" in out
    assert f"playground tunnel --provider gce --project {PROJECT} --zone {ZONE} --name pg-wait" in out
