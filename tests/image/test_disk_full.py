"""A data volume filled to the last block (issue 16): `status` goes red and names what fills it, PostgreSQL
and the services ride it out, and once space is freed the machine is healthy again with every DAG run and
MLflow run committed before still there, and new runs work. The instance's data volume is a 1 GiB ext4 file
(`launch --data-disk 1`), so filling it costs a second, not the host's disk."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from playground.local import instance
from support import eventually, instance_ssh, remove_instance
from test_backup import counts

pytestmark = pytest.mark.image
CLI = str(Path(sys.executable).with_name("playground"))
NAME = "pgtest-full"
VOLUME = "/mnt/disks/playground-data"


def sql(inst, query: str) -> str:
    return instance_ssh(inst, ["sudo", "-n", "setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups",
                               "psql", "-qtAX", "-d", "airflow", "-c", shlex.quote(query)]).strip()


def live(inst) -> dict:
    out = instance.remote(inst, "sudo -n playground-agent status --json", timeout=60)
    return json.loads(out.stdout) if out.stdout.startswith("{") else {}


def finished_runs(inst) -> set[str]:
    return set(sql(inst, "SELECT run_id FROM dag_run WHERE state IN ('success', 'failed')").split())


@pytest.fixture(scope="module")
def machine(image, image_profile):
    remove_instance(NAME)
    inst, _ = instance.launch(NAME, "playground-test", {}, image, image_profile, report=lambda s: None,
                              timeout=300, data_disk_gb=1)
    try:
        yield inst
    finally:
        remove_instance(NAME)


def test_a_full_data_volume_is_red_and_freed_every_committed_run_is_still_there(machine):
    inst = machine
    assert "1 GiB" in instance.runtime_text(inst)
    size = int(instance_ssh(inst, ["df", "-B1", "--output=size", VOLUME]).split()[-1])
    assert 0.9 * 2**30 < size <= 2**30, "the data volume is not the 1 GiB file"
    instance_ssh(inst, ["sudo", "-n", "airflow", "dags", "unpause", "lineage_demo"])
    for n in (1, 2):
        instance_ssh(inst, ["sudo", "-n", "airflow", "dags", "trigger", "lineage_demo", "-r", f"before-{n}"])
    assert eventually(lambda: {"before-1", "before-2"} <= finished_runs(inst), 300, every=2)
    committed = finished_runs(inst)
    mlflow_runs = counts(inst)["mlflow"]["runs"]

    # To the last block: root has no reserve on it (-m 0), so nothing on the volume can write.
    instance.remote(inst, f"sudo -n dd if=/dev/zero of={VOLUME}/filler bs=1M status=none", timeout=300)
    used = instance_ssh(inst, ["df", "--output=pcent", VOLUME]).split()[-1]
    assert used == "100%", used
    assert eventually(lambda: (live(inst).get("disk") or {}).get("level") == "red", 120, every=2), live(inst)
    report = live(inst)["disk"]
    assert report["volume"] and report["path"] == VOLUME and report["free_gb"] < 0.01, report
    out = subprocess.run([CLI, "status", "--name", NAME, "--provider", "local", "--json"], capture_output=True,
                         text=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)["instances"]} if out.stdout.startswith("{") else {}
    disk = next((s for s in rows.get(NAME, {}).get("services", []) if s["name"] == "disk"), {})
    assert out.returncode != 0 and disk.get("level") == "red" and disk["reason"].startswith("data volume: 100%"), \
        out.stdout + out.stderr
    # Work goes on asking for space meanwhile: a trigger is refused or waits, nothing committed is lost.
    instance.remote(inst, "sudo -n airflow dags trigger lineage_demo -r while-full", timeout=120)

    instance_ssh(inst, ["sudo", "-n", "rm", f"{VOLUME}/filler"])
    assert eventually(lambda: live(inst).get("healthy") and live(inst)["disk"]["level"] == "green", 300,
                      every=2), live(inst).get("problems")
    assert committed <= finished_runs(inst), "a DAG run committed before the disk filled is gone"
    assert counts(inst)["mlflow"]["runs"] >= mlflow_runs
    instance_ssh(inst, ["sudo", "-n", "airflow", "dags", "trigger", "lineage_demo", "-r", "after"])
    assert eventually(lambda: "after" in finished_runs(inst), 300, every=2), "no DAG run finishes after freeing"
    assert sql(inst, "SELECT state FROM dag_run WHERE run_id = 'after'") == "success"
