"""Airflow listener hooks (Airflow 2.3+): task instances -> lineage events -> MLflow.

Every hook is wrapped: lineage never raises into Airflow. A hook only builds its event and writes it to
the durable spool (a file, fsync'd: a few milliseconds); the lineage service (`python -m
playground_lineage.replay --follow`, unit playground-lineage.service) delivers the spool to MLflow once a
burst of tasks is over (2 s quiet, at most 60 s late), in order, once, and keeps events while MLflow is
down. PLAYGROUND_LINEAGE_BUDGET_S > 0 also delivers from the task process, within that many seconds.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

from . import spool
from .events import STATUS, end_event, start_event

try:
    from airflow.listeners import hookimpl
except ImportError:  # Airflow < 2.3 has no listeners: policy.py sends the same events from task callbacks
    def hookimpl(fn):  # type: ignore[no-redef]
        return fn

log = logging.getLogger(__name__)


def dispatch(event: Dict[str, Any], budget: Optional[float] = None) -> None:
    """Spool the event (and deliver what a budget allows); never raises."""
    try:
        spool.put(event)
    except Exception as exc:  # noqa: BLE001
        log.warning("lineage: could not spool an event: %s", exc)
        return
    budget = float(os.environ.get("PLAYGROUND_LINEAGE_BUDGET_S", "0")) if budget is None else budget
    if budget > 0:
        from .delivery import deliver_pending

        deliver_pending(budget)


def enabled() -> bool:
    """The instance's `lineage` attribute (on by default), rendered into the Airflow env by the agent."""
    return os.environ.get("PLAYGROUND_LINEAGE", "on") != "off"


def _safely(what: str, build) -> None:
    if not enabled():
        return
    try:
        dispatch(build())
    except Exception as exc:  # noqa: BLE001 - lineage must never fail a task
        log.warning("lineage: %s not recorded: %s", what, exc)


@hookimpl
def on_task_instance_running(previous_state, task_instance, session):
    _safely("task start", lambda: start_event(task_instance))


@hookimpl
def on_task_instance_success(previous_state, task_instance, session):
    _safely("task success", lambda: end_event(task_instance, "success"))


@hookimpl
def on_task_instance_failed(previous_state, task_instance, session):
    state = str(getattr(task_instance.state, "value", task_instance.state) or "failed")
    _safely("task failure", lambda: end_event(task_instance, state if state in STATUS else "failed"))


def dag_run_done(dag_run) -> None:
    if not enabled():
        return
    # Tasks that never ran (skipped, upstream_failed) have no task hooks: they are recorded from the DAG
    # run. This hook runs inside the scheduler's locked loop, where touching the database breaks it:
    # spool only the DAG run's name; the lineage service reads its task instances (delivery.expand_dag_run).
    try:
        spool.put({"kind": "dagrun", "dag_id": dag_run.dag_id, "run_id": dag_run.run_id})
    except Exception as exc:  # noqa: BLE001
        log.warning("lineage: end of DAG run %s not recorded: %s", getattr(dag_run, "run_id", "?"), exc)


@hookimpl
def on_dag_run_success(dag_run, msg):
    dag_run_done(dag_run)


@hookimpl
def on_dag_run_failed(dag_run, msg):
    dag_run_done(dag_run)
