"""Lineage on Airflow 2.0-2.2 (the seed image), which has no listeners: a cluster policy.

`task_policy` (exported by airflow_local_settings.py) wraps each task's execute, success, failure and
retry callbacks so the same events as the listener's are sent, then calls the task's own callback
(the DAG author's code still runs, and still sees its own exceptions). The lineage part never raises.
Tasks that never run (skipped, upstream failed) have no callbacks: `dag_policy` wraps the DAG's own
success and failure callbacks, which Airflow runs in its DAG processor when a run ends, to spool the
DAG run's name as the listener does; the lineage service records those tasks from it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from . import events, listener

WRAPPED = "_playground_lineage"


def _record(what: str, build: Callable[[Any], dict]) -> Callable[[dict], None]:
    def record(context: dict) -> None:
        ti = context.get("ti") or context.get("task_instance")
        if ti is not None:
            listener._safely(what, lambda: build(ti))
    return record


ON_START = _record("task start", events.start_event)
ON_SUCCESS = _record("task success", lambda ti: events.end_event(ti, "success"))
ON_FAILURE = _record("task failure", lambda ti: events.end_event(ti, "failed"))
ON_RETRY = _record("task retry", lambda ti: events.end_event(ti, "up_for_retry"))


def _chain(lineage: Callable[[dict], None], own: Optional[Callable[[dict], Any]]) -> Callable[[dict], Any]:
    @functools.wraps(own or lineage)
    def callback(context: dict) -> Any:
        lineage(context)  # never raises
        return own(context) if own is not None else None
    setattr(callback, WRAPPED, True)
    return callback


def task_policy(task) -> None:
    for attr, lineage in (("on_execute_callback", ON_START), ("on_success_callback", ON_SUCCESS),
                          ("on_failure_callback", ON_FAILURE), ("on_retry_callback", ON_RETRY)):
        own = getattr(task, attr, None)
        if getattr(own, WRAPPED, False):
            continue  # a DAG parsed twice in one process: wrap once
        setattr(task, attr, _chain(lineage, own))


def _dag_run_record(context: dict) -> None:
    dag_run = context.get("dag_run")
    if dag_run is not None:
        listener.dag_run_done(dag_run)  # never raises


def dag_policy(dag) -> None:
    for attr in ("on_success_callback", "on_failure_callback"):
        own = getattr(dag, attr, None)
        if not getattr(own, WRAPPED, False):
            setattr(dag, attr, _chain(_dag_run_record, own))
    # Set from the callbacks in DAG.__init__, before any policy: the scheduler only asks the DAG
    # processor to run a DAG's callbacks when these say there are some.
    dag.has_on_success_callback = dag.has_on_failure_callback = True
