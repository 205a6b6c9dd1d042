"""`playground lineage`: a registered model back to the pipeline runs and tables that made its data, and a
pipeline forward to the models built from its outputs.

Everything is read from the machine's MLflow server (through the SSH tunnel), where the lineage plugin
records one run per Airflow task instance in the experiment `airflow/DAG_ID`, tagged `airflow.dag_id`,
`airflow.task_id`, `airflow.run_id`, with the task's tables as dataset inputs (context source or
destination). A model version points at the run that built it; that run's Airflow tags name the DAG run.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from rich.markup import escape

from .errors import PlaygroundError

EXPERIMENT = "airflow/{dag_id}"  # the plugin's default (PLAYGROUND_LINEAGE_EXPERIMENT on the machine)
PAGE = 1000


class Mlflow:
    """MLflow's REST API, read only."""

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: Optional[dict] = None, **query: Any) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                code = json.loads(detail).get("error_code", "")
            except ValueError:
                code = ""
            if exc.code == 404 or code == "RESOURCE_DOES_NOT_EXIST":
                raise LookupError(detail) from exc
            raise PlaygroundError(f"MLflow answered {exc.code} to {path}: {detail[:200]}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PlaygroundError(f"MLflow at {self.base} did not answer: {exc}") from exc

    def search_runs(self, experiment_id: str, filter_: str = "") -> list[dict]:
        runs, token = [], None
        while True:
            body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": PAGE, "filter": filter_}
            if token:
                body["page_token"] = token
            got = self.call("POST", "runs/search", body)
            runs += got.get("runs", [])
            token = got.get("next_page_token")
            if not token:
                return runs

    def experiment_id(self, name: str) -> Optional[str]:
        try:
            return self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
        except LookupError:
            return None

    def model_versions(self, filter_: str = "") -> list[dict]:
        versions, token = [], None
        while True:
            query: dict[str, Any] = {"max_results": 200}
            if filter_:
                query["filter"] = filter_
            if token:
                query["page_token"] = token
            got = self.call("GET", "model-versions/search", **query)
            versions += got.get("model_versions", [])
            token = got.get("next_page_token")
            if not token:
                return versions


def _tags(items: list[dict]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or []}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def task_record(run: dict) -> dict:
    """One task instance as the plugin recorded it: state, times and tables."""
    tags = _tags(run.get("data", {}).get("tags", []))
    params = _tags(run.get("data", {}).get("params", []))
    tables: dict[str, list[dict]] = {"source": [], "destination": []}
    for entry in run.get("inputs", {}).get("dataset_inputs", []):
        context = _tags(entry.get("tags", [])).get("mlflow.data.context", "source")
        ds = entry.get("dataset", {})
        try:
            profile = json.loads(ds.get("profile") or "{}")
        except ValueError:
            profile = {}
        table = {"name": ds.get("name", ""), "source_type": ds.get("source_type", "")}
        table.update(profile.get("datasetStatistics", {}))
        table.update(profile.get("lifecycle", {}))
        tables.setdefault(context, []).append(table)
    return {"task_id": tags.get("airflow.task_id", ""), "try_number": tags.get("airflow.try_number", ""),
            "state": tags.get("airflow.state", "running"), "status": run["info"].get("status", ""),
            "operator": params.get("operator", ""), "mlflow_run_id": run["info"]["run_id"],
            "start_ms": run["info"].get("start_time"), "end_ms": run["info"].get("end_time"),
            "sources": tables["source"], "destinations": tables["destination"]}


def pipeline_run(dag_id: str, run_id: str, runs: list[dict]) -> dict:
    """A DAG run from its tasks' records; a retried task keeps its last try."""
    latest: dict[str, dict] = {}
    for rec in sorted((task_record(r) for r in runs), key=lambda t: int(t["try_number"] or 0)):
        latest[rec["task_id"]] = rec
    tasks = sorted(latest.values(), key=lambda t: (t["start_ms"] or 0, t["task_id"]))
    tables = {"sources": sorted({t["name"] for x in tasks for t in x["sources"]}),
              "destinations": sorted({t["name"] for x in tasks for t in x["destinations"]})}
    return {"dag_id": dag_id, "run_id": run_id, "tasks": tasks, "tables": tables,
            "failed": sorted(t["task_id"] for t in tasks if t["status"] == "FAILED")}


def _version_record(v: dict) -> dict:
    return {"name": v["name"], "version": str(v["version"]), "run_id": v.get("run_id", ""),
            "source": v.get("source", ""), "created_ms": v.get("creation_timestamp"),
            "status": v.get("status", "")}


def model_lineage(api: Mlflow, name: str, version: Optional[str] = None) -> dict:
    """The model version (newest if none given), the DAG run behind it, its tasks and tables."""
    found = api.model_versions(f"name='{_quote(name)}'")
    if not found:
        raise PlaygroundError(f"--model: no registered model named {name!r} on this playground's MLflow")
    if version is None:
        chosen = max(found, key=lambda v: int(v["version"]))
    else:
        chosen = next((v for v in found if str(v["version"]) == version), None)
        if chosen is None:
            have = ", ".join(sorted((str(v["version"]) for v in found), key=int))
            raise PlaygroundError(f"--model: {name} has no version {version} (versions: {have})")
    model = _version_record(chosen)
    out: dict[str, Any] = {"model": model, "pipeline_run": None}
    if not model["run_id"]:
        out["note"] = "this model version names no run: it was not built by a pipeline task"
        return out
    try:
        run = api.call("GET", "runs/get", run_id=model["run_id"])["run"]
    except LookupError:
        out["note"] = f"the run {model['run_id']} behind this model version is gone"
        return out
    tags = _tags(run.get("data", {}).get("tags", []))
    dag_id, dag_run = tags.get("airflow.dag_id"), tags.get("airflow.run_id")
    model["built_by"] = {"experiment_id": run["info"]["experiment_id"], "task_id": tags.get("airflow.task_id")}
    if not dag_id or not dag_run:
        out["note"] = "the run behind this model version has no Airflow tags: it was not built by a pipeline task"
        return out
    runs = api.search_runs(run["info"]["experiment_id"], f"tags.`airflow.run_id` = '{_quote(dag_run)}'")
    out["pipeline_run"] = pipeline_run(dag_id, dag_run, runs)
    return out


def pipeline_lineage(api: Mlflow, dag_id: str, experiment: str = EXPERIMENT, last: int = 10) -> dict:
    """The newest DAG runs of a pipeline, their tasks and tables, and the model versions built from them."""
    name = experiment.format(dag_id=dag_id)
    exp_id = api.experiment_id(name)
    if exp_id is None:
        raise PlaygroundError(f"--pipeline: nothing recorded for DAG {dag_id!r} (no MLflow experiment {name!r}): "
                              "has it run on this playground?")
    by_run: dict[str, list[dict]] = {}
    for r in api.search_runs(exp_id, f"tags.`airflow.dag_id` = '{_quote(dag_id)}'"):
        by_run.setdefault(_tags(r.get("data", {}).get("tags", [])).get("airflow.run_id", "?"), []).append(r)
    runs = sorted((pipeline_run(dag_id, k, v) for k, v in by_run.items()),
                  key=lambda p: min((t["start_ms"] or 0) for t in p["tasks"]), reverse=True)[:last]
    mlflow_ids = {t["mlflow_run_id"]: p for p in runs for t in p["tasks"]}
    for p in runs:
        p["models"] = []
    for v in api.model_versions():
        if v.get("run_id") in mlflow_ids:
            mlflow_ids[v["run_id"]]["models"].append(_version_record(v))
    return {"dag_id": dag_id, "experiment": name, "runs": runs}


# ---- rendering -----------------------------------------------------------------------------------------------

STYLE = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}


def _table_line(t: dict) -> str:
    facts = []
    if "rowCount" in t:
        facts.append(f"{t['rowCount']} rows")
    if "size" in t:
        facts.append(f"{t['size'] / 1024:.0f} KiB")
    return escape(t["name"]) + (f" ({', '.join(facts)})" if facts else "")


def _add_run(node, p: dict) -> None:
    # Names come from DAGs and MLflow: escaped, so a '[' in one is text, not rich markup.
    state = "failed: " + escape(", ".join(p["failed"])) if p["failed"] else "ok"
    branch = node.add(f"[bold]DAG run[/bold] {escape(p['dag_id'])} / {escape(p['run_id'])}  "
                      f"[dim]{len(p['tasks'])} tasks, {state}[/dim]")
    for t in p["tasks"]:
        style = STYLE.get(t["status"], "white")
        leaf = branch.add(f"[{style}]{escape(t['task_id'])}[/{style}]  {t['state']}  "
                          f"[dim]{escape(t['operator'])}[/dim]")
        for s in t["sources"]:
            leaf.add(f"[dim]reads[/dim]  {_table_line(s)}")
        for d in t["destinations"]:
            leaf.add(f"[dim]writes[/dim] {_table_line(d)}")
    for m in p.get("models", []):
        branch.add(f"[magenta]model[/magenta] {escape(m['name'])} v{m['version']}")


def render_model(tree_model: dict):
    from rich.tree import Tree

    m = tree_model["model"]
    built_by = f", built by task {escape(m['built_by']['task_id'] or '-')}" if m.get("built_by") else ""
    root = Tree(f"[magenta bold]model[/magenta bold] {escape(m['name'])} v{m['version']}  "
                f"[dim]run {m['run_id'] or '-'}{built_by}[/dim]")
    if tree_model.get("pipeline_run"):
        p = tree_model["pipeline_run"]
        _add_run(root, p)
        tables = root.add("[bold]tables behind it[/bold]")
        for name in sorted(set(p["tables"]["sources"]) | set(p["tables"]["destinations"])):
            tables.add(escape(name))
    if tree_model.get("note"):
        root.add(f"[yellow]{tree_model['note']}[/yellow]")
    return root


def render_pipeline(tree_model: dict):
    from rich.tree import Tree

    root = Tree(f"[bold]pipeline[/bold] {escape(tree_model['dag_id'])}  [dim]experiment "
                f"{escape(tree_model['experiment'])}, "
                f"{len(tree_model['runs'])} run(s) shown[/dim]")
    for p in tree_model["runs"]:
        _add_run(root, p)
    if not tree_model["runs"]:
        root.add("[yellow]no recorded runs[/yellow]")
    return root


def parse_model(spec: str) -> tuple[str, Optional[str]]:
    """NAME or NAME/VERSION."""
    name, sep, version = spec.rpartition("/")
    if not sep:
        name, version = spec, ""
    if not name or (sep and not version.isdigit()):
        raise PlaygroundError(f"--model: expected NAME or NAME/VERSION (VERSION a number), got {spec!r}")
    return name, version or None
