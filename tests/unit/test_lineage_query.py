"""`playground lineage` reading MLflow's answers: model specs, retried tasks, tables with their facts.
(End to end against a real MLflow on a local instance: tests/image/test_lineage.py.)"""
from __future__ import annotations

import json

import pytest
from playground import lineage
from playground.errors import PlaygroundError


def mlflow_run(task: str, try_number: int, status: str, state: str, start: int, tables=()) -> dict:
    """A run as MLflow's runs/search returns it, with the tags and inputs the lineage plugin writes."""
    tags = {"airflow.dag_id": "etl", "airflow.task_id": task, "airflow.run_id": "r1",
            "airflow.try_number": str(try_number), "airflow.state": state}
    return {"info": {"run_id": f"{task}-{try_number}", "status": status, "start_time": start, "end_time": start + 5},
            "data": {"tags": [{"key": k, "value": v} for k, v in tags.items()],
                     "params": [{"key": "operator", "value": "PythonOperator"}]},
            "inputs": {"dataset_inputs": [
                {"tags": [{"key": "mlflow.data.context", "value": ctx}],
                 "dataset": {"name": name, "source_type": "postgres", "profile": json.dumps(
                     {"datasetStatistics": {"rowCount": rows, "size": 8192}, "lifecycle": {}})}}
                for name, ctx, rows in tables]}}


@pytest.mark.parametrize("spec, want", [("m", ("m", None)), ("m/3", ("m", "3")), ("team/m/12", ("team/m", "12"))])
def test_model_specs(spec, want):
    assert lineage.parse_model(spec) == want


@pytest.mark.parametrize("spec", ["", "/3", "m/", "m/latest"])
def test_bad_model_specs_name_the_flag(spec):
    with pytest.raises(PlaygroundError, match="--model: expected NAME or NAME/VERSION"):
        lineage.parse_model(spec)


def test_a_retried_task_shows_its_last_try_and_the_run_its_tables():
    runs = [mlflow_run("load", 2, "FINISHED", "success", 300, [("public.clean", "source", 10)]),
            mlflow_run("load", 1, "FAILED", "up_for_retry", 200, [("public.clean", "source", 10)]),
            mlflow_run("extract", 1, "FINISHED", "success", 100, [("public.raw", "source", 50),
                                                                    ("public.clean", "destination", 10)])]
    got = lineage.pipeline_run("etl", "r1", runs)
    assert [(t["task_id"], t["try_number"], t["status"]) for t in got["tasks"]] == [
        ("extract", "1", "FINISHED"), ("load", "2", "FINISHED")]
    assert got["failed"] == []
    assert got["tables"] == {"sources": ["public.clean", "public.raw"], "destinations": ["public.clean"]}
    assert got["tasks"][0]["sources"][0] == {"name": "public.raw", "source_type": "postgres", "rowCount": 50,
                                             "size": 8192}


def test_the_tree_names_every_task_and_table():
    from rich.console import Console

    runs = [mlflow_run("extract", 1, "FAILED", "failed", 100, [("public.raw", "source", 50),
                                                               ("s3://lake/[raw]/claims.csv", "source", 3)])]
    tree = lineage.render_pipeline({"dag_id": "etl", "experiment": "airflow/etl", "runs": [
        dict(lineage.pipeline_run("etl", "r1", runs), models=[{"name": "m", "version": "2"}])]})
    console = Console(width=100, record=True)
    console.print(tree)
    text = console.export_text()
    assert "failed: extract" in text and "public.raw (50 rows, 8 KiB)" in text and "model m v2" in text
    assert "s3://lake/[raw]/claims.csv (3 rows, 8 KiB)" in text, "names are text, not rich markup"
