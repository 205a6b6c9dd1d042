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

    def _pages(self, fetch, key: str) -> list[dict]:
        """Every item of a paged list: fetch(page_token or None) until MLflow gives no next_page_token."""
        items, token = [], None
        while True:
            got = fetch(token)
            items += got.get(key, [])
            token = got.get("next_page_token")
            if not token:
                return items

    def search_runs(self, experiment_id: str, filter_: str = "") -> list[dict]:
        body = {"experiment_ids": [experiment_id], "max_results": PAGE, "filter": filter_}
        return self._pages(lambda token: self.call("POST", "runs/search", dict(body, **_token(token))), "runs")

    def experiment_id(self, name: str) -> Optional[str]:
        try:
            return self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
        except LookupError:
            return None

    def experiments(self, name_like: str) -> list[dict]:
        body = {"max_results": PAGE, "filter": f"name LIKE '{_quote(name_like)}'"}
        return self._pages(lambda token: self.call("POST", "experiments/search", dict(body, **_token(token))),
                           "experiments")

    def model_versions(self, filter_: str = "") -> list[dict]:
        query = {"max_results": 200, **({"filter": filter_} if filter_ else {})}
        return self._pages(lambda token: self.call("GET", "model-versions/search", **query, **_token(token)),
                           "model_versions")


def _token(token: Optional[str]) -> dict:
    return {"page_token": token} if token else {}


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


def _writers(tasks: list[dict], dag_id: str, run_id: str) -> dict[str, list[dict]]:
    """table -> the task records that wrote it, each with where it ran."""
    found: dict[str, list[dict]] = {}
    for rec in tasks:
        for table in rec["destinations"]:
            found.setdefault(table["name"], []).append(dict(rec, dag_id=dag_id, run_id=run_id))
    return found


def _last_writer(candidates: list[dict], before_ms: Optional[int]) -> Optional[dict]:
    """Of the tasks that wrote a table, the one that last finished before the reader started."""
    done = [c for c in candidates if before_ms is None or (c["end_ms"] or c["start_ms"] or 0) <= before_ms]
    return max(done, key=lambda c: (c["end_ms"] or 0, c["start_ms"] or 0)) if done else None


def upstream(start: dict, run: dict, elsewhere=None) -> dict:
    """The upstream closure of one task through the table graph: a task that read table T depends on the task
    that last wrote T before it started, in its own DAG run, else (elsewhere(table, before_ms), another
    pipeline's run) wherever T was last written. A sibling branch's tables are not behind it.
    -> tasks (dag_id, run_id, task_id, in order found), tables read along the way, and tables whose writer
    was never recorded."""
    in_run = _writers(run["tasks"], run["dag_id"], run["run_id"])
    first = dict(start, dag_id=run["dag_id"], run_id=run["run_id"])
    todo, seen, tables, unknown, tasks = [first], set(), set(), set(), []
    while todo:
        rec = todo.pop(0)
        key = (rec["dag_id"], rec["run_id"], rec["task_id"])
        if key in seen:
            continue
        seen.add(key)
        tasks.append({"dag_id": rec["dag_id"], "run_id": rec["run_id"], "task_id": rec["task_id"]})
        for table in rec["sources"]:
            name = table["name"]
            tables.add(name)
            writer = None
            if rec["dag_id"] == run["dag_id"] and rec["run_id"] == run["run_id"]:
                writer = _last_writer([w for w in in_run.get(name, []) if w["task_id"] != rec["task_id"]],
                                      rec["start_ms"])
            if writer is None and elsewhere is not None:
                writer = elsewhere(name, rec["start_ms"], key)
            if writer is None:
                unknown.add(name)
            else:
                todo.append(writer)
    return {"tasks": tasks, "tables": sorted(tables), "unrecorded_writers": sorted(unknown)}


def other_pipelines(api: Mlflow, experiment: str = EXPERIMENT):
    """elsewhere() for upstream(): every recorded pipeline's writers, read once, when first asked."""
    index: dict[str, list[dict]] = {}
    loaded = []

    def load() -> None:
        for exp in api.experiments(experiment.format(dag_id="%")):
            by_run: dict[tuple, list[dict]] = {}
            for r in api.search_runs(exp["experiment_id"]):
                tags = _tags(r.get("data", {}).get("tags", []))
                if tags.get("airflow.dag_id") and tags.get("airflow.run_id"):
                    by_run.setdefault((tags["airflow.dag_id"], tags["airflow.run_id"]), []).append(r)
            for (dag_id, run_id), runs in by_run.items():
                for name, writers in _writers(pipeline_run(dag_id, run_id, runs)["tasks"], dag_id, run_id).items():
                    index.setdefault(name, []).extend(writers)
        loaded.append(True)

    def elsewhere(table: str, before_ms: Optional[int], reader: tuple) -> Optional[dict]:
        if not loaded:
            load()
        return _last_writer([w for w in index.get(table, []) if (w["dag_id"], w["run_id"]) != reader[:2]],
                            before_ms)
    return elsewhere


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
    builder = next((t for t in out["pipeline_run"]["tasks"] if t["task_id"] == tags.get("airflow.task_id")), None)
    if builder is not None:
        out["upstream"] = upstream(builder, out["pipeline_run"], other_pipelines(api))
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
        up = tree_model.get("upstream")
        if up is not None:
            others = sorted({(t["dag_id"], t["run_id"]) for t in up["tasks"]} - {(p["dag_id"], p["run_id"])})
            tables = root.add("[bold]tables behind it[/bold]  [dim]upstream of "
                              f"{escape(m['built_by']['task_id'] or '-')}"
                              + (", through " + escape(", ".join(f"{d} / {r}" for d, r in others)) if others else "")
                              + "[/dim]")
            for name in up["tables"]:
                note = "  [dim](its writer was not recorded)[/dim]" if name in up["unrecorded_writers"] else ""
                tables.add(escape(name) + note)
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
