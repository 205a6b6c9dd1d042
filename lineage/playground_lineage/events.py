"""Lineage events: what a task instance's start and end say (its MLflow run's tags, params, tables and their
facts), built from Airflow's task instance. The listener spools them; delivery builds the end of tasks that
never ran from the DAG run."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Dict, List, Tuple

from . import collectors

log = logging.getLogger(__name__)
STATUS = {"success": "FINISHED", "failed": "FAILED", "up_for_retry": "FAILED", "skipped": "KILLED",
          "upstream_failed": "KILLED", "removed": "KILLED"}
MAX_ARTIFACT = 1 << 20


def _ms(when) -> int:
    return int(when.timestamp() * 1000) if when is not None else int(time.time() * 1000)


def _try_number(ti) -> int:
    # Airflow 2.10 made try_number the stored column; before, it read one ahead once the try ended.
    from airflow import __version__

    major, minor = (int(x) for x in __version__.split(".")[:2])
    return int(ti.try_number if (major, minor) >= (2, 10) else ti._try_number)


def _run_id(ti) -> str:
    # TaskInstance.run_id exists from Airflow 2.2; before, the DAG run is found by execution date.
    run_id = getattr(ti, "run_id", None)
    if run_id:
        return str(run_id)
    dag_run = ti.get_dagrun()
    return str(dag_run.run_id) if dag_run is not None else ""


def map_index(ti) -> int:
    return int(getattr(ti, "map_index", -1))  # mapped tasks arrived in Airflow 2.3


def _key(ti) -> Dict[str, str]:
    return {"airflow.dag_id": ti.dag_id, "airflow.task_id": ti.task_id, "airflow.run_id": _run_id(ti),
            "airflow.try_number": str(_try_number(ti))}


def experiment(dag_id: str) -> str:
    return os.environ.get("PLAYGROUND_LINEAGE_EXPERIMENT", "airflow/{dag_id}").format(dag_id=dag_id)


def _tables(entities: List[Any]) -> List[Dict[str, str]]:
    """Airflow's inlets/outlets (Table, Dataset, File) as names with a source type."""
    out = []
    for ent in entities or []:
        if hasattr(ent, "database") and hasattr(ent, "name"):  # airflow.lineage.entities.Table
            kind = "bigquery" if "bigquery" in str(getattr(ent, "cluster", "")).lower() else "postgres"
            out.append({"name": "%s.%s" % (ent.database, ent.name), "source_type": kind,
                        "conn_id": str(getattr(ent, "cluster", "") or "")})
        elif hasattr(ent, "uri"):  # airflow.datasets.Dataset
            out.append({"name": ent.uri, "source_type": "uri", "conn_id": ""})
        elif hasattr(ent, "url"):  # airflow.lineage.entities.File
            out.append({"name": ent.url, "source_type": "uri", "conn_id": ""})
    return out


def _declared(task, which: str) -> List[Any]:
    # Airflow before 2.3 keeps what the DAG declared in _inlets/_outlets and fills inlets/outlets only
    # inside execute (prepare_lineage): callbacks outside it see empty lists.
    return list(getattr(task, which, None) or getattr(task, "_" + which, None) or [])


def _dataset(table: Dict[str, str], context: str, facts: Dict[str, Any]) -> Dict[str, Any]:
    # OpenLineage facet shapes for the profile: dataset statistics and lifecycle.
    profile = {"datasetStatistics": {k: facts[k] for k in ("rowCount", "size") if k in facts},
               "lifecycle": {k: facts[k] for k in ("createdAt", "modifiedAt") if k in facts}}
    # MLflow keeps one dataset per (name, digest) in an experiment: the digest covers the metadata, so each
    # state of a table is its own dataset and a run shows the table as its task saw it.
    digest = hashlib.sha256((table["name"] + json.dumps(profile, sort_keys=True)).encode()).hexdigest()[:8]
    return {"tags": [{"key": "mlflow.data.context", "value": context}],
            "dataset": {"name": table["name"], "digest": digest,
                        "source_type": table["source_type"], "source": json.dumps({"uri": table["name"]}),
                        "profile": json.dumps(profile)}}


def _facts(table: Dict[str, str]) -> Dict[str, Any]:
    try:
        return collectors.collect(table)
    except Exception as exc:  # noqa: BLE001 - metadata is best effort
        log.debug("lineage: no metadata for %s: %s", table["name"], exc)
        return {}


def _common_tags(ti) -> Dict[str, str]:
    dag = ti.task.dag if getattr(ti, "task", None) is not None else None
    dag_tags = sorted(getattr(dag, "tags", None) or [])
    extra = (getattr(dag, "params", None) or {}).get("lineage_tags") if dag is not None else None
    functional = dag_tags + sorted(str(t) for t in (extra if isinstance(extra, (list, tuple)) else []))
    tags = {"mlflow.user": "airflow", "mlflow.source.type": "JOB", "mlflow.runName": ti.task_id,
            "mlflow.source.name": getattr(dag, "fileloc", "") or ti.dag_id, "airflow.map_index": str(map_index(ti)),
            "pipeline.tags": ",".join(functional), "gcp.project": os.environ.get("PLAYGROUND_PROJECT", "")}
    tags.update({"pipeline.tag.%s" % t: "true" for t in functional})
    return tags


def _table_facts(tables: List[Dict[str, str]], context: str) -> Tuple[List[Dict[str, Any]], Dict[str, float]]:
    """Datasets (with the tables' metadata as they are now) and the same facts as metrics."""
    datasets, metrics = [], {}
    for table in tables:
        facts = _facts(table)
        datasets.append(_dataset(table, context, facts))
        for fact in ("rowCount", "size"):
            if fact in facts:
                metrics["table.%s.%s" % (table["name"], fact)] = float(facts[fact])
    return datasets, metrics


def start_event(ti) -> Dict[str, Any]:
    # Sources as the task found them; destinations are recorded at the end, as the task left them.
    task = ti.task
    inlets, outlets = _tables(_declared(task, "inlets")), _tables(_declared(task, "outlets"))
    datasets, metrics = _table_facts(inlets, "source")
    artifacts = {}
    fileloc = getattr(task.dag, "fileloc", "")
    if fileloc and os.path.isfile(fileloc) and os.path.getsize(fileloc) <= MAX_ARTIFACT:
        with open(fileloc, encoding="utf-8", errors="replace") as fh:
            artifacts["airflow/" + os.path.basename(fileloc)] = fh.read()
    rendered = {f: str(getattr(task, f, ""))[:100000] for f in getattr(task, "template_fields", ())}
    artifacts["airflow/rendered_template_fields.json"] = json.dumps(rendered, indent=2, sort_keys=True)
    logical = getattr(ti, "logical_date", None) or getattr(ti, "execution_date", None)
    return {"kind": "start", "experiment": experiment(ti.dag_id), "key": _key(ti), "start_ms": _ms(ti.start_date),
            "params": {"task_id": ti.task_id, "operator": getattr(task, "task_type", type(task).__name__),
                       "logical_date": logical.isoformat() if logical else "", "try_number": _key(ti)[
                           "airflow.try_number"], "project": os.environ.get("PLAYGROUND_PROJECT", ""),
                       "source_tables": ",".join(t["name"] for t in inlets),
                       "destination_tables": ",".join(t["name"] for t in outlets)},
            "tags": _common_tags(ti), "datasets": datasets, "metrics": metrics, "artifacts": artifacts}


def end_event(ti, state: str, kind: str = "end") -> Dict[str, Any]:
    ended = getattr(ti, "end_date", None)
    event = {"kind": kind, "experiment": experiment(ti.dag_id), "key": _key(ti), "status": STATUS.get(state, "FAILED"),
             "end_ms": _ms(ended), "tags": {"airflow.state": state}}
    if getattr(ti, "duration", None) is not None:
        event["metrics"] = {"airflow.duration_s": float(ti.duration)}
    task = getattr(ti, "task", None)
    if kind == "end" and task is not None:
        outlets = _tables(_declared(task, "outlets"))
        if outlets:
            event["datasets"], facts = _table_facts(outlets, "destination")
            event.setdefault("metrics", {}).update(facts)
    if kind == "outcome":  # the task never ran: its run is made from this event alone
        event["start_ms"] = event["end_ms"]
        event["tags"].update({"mlflow.user": "airflow", "mlflow.source.type": "JOB", "mlflow.runName": ti.task_id})
    return event
