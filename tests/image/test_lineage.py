"""Airflow -> MLflow lineage on a real local instance: every task recorded, failures and skips told
apart, nothing lost or doubled across an MLflow outage, and no task hurt by it."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support import airflow_api, eventually, run_ok

pytestmark = pytest.mark.image
DAG = "lineage_demo"
TASKS = {"extract", "enrich", "load", "choose_report", "daily_report", "monthly_report"}
MLFLOW = "http://127.0.0.1:5000"


def curl(host, method: str, url: str, body=None) -> dict:
    """MLflow's REST API on the machine (Airflow's: support.airflow_api, authenticated on the machine)."""
    cmd = f"curl -s -X {method} -H 'Content-Type: application/json' {shlex.quote(url)}"
    if body is not None:
        cmd += f" -d {shlex.quote(json.dumps(body))}"
    out = run_ok(host, cmd)
    return json.loads(out) if out.strip() else {}


@pytest.fixture(scope="module")
def airflow(host):
    assert eventually(lambda: airflow_api(host, "GET", f"dags/{DAG}").get("dag_id"), 180), \
        "lineage_demo was never parsed"
    airflow_api(host, "PATCH", f"dags/{DAG}?update_mask=is_paused", {"is_paused": False})

    def run(run_id: str, conf=None, dag: str = DAG) -> tuple[str, dict]:
        if dag != DAG:
            assert eventually(lambda: airflow_api(host, "GET", f"dags/{dag}").get("dag_id"), 180), \
                f"{dag} was never parsed"
            airflow_api(host, "PATCH", f"dags/{dag}?update_mask=is_paused", {"is_paused": False})
        airflow_api(host, "POST", f"dags/{dag}/dagRuns", {"dag_run_id": run_id, "conf": conf or {}})
        def finished():
            got = airflow_api(host, "GET", f"dags/{dag}/dagRuns/{run_id}").get("state")
            return got if got in ("success", "failed") else None

        state = eventually(finished, 300)
        assert state, f"DAG run {run_id} did not finish"
        tis = airflow_api(host, "GET", f"dags/{dag}/dagRuns/{run_id}/taskInstances")
        return state, {t["task_id"]: t["state"] for t in tis["task_instances"]}
    return run


def lineage_runs(host, run_id: str) -> dict:
    exp = curl(host, "GET", f"{MLFLOW}/api/2.0/mlflow/experiments/get-by-name?experiment_name=airflow/{DAG}")
    if "experiment" not in exp:
        return {}
    found = curl(host, "POST", f"{MLFLOW}/api/2.0/mlflow/runs/search", {
        "experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 100,
        "filter": f"tags.`airflow.run_id` = '{run_id}'"})
    runs = {}
    for r in found.get("runs", []):
        tags = {t["key"]: t["value"] for t in r["data"].get("tags", [])}
        assert tags["airflow.task_id"] not in runs, f"two MLflow runs for {tags['airflow.task_id']}"
        runs[tags["airflow.task_id"]] = {"status": r["info"]["status"], "tags": tags, "run": r,
                                         "params": {p["key"]: p["value"] for p in r["data"].get("params", [])}}
    return runs


def all_recorded(host, run_id: str) -> dict:
    """Every task's run, once the outcome events (delivered by the replay timer) are in."""
    return eventually(lambda: (lambda r: r if set(r) == TASKS and all(
        x["tags"].get("playground.lineage.end") or x["tags"].get("playground.lineage.outcome") for x in r.values())
        else None)(lineage_runs(host, run_id)), 120) or lineage_runs(host, run_id)


def test_every_task_is_recorded_with_tags_params_tables_and_artifacts(host, airflow):
    state, tis = airflow("lineage-ok")
    assert state == "success" and tis["monthly_report"] == "skipped"
    runs = all_recorded(host, "lineage-ok")
    assert set(runs) == TASKS
    assert {t: r["status"] for t, r in runs.items()} == {
        "extract": "FINISHED", "enrich": "FINISHED", "load": "FINISHED", "choose_report": "FINISHED",
        "daily_report": "FINISHED", "monthly_report": "KILLED"}
    assert runs["monthly_report"]["tags"]["airflow.state"] == "skipped"
    enrich = runs["enrich"]
    assert enrich["params"]["source_tables"] == "public.claims"
    assert enrich["params"]["destination_tables"] == "public.claims_enriched"
    assert enrich["params"]["operator"] == "PythonOperator" and enrich["params"]["try_number"] == "1"
    tags = enrich["tags"]
    assert (tags["mlflow.user"], tags["mlflow.source.type"]) == ("airflow", "JOB")
    assert tags["mlflow.source.name"].endswith("lineage_demo.py")
    assert tags["pipeline.tag.insurance"] == "true" and tags["pipeline.tag.lineage"] == "true"
    inputs = {(d["dataset"]["name"], {t["key"]: t["value"] for t in d.get("tags", [])}["mlflow.data.context"])
              for d in enrich["run"].get("inputs", {}).get("dataset_inputs", [])}
    assert inputs == {("public.claims", "source"), ("public.claims_enriched", "destination")}
    run_id = enrich["run"]["info"]["run_id"]
    listed = curl(host, "GET", f"{MLFLOW}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=airflow")
    assert {f["path"] for f in listed.get("files", [])} >= {"airflow/lineage_demo.py",
                                                           "airflow/rendered_template_fields.json"}
    start = int(enrich["run"]["info"]["start_time"])
    end = int(enrich["run"]["info"]["end_time"])
    assert 0 < end - start < 600_000, "start and end come from the task instance"


def test_a_failed_task_is_failed_and_what_never_ran_is_told_apart(host, airflow):
    state, tis = airflow("lineage-fail", {"fail": True})
    assert state == "failed" and tis["load"] == "failed" and tis["choose_report"] == "upstream_failed"
    runs = all_recorded(host, "lineage-fail")
    assert runs["load"]["status"] == "FAILED" and runs["load"]["tags"]["airflow.state"] == "failed"
    assert runs["choose_report"]["status"] == "KILLED"
    assert runs["choose_report"]["tags"]["airflow.state"] == "upstream_failed"
    assert runs["extract"]["status"] == "FINISHED"


def test_an_mlflow_outage_loses_nothing_doubles_nothing_and_hurts_no_task(host, airflow):
    run_ok(host, "systemctl stop mlflow-server")
    try:
        state, tis = airflow("lineage-outage")
        assert state == "success", tis
        assert int(run_ok(host, "ls /var/lib/airflow/lineage-spool | grep -c '.json$' || true").strip() or 0) >= 10
        # What `playground status` shows of it: the events waiting, and since when (exit 1: MLflow is down).
        out = host.run("playground-agent status --json")
        assert out.rc == 1, out.stderr
        waiting = json.loads(out.stdout)["lineage"]
        assert waiting["waiting"] >= 10 and waiting["oldest_s"] > 0, waiting
        assert waiting["state"].startswith(f"{waiting['waiting']} waiting for MLflow, oldest "), waiting
    finally:
        run_ok(host, "systemctl start mlflow-server")
    assert eventually(lambda: host.run("curl -sf http://127.0.0.1:5000/health").rc == 0, 90, 1), "MLflow not back"
    runs = all_recorded(host, "lineage-outage")
    assert set(runs) == TASKS, "every event arrives once MLflow is back"
    assert runs["load"]["status"] == "FINISHED" and runs["load"]["params"]["source_tables"] == "public.claims_enriched"
    assert run_ok(host, "ls /var/lib/airflow/lineage-spool | grep -c '.json$' || true").strip() == "0"
    assert not run_ok(host, "ls /var/lib/airflow/lineage-spool | grep '.failed$' || true").strip()
    lineage = json.loads(host.run("playground-agent status --json").stdout)["lineage"]
    assert lineage["ok"] and lineage["state"] == "all delivered", lineage


ETL_TASKS = {"generate_policies", "generate_claims", "enrich_claims", "summarise_regions", "train_severity_model"}


def playground(*args: str) -> subprocess.CompletedProcess:
    cli = str(Path(sys.executable).with_name("playground"))
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=120)


def test_the_example_pipeline_registers_a_model_that_lineage_walks_back_to_its_tables(host, airflow,
                                                                                       local_instance):
    state, tis = airflow("etl-1", dag="insurance_etl")
    assert state == "success", tis
    # The tables are real, in the instance's own PostgreSQL.
    counts = run_ok(host, "sudo -u airflow psql -d warehouse -Atc 'SELECT (SELECT count(*) FROM policies), "
                          "(SELECT count(*) FROM claims_enriched), (SELECT count(*) FROM region_summary)'")
    assert counts.strip() == "500|1200|4"

    # Lineage through the CLI, as a user asks it: from the model back to the tables ...
    name = local_instance.name

    def model_lineage():  # the tasks' end records arrive once the lineage service delivers the burst
        proc = playground("lineage", "--name", name, "--model", "claim_severity", "--json")
        assert proc.returncode == 0, proc.stderr
        found = json.loads(proc.stdout)
        tasks = (found.get("pipeline_run") or {}).get("tasks", [])
        return found if len(tasks) == len(ETL_TASKS) and all(t["status"] != "RUNNING" for t in tasks) else None

    found = eventually(model_lineage, 90) or json.loads(playground(
        "lineage", "--name", name, "--model", "claim_severity", "--json").stdout)
    assert found["model"]["name"] == "claim_severity" and found["model"]["built_by"]["task_id"] == \
        "train_severity_model"
    run = found["pipeline_run"]
    assert (run["dag_id"], run["run_id"]) == ("insurance_etl", "etl-1")
    assert {t["task_id"] for t in run["tasks"]} == ETL_TASKS
    assert all(t["status"] == "FINISHED" for t in run["tasks"]), run["tasks"]
    assert set(run["tables"]["destinations"]) == {"public.policies", "public.claims", "public.claims_enriched",
                                                  "public.region_summary"}
    train = next(t for t in run["tasks"] if t["task_id"] == "train_severity_model")
    assert [s["name"] for s in train["sources"]] == ["public.claims_enriched"]
    assert train["sources"][0]["rowCount"] == 1200, "table metadata from the PostgreSQL collector"
    # Behind the model: what train read, and upstream of it; not summarise_regions' sibling table.
    assert found["upstream"]["tables"] == ["public.claims", "public.claims_enriched", "public.policies"]
    assert {t["task_id"] for t in found["upstream"]["tasks"]} == ETL_TASKS - {"summarise_regions"}

    # ... and from the pipeline forward to the model, drawn as a tree.
    proc = playground("lineage", "--name", name, "--pipeline", "insurance_etl")
    assert proc.returncode == 0, proc.stderr
    assert "etl-1" in proc.stdout and "claim_severity v" in proc.stdout and "public.claims_enriched" in proc.stdout
    proc = playground("lineage", "--name", name, "--pipeline", "insurance_etl", "--json")
    runs = json.loads(proc.stdout)["runs"]
    assert [m["name"] for r in runs if r["run_id"] == "etl-1" for m in r["models"]] == ["claim_severity"]


def test_lineage_bad_input_is_one_line(local_instance):
    name = local_instance.name
    for args, says in [(["--model", "no_such_model"], "no registered model named 'no_such_model'"),
                       (["--model", "claim_severity/x"], "expected NAME or NAME/VERSION"),
                       (["--pipeline", "never_ran"], "nothing recorded for DAG 'never_ran'"),
                       ([], "exactly one of --model")]:
        proc = playground("lineage", "--name", name, *args)
        assert proc.returncode == 1 and says in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
