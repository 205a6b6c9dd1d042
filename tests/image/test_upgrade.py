"""`playground upgrade` on a real instance (issue 16): a playground with DAG runs, MLflow runs with artifacts,
a registered model version, warehouse rows, an encrypted connection and a deployed DAG file moves to a newer
image built for the purpose, and every one of them is there again on the new image, with the same admin
password and the connection still decrypting; then what is refused (a downgrade, an image that is not one)
says one line and leaves the machine as it was."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from playground.image import local_build
from playground.local import instance
from support import airflow_api, eventually, instance_ssh, remove_instance
from test_backup import PASSWORD, SEED, counts

pytestmark = pytest.mark.image
CLI = str(Path(sys.executable).with_name("playground"))
NAME = "pgtest-upgrade"
TEAM_DAG = "from airflow import DAG  # the team's own file: it must outlive the image\n"


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args, "--provider", "local"], capture_output=True, text=True, timeout=timeout)


def sql(inst, database: str, query: str) -> str:
    import shlex

    return instance_ssh(inst, ["sudo", "-n", "setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups",
                               "psql", "-qtAX", "-d", database, "-c", shlex.quote(query)]).strip()


@pytest.fixture(scope="module")
def before(image, image_profile):
    """A machine on the session's image with something of everything, and what it held."""
    if image_profile != "local":
        pytest.skip("the upgrade check builds a newer local image; the seed-local stack is checked by restore")
    remove_instance(NAME)
    inst, _ = instance.launch(NAME, "playground-test", {}, image, image_profile, report=lambda s: None, timeout=300)
    try:
        run_id = instance_ssh(inst, ["bash", "-s"], stdin=SEED, timeout=300).strip().splitlines()[-1]
        instance_ssh(inst, ["sudo", "-n", "tee", "/var/lib/airflow/dags/team_witness.py"], stdin=TEAM_DAG)
        instance_ssh(inst, ["sudo", "-n", "airflow", "dags", "unpause", "lineage_demo"])
        for n in (1, 2):
            instance_ssh(inst, ["sudo", "-n", "airflow", "dags", "trigger", "lineage_demo", "-r", f"before-{n}"])
        assert eventually(lambda: sql(inst, "airflow", "SELECT count(*) FROM dag_run WHERE state IN "
                                                     "('success', 'failed')") == "2", 300, every=2)
        # lineage records a finished task's run in MLflow after it, from a spool: the counts are final once the
        # spool is empty (twice, a second apart: the last task's record may be written just after its run ends).
        spooled = ["sudo", "-n", "find", "/var/lib/airflow/lineage-spool", "-name", "*.json"]
        empty = []
        assert eventually(lambda: empty.append(instance_ssh(inst, spooled).strip() == "") or empty[-2:] == [True] * 2,
                          240), "the lineage spool was never delivered"
        yield {"inst": inst, "run_id": run_id, "counts": counts(inst),
               "password": instance_ssh(inst, ["sudo", "-n", "playground-agent", "admin-password"]).strip(),
               "task_logs": sorted(instance_ssh(inst, ["sudo", "-n", "find", "/var/log/airflow", "-name", "*.log",
                                                       "-path", "*run_id=before-1*"]).split())}
    finally:
        remove_instance(NAME)


@pytest.fixture(scope="module")
def newer(before, image):
    """A newer build of the same tree, as `image build` would make it now: the image's files under a later
    name and build time (its manifest and the one inside the rootfs), removed at the end. A rebuild of an
    unchanged tree differs from its image in just those, and took 5 minutes here; the build itself is
    checked by bench/run --quick's warm build and by scripts/images whenever the tree changes. No disk.raw:
    this upgrade is of an nspawn instance."""
    import os
    import time

    stamp = time.gmtime(time.time() + 1)  # later than the image's, whenever it was built
    name = f"playground-local-{time.strftime('%Y%m%d-%H%M%S', stamp)}"
    building = image.parent / (name + ".building")
    building.mkdir()
    subprocess.run(["cp", "-a", "--reflink=auto", str(image / "rootfs"), str(building / "rootfs")], check=True,
                   timeout=600)
    for manifest in (building / "manifest.json", building / "rootfs" / "etc/playground/image-manifest.json"):
        doc = json.loads((image / manifest.relative_to(building)).read_text())
        doc["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)
        if "name" in doc:
            doc["name"] = name
        manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    built = image.parent / name
    os.replace(building, built)
    assert local_build.newest_image("local") == built
    yield built
    remove_instance(NAME)
    subprocess.run(["rm", "-rf", str(built)], check=False)


@pytest.fixture(scope="module")
def upgraded(before, newer):
    out = cli("upgrade", "--name", NAME, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_upgrade_moves_to_the_newest_image_and_is_healthy_there(upgraded, newer):
    assert upgraded["upgraded"] and upgraded["healthy"], upgraded
    assert upgraded["change"].endswith(f"-> {newer.name} (same versions, a newer build)"), upgraded
    inst = instance.load(NAME)
    assert Path(inst.image) == newer
    running = json.loads(instance_ssh(inst, ["sudo", "-n", "cat", "/etc/playground/image-manifest.json"]))
    assert running["built_at"] == json.loads((newer / "manifest.json").read_text())["built_at"], \
        "the machine does not run the new image"
    assert not (inst.dir / "upper.previous").exists(), "the previous boot layer outlived a healthy upgrade"
    print(f"\nupgrade: stop to healthy on the new image in {upgraded['seconds']} s")


def test_every_run_model_artifact_row_and_file_is_there_after_the_upgrade(before, upgraded):
    inst = instance.load(NAME)
    assert counts(inst) == before["counts"]
    conn = json.loads(instance_ssh(inst, ["sudo", "-n", "airflow", "connections", "get", "demo_conn", "-o", "json"]))
    assert conn[0]["password"] == PASSWORD, "the connection no longer decrypts: the Fernet key was lost"
    run = json.loads(instance_ssh(inst, ["curl", "-sf", "http://127.0.0.1:5000/api/2.0/mlflow/runs/get?run_id="
                                         + before["run_id"]]))
    uri = run["run"]["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    assert instance_ssh(inst, ["curl", "-sf", "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/"
                               + uri + "/notes/hello.txt"]) == "hello 0"
    assert sql(inst, "warehouse", "SELECT count(*), sum(id) FROM sales") == "250|31375"
    assert instance_ssh(inst, ["cat", "/var/lib/airflow/dags/team_witness.py"]) == TEAM_DAG
    assert sorted(instance_ssh(inst, ["sudo", "-n", "find", "/var/log/airflow", "-name", "*.log", "-path",
                                      "*run_id=before-1*"]).split()) == before["task_logs"] != []
    password = instance_ssh(inst, ["sudo", "-n", "playground-agent", "admin-password"]).strip()
    assert password == before["password"], "the admin password changed with the image"
    assert airflow_api(inst, "GET", "dags/lineage_demo/dagRuns")["total_entries"] == 2


def test_a_downgrade_and_a_non_image_are_refused_in_one_line_and_change_nothing(before, upgraded, image, tmp_path):
    inst = instance.load(NAME)
    held = counts(inst)
    not_an_image = tmp_path / "not-an-image"
    not_an_image.mkdir()
    for flag, said in ((str(image), "a downgrade is refused"), (str(not_an_image), "is not a complete local image"),
                       (image.name, "a downgrade is refused")):
        out = cli("upgrade", "--name", NAME, "--image", flag)
        errors = [line for line in out.stdout.splitlines() + out.stderr.splitlines() if line.startswith("error:")]
        assert out.returncode == 1 and len(errors) == 1 and said in errors[0], (flag, out.stdout, out.stderr)
    assert instance.is_running(instance.load(NAME)) and instance.load(NAME).image == inst.image
    assert counts(inst) == held
    out = cli("upgrade", "--name", NAME)
    assert out.returncode == 0 and "already runs" in out.stdout + out.stderr, out.stdout + out.stderr
