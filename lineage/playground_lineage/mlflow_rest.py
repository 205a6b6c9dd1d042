"""MLflow's REST API, the few calls lineage needs, with short timeouts and no retries.

Delivery is idempotent: a run is found by its Airflow tags (start and end happen in
different processes), and each applied event leaves a marker tag on the run, so a
replayed event changes nothing.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional

KEY_TAGS = ("airflow.dag_id", "airflow.task_id", "airflow.run_id", "airflow.try_number")
MARKER = "playground.lineage.%s"  # tag set once an event kind is applied: replays skip it


class Unavailable(Exception):
    """MLflow could not take the event now: keep it for later."""


class Mlflow:
    def __init__(self, uri: str, deadline: float) -> None:
        self.uri = uri.rstrip("/")
        self.deadline = deadline  # time.monotonic() by which every call must be done

    def _call(self, method: str, path: str, body: Optional[dict] = None, query: str = "",
              data: Optional[bytes] = None) -> Dict[str, Any]:
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise Unavailable("out of time for lineage")
        url = self.uri + path + ("?" + query if query else "")
        payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=payload, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=min(left, 2.0)) as resp:
                text = resp.read().decode("utf-8") or "{}"
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            if exc.code >= 500 or exc.code == 429:
                raise Unavailable("%s %s: %d" % (method, path, exc.code)) from exc
            raise LookupError(exc.code, detail) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable("%s: %s" % (self.uri, exc)) from exc
        return json.loads(text)

    def experiment_id(self, name: str) -> str:
        try:
            return self._call("GET", "/api/2.0/mlflow/experiments/get-by-name",
                              query=urllib.parse.urlencode({"experiment_name": name}))["experiment"]["experiment_id"]
        except LookupError:
            pass
        try:
            return self._call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]
        except LookupError:  # made meanwhile by another task
            return self._call("GET", "/api/2.0/mlflow/experiments/get-by-name",
                              query=urllib.parse.urlencode({"experiment_name": name}))["experiment"]["experiment_id"]

    def find_run(self, experiment_id: str, key: Dict[str, str]) -> Optional[Dict[str, Any]]:
        terms = " and ".join("tags.`%s` = '%s'" % (k, str(key[k]).replace("'", "\\'")) for k in KEY_TAGS)
        found = self._call("POST", "/api/2.0/mlflow/runs/search",
                           {"experiment_ids": [experiment_id], "filter": terms, "max_results": 1})
        runs = found.get("runs") or []
        return runs[0] if runs else None

    def create_run(self, experiment_id: str, start_ms: int, name: str, tags: Dict[str, str]) -> Dict[str, Any]:
        return self._call("POST", "/api/2.0/mlflow/runs/create", {
            "experiment_id": experiment_id, "start_time": start_ms, "run_name": name,
            "tags": [{"key": k, "value": str(v)} for k, v in sorted(tags.items())]})["run"]

    def log_batch(self, run_id: str, params: Optional[Dict[str, str]] = None, tags: Optional[Dict[str, str]] = None,
                  metrics: Optional[Dict[str, float]] = None, at_ms: int = 0) -> None:
        self._call("POST", "/api/2.0/mlflow/runs/log-batch", {
            "run_id": run_id,
            "params": [{"key": k, "value": str(v)[:6000]} for k, v in sorted((params or {}).items())],
            "tags": [{"key": k, "value": str(v)} for k, v in sorted((tags or {}).items())],
            "metrics": [{"key": k, "value": float(v), "timestamp": at_ms or int(time.time() * 1000), "step": 0}
                        for k, v in sorted((metrics or {}).items())]})

    def log_inputs(self, run_id: str, datasets: List[Dict[str, Any]]) -> None:
        if datasets:
            self._call("POST", "/api/2.0/mlflow/runs/log-inputs", {"run_id": run_id, "datasets": datasets})

    def upload(self, artifact_uri: str, path: str, content: bytes) -> None:
        """Through the server's artifact proxy (mlflow-artifacts:/...): tasks need no bucket credentials."""
        if not artifact_uri.startswith("mlflow-artifacts:/"):
            return  # the server does not proxy artifacts: nothing a task can do without credentials
        rel = artifact_uri[len("mlflow-artifacts:/"):].lstrip("/")
        self._call("PUT", "/api/2.0/mlflow-artifacts/artifacts/%s/%s" % (rel, urllib.parse.quote(path)),
                   data=content)

    def update_run(self, run_id: str, status: str, end_ms: int) -> None:
        self._call("POST", "/api/2.0/mlflow/runs/update", {"run_id": run_id, "status": status, "end_time": end_ms})


def _tags(run: Dict[str, Any]) -> Dict[str, str]:
    return {t["key"]: t.get("value", "") for t in run.get("data", {}).get("tags", [])}


def deliver(event: Dict[str, Any], client: Mlflow) -> str:
    """Apply one event; returns what was done. Raises Unavailable to keep it for later."""
    exp = client.experiment_id(event["experiment"])
    run = client.find_run(exp, event["key"])
    marker = MARKER % event["kind"]
    if run is not None and _tags(run).get(marker):
        return "already applied"
    if run is None:
        tags = dict(event.get("tags", {}))
        tags.update({k: str(event["key"][k]) for k in KEY_TAGS})
        run = client.create_run(exp, event.get("start_ms") or event.get("end_ms") or int(time.time() * 1000),
                                event["key"]["airflow.task_id"], tags)
    run_id = run["info"]["run_id"]
    if event["kind"] == "start":
        client.log_batch(run_id, params=event.get("params"), tags=event.get("tags"), metrics=event.get("metrics"),
                         at_ms=event.get("start_ms", 0))
        client.log_inputs(run_id, event.get("datasets", []))
        for path, text in sorted(event.get("artifacts", {}).items()):
            client.upload(run["info"].get("artifact_uri", ""), path, text.encode("utf-8"))
    else:  # "end" of a try, or an "outcome" (skipped, upstream_failed) the task never ran for
        client.log_batch(run_id, tags=event.get("tags"), metrics=event.get("metrics"), at_ms=event.get("end_ms", 0))
        client.log_inputs(run_id, event.get("datasets", []))  # destinations, as the task left them
        client.update_run(run_id, event["status"], event.get("end_ms") or int(time.time() * 1000))
    client.log_batch(run_id, tags={marker: event["id"]})
    return "applied"
