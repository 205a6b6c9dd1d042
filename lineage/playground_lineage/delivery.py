"""Delivering the spool to MLflow: by the lineage service, or by a task process given a budget.

Importing this does not import Airflow: the service stays small until a finished DAG run needs its
task instances read (expand_dag_run), which only the service does.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Tuple

from . import mlflow_rest, spool
from .events import end_event, map_index

log = logging.getLogger(__name__)


def deliver_pending(budget: float, expand: bool = False, held: bool = False) -> Tuple[int, int]:
    """Deliver spooled events within the budget (seconds); never raises. DAG-run events need the Airflow
    database: only the service (expand=True) takes them; a task process leaves them in place.
    held: the caller holds the spool's lock already. Returns (delivered, left)."""
    deadline = time.monotonic() + budget
    uri = os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    client = mlflow_rest.Mlflow(uri, deadline)

    def deliver(event: Dict[str, Any]) -> str:
        if event.get("kind") != "dagrun":
            return mlflow_rest.deliver(event, client)
        for outcome in expand_dag_run(event):
            mlflow_rest.deliver(outcome, client)
        return "expanded"

    try:
        done, left = spool.drain(deliver, deadline, retry=(mlflow_rest.Unavailable, OSError),
                                 skip=None if expand else (lambda e: e.get("kind") == "dagrun"), held=held)
    except Exception as exc:  # noqa: BLE001
        log.warning("lineage: delivery postponed: %s", exc)
        return 0, len(spool.pending())
    if left:
        log.info("lineage: %d event(s) wait for MLflow (%d delivered)", left, done)
    return done, left


def expand_dag_run(event: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The outcome events of a finished DAG run's tasks that never ran (skipped, upstream failed)."""
    from airflow.models import DagRun  # the lineage service's Airflow; the task hooks never import it

    runs = DagRun.find(dag_id=event["dag_id"], run_id=event["run_id"])
    if not runs:
        return []
    out = []
    for ti in runs[0].get_task_instances():
        state = str(getattr(ti.state, "value", ti.state))
        if state in ("skipped", "upstream_failed", "removed"):
            out.append(dict(end_event(ti, state, kind="outcome"), id="%s-%s-%s" % (
                event.get("id", ""), ti.task_id, map_index(ti))))
    return out


def due(names: List[str], now_ns: int, quiet: float, max_wait: float) -> bool:
    """Deliver once the spool has been quiet for `quiet` seconds, or its oldest event waited `max_wait`.
    During a burst of tasks MLflow's work for their records (several requests each) would take CPU the
    tasks need: it waits for the burst to end, bounded. Names start with the event's time in ns."""
    if not names:
        return False
    oldest, newest = (int(n.split("-", 1)[0]) for n in (names[0], names[-1]))
    return (now_ns - newest) / 1e9 >= quiet or (now_ns - oldest) / 1e9 >= max_wait


def follow(interval: float, batch_budget: float, stop: Any, quiet: float = 2.0, max_wait: float = 60.0) -> None:
    """The service's loop: deliver whatever is due, never more than batch_budget seconds at once."""
    while not stop.is_set():
        if due(spool.pending(), time.time_ns(), quiet, max_wait):
            deliver_pending(batch_budget, expand=True)
        stop.wait(interval)
