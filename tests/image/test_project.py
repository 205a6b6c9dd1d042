"""A team's own project on a real local instance, through `playground deploy` (the README's walk-through):
examples/project's DAG, its helper package, its connection, variable and pool from airflow_settings.yaml,
and a deferrable sensor that the triggerer ends; then a broken DAG file reported in one line, the rest still
running; then the folder put right again. An instance of its own: deploy replaces the DAG folder, and the
shared instance's checks need the image's example DAGs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from playground.local import instance
from playground.main import app
from support import airflow_api, eventually, instance_ssh, remove_instance
from test_lineage import curl
from typer.testing import CliRunner

pytestmark = pytest.mark.image
NAME = "pgtest-project"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "project"


def deploy(folder: Path):
    res = CliRunner().invoke(app, ["deploy", str(folder), "--name", NAME, "--json"], catch_exceptions=False)
    out = res.stdout
    return res.exit_code, (json.loads(out[out.index("{"):]) if "{" in out else {}), res.output


@pytest.fixture(scope="module")
def project_instance(image, image_profile, manifest):
    from playground_agent.versions import Airflow

    if not Airflow(manifest["components"]["airflow"]).has_triggerer:
        pytest.skip(f"Airflow {manifest['components']['airflow']} has no triggerer (2.2+): the example's "
                    "deferrable sensor cannot run on it")
    remove_instance(NAME)
    inst, _ = instance.launch(NAME, "playground-test", {}, image, image_profile, report=lambda s: None,
                              timeout=300)
    yield inst
    instance.destroy(NAME)


@pytest.fixture(scope="module")
def host(project_instance):
    import testinfra

    cfg = project_instance.dir / "ssh_config"
    cfg.write_text(f"Host *\n  IdentityFile {instance.ssh_key()}\n  StrictHostKeyChecking no\n"
                   f"  UserKnownHostsFile {project_instance.dir / 'known_hosts'}\n  LogLevel ERROR\n  BatchMode yes\n")
    return testinfra.get_host(f"ssh://{instance.SSH_USER}@{project_instance.address}", ssh_config=str(cfg),
                              sudo=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    copy = tmp_path_factory.mktemp("project") / "project"
    shutil.copytree(EXAMPLE, copy)
    return copy


def trigger(host, dag: str, run_id: str) -> dict:
    assert eventually(lambda: airflow_api(host, "GET", f"dags/{dag}").get("dag_id"), 120), \
        f"{dag} was never parsed by the scheduler"
    airflow_api(host, "PATCH", f"dags/{dag}?update_mask=is_paused", {"is_paused": False})
    airflow_api(host, "POST", f"dags/{dag}/dagRuns", {"dag_run_id": run_id})
    states: list[str] = []

    def finished():
        # The run's state first, then its tasks': read the other way round, a run that ended between the two
        # requests showed its last task still running.
        run = airflow_api(host, "GET", f"dags/{dag}/dagRuns/{run_id}").get("state")
        got = airflow_api(host, "GET", f"dags/{dag}/dagRuns/{run_id}/taskInstances")
        now = {t["task_id"]: t["state"] for t in got.get("task_instances", [])}
        states.extend(s for s in now.values() if s and s not in states)
        return now if run in ("success", "failed") else None

    tis = eventually(finished, 240, every=2)
    assert tis, f"{dag} run {run_id} did not finish (states seen: {states})"
    return {"tasks": tis, "seen": states}


def test_deploy_applies_the_project_and_its_deferrable_dag_succeeds(host, project_instance, folder):
    code, done, output = deploy(folder)
    assert code == 0, output
    assert done["added"] == [".airflowignore", "orders/__init__.py", "orders/summary.py", "orders_pipeline.py"]
    assert "mlflow_connection_test.py" in done["removed"]  # the image's examples: the folder is the project's
    assert done["dags"] == ["orders_pipeline"] and done["import_errors"] == {}
    assert done["settings"]["applied"] == {"connections": ["shop_api"], "variables": ["region"],
                                           "pools": ["shop_api"]}
    assert "change-me" not in output
    assert done["packages"]["requirements"] == ["humanize"] and done["packages"]["installed"]

    ran = trigger(host, "orders_pipeline", "deploy-1")
    assert ran["tasks"] == {"wait_for_orders": "success", "read_settings": "success"}
    assert "deferred" in ran["seen"], f"the sensor never deferred: {ran['seen']}"
    xcom = airflow_api(host, "GET", "dags/orders_pipeline/dagRuns/deploy-1/taskInstances/read_settings/"
                                    "xcomEntries/return_value")
    got = json.loads(xcom["value"].replace("'", '"').replace("True", "true"))
    assert got == {"host": "shop.example.internal", "port": 8443, "has_password": True, "region": "europe-west2",
                   "orders": "1,234,567"}, "humanize (requirements.txt) imported by the task"
    pool = airflow_api(host, "GET", "pools/shop_api")
    assert pool["slots"] == 2

    # Each task is in MLflow, once.
    exp = curl(host, "GET", "http://127.0.0.1:5000/api/2.0/mlflow/experiments/get-by-name?"
                            "experiment_name=airflow/orders_pipeline")["experiment"]

    def recorded():
        found = curl(host, "POST", "http://127.0.0.1:5000/api/2.0/mlflow/runs/search", {
            "experiment_ids": [exp["experiment_id"]], "filter": "tags.`airflow.run_id` = 'deploy-1'"})
        tasks = sorted(t["value"] for r in found.get("runs", []) for t in r["data"]["tags"]
                       if t["key"] == "airflow.task_id")
        return tasks if len(tasks) >= 2 else None
    assert eventually(recorded, 120) == ["read_settings", "wait_for_orders"]


def test_the_settings_are_root_only_and_the_password_is_encrypted(host):
    kept = host.file("/var/lib/playground/project/settings.json")
    assert (kept.user, kept.mode) == ("root", 0o600)
    # A Fernet token (its version byte 0x80 gives "gAAAAA"), never the value; this query names no secret.
    row = host.run("sudo -u airflow psql -d airflow -qtAX -c \"SELECT is_encrypted, left(password, 6) "
                   "FROM connection WHERE conn_id = 'shop_api'\"").stdout.strip()
    assert row == "t|gAAAAA"
    assert "change-me" not in host.run("sudo journalctl --no-pager -o cat").stdout


def test_deploy_with_nothing_changed_changes_nothing(folder):
    code, done, output = deploy(folder)
    assert code == 0, output
    assert (done["added"], done["changed"], done["removed"], done["unchanged"]) == ([], [], [], 4)
    assert done["packages"] is None, "the same requirements.txt sends nothing"


def test_a_requirement_that_cannot_be_installed_is_one_line_and_changes_nothing(host, project_instance, folder):
    good = (folder / "requirements.txt").read_text()
    (folder / "requirements.txt").write_text(good + "no-such-package-for-playground-tests\n")
    (folder / "dags" / "new_dag.py").write_text("from airflow import DAG\n")
    res = CliRunner().invoke(app, ["deploy", str(folder), "--name", NAME], catch_exceptions=False)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1, res.output
    assert "requirements.txt: Could not find a version that satisfies the requirement " \
           "no-such-package-for-playground-tests" in errors[0]
    assert not host.file("/var/lib/airflow/dags/new_dag.py").exists, "a refused deploy wrote a DAG file"
    rep = json.loads(instance_ssh(project_instance, ["sudo", "playground-agent", "status", "--json"]))
    assert not rep["packages"]["ok"] and "no-such-package-for-playground-tests" in rep["packages"]["state"]
    assert rep["packages"]["requirements"] == ["humanize"], "the last good set is still the one in use"
    assert host.run("sudo -u airflow /opt/airflow/bin/python -c 'import humanize'").rc == 0

    (folder / "requirements.txt").write_text(good)
    (folder / "dags" / "new_dag.py").unlink()
    code, done, output = deploy(folder)
    assert code == 0 and done["packages"]["installed"] is False, output  # the kept layer, not a new install
    rep = json.loads(instance_ssh(project_instance, ["sudo", "playground-agent", "status", "--json"]))
    assert rep["packages"]["ok"], rep["packages"]


def test_a_broken_dag_file_is_one_line_and_the_rest_keeps_running(host, project_instance, folder):
    (folder / "dags" / "broken.py").write_text("from airflow import DAG\nimport not_a_module_anywhere\n")
    code, done, output = deploy(folder)
    assert code == 3, output
    assert done["import_errors"] == {"broken.py": "ModuleNotFoundError: No module named 'not_a_module_anywhere'"}
    assert done["dags"] == ["orders_pipeline"]

    def amber():
        rep = json.loads(instance_ssh(project_instance, ["sudo", "playground-agent", "status", "--json"]))
        return rep["dags"] if not rep["dags"]["ok"] else None
    dags = eventually(amber, 120)
    assert dags and [e["file"] for e in dags["errors"]] == ["broken.py"], dags
    from playground import status

    rows = {r["name"]: r for r in status.services_from_report(
        json.loads(instance_ssh(project_instance, ["sudo", "playground-agent", "status", "--json"])))}
    assert rows["dags"]["level"] == "amber" and "not_a_module_anywhere" in rows["dags"]["reason"]

    assert trigger(host, "orders_pipeline", "deploy-2")["tasks"]["read_settings"] == "success"

    (folder / "dags" / "broken.py").unlink()
    code, done, output = deploy(folder)
    assert code == 0 and done["removed"] == ["broken.py"] and done["import_errors"] == {}, output
