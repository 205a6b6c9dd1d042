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


def etl_run(dag: str, run_id: str, task: str, start: int, tables=(), model_run: str = "") -> dict:
    run = mlflow_run(task, 1, "FINISHED", "success", start, tables)
    tags = {t["key"]: t for t in run["data"]["tags"]}
    tags["airflow.dag_id"]["value"], tags["airflow.run_id"]["value"] = dag, run_id
    run["info"]["run_id"] = model_run or f"{dag}-{run_id}-{task}"
    run["info"]["experiment_id"] = dag
    return run


class FakeMlflow:
    """MLflow's REST answers the lineage walk asks for, over a fixed set of recorded runs."""

    def __init__(self, runs: list[dict], model_run: str) -> None:
        self.runs, self.model_run = runs, model_run

    def model_versions(self, filter_: str = "") -> list[dict]:
        return [{"name": "m", "version": "1", "run_id": self.model_run}]

    def call(self, method: str, path: str, body=None, **query):
        assert path == "runs/get"
        return {"run": next(r for r in self.runs if r["info"]["run_id"] == query["run_id"])}

    def experiments(self, name_like: str) -> list[dict]:
        assert name_like == "airflow/%"
        return [{"experiment_id": e} for e in sorted({r["info"]["experiment_id"] for r in self.runs})]

    def search_runs(self, experiment_id: str, filter_: str = "") -> list[dict]:
        found = [r for r in self.runs if r["info"]["experiment_id"] == experiment_id]
        if filter_:
            run_id = filter_.split("'")[1]
            found = [r for r in found if lineage._tags(r["data"]["tags"])["airflow.run_id"] == run_id]
        return found


def test_the_tables_behind_a_model_are_its_upstream_closure_across_pipelines_not_a_sibling_branch():
    """train reads features, written by build_features from clean; the sibling branch report -> summary also
    reads clean, but the model never read summary. clean was written by another pipeline (ingest), from
    landing; an older ingest run and a later one (after train started) are not the writer."""
    runs = [
        etl_run("ingest", "old", "load_clean", 10, [("landing.v0", "source", 1), ("public.clean", "destination", 1)]),
        etl_run("ingest", "i1", "load_clean", 50, [("landing.orders", "source", 9),
                                                   ("public.clean", "destination", 9)]),
        etl_run("etl", "r1", "build_features", 100, [("public.clean", "source", 9),
                                                     ("public.features", "destination", 9)]),
        etl_run("etl", "r1", "report", 110, [("public.clean", "source", 9), ("public.summary", "destination", 2)]),
        etl_run("etl", "r1", "train", 200, [("public.features", "source", 9)], model_run="mlflow-train"),
        etl_run("ingest", "later", "load_clean", 300, [("landing.new", "source", 1),
                                                       ("public.clean", "destination", 1)]),
    ]
    found = lineage.model_lineage(FakeMlflow(runs, "mlflow-train"), "m")
    up = found["upstream"]
    assert up["tables"] == ["landing.orders", "public.clean", "public.features"]
    assert up["tasks"] == [{"dag_id": "etl", "run_id": "r1", "task_id": "train"},
                           {"dag_id": "etl", "run_id": "r1", "task_id": "build_features"},
                           {"dag_id": "ingest", "run_id": "i1", "task_id": "load_clean"}]
    assert up["unrecorded_writers"] == ["landing.orders"]
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(lineage.render_model(found))
    behind = console.export_text().split("tables behind it")[1]
    assert "through ingest / i1" in behind and "public.summary" not in behind and "public.features" in behind
