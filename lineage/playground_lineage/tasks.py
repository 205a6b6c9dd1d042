"""For task code that wants to add to its own lineage record (a model it trains, say).

`task_run_id(ti)` is the MLflow run the plugin keeps for this task instance. The task's start event may
still be in the spool: holding the spool's delivery lock (so the lineage service cannot make the same
run at the same moment), it delivers what waits, then finds the run by its Airflow tags, or makes it
with them (the plugin finds runs by those tags too, so its events land on that same run). A model
registered from this run is linked, through the run's tags, to the DAG run and every table its tasks
read and wrote.
"""
from __future__ import annotations

import os
import time

from . import mlflow_rest, spool
from .delivery import deliver_pending
from .events import _common_tags, _key, _ms, experiment


def task_run_id(ti, budget: float = 15.0) -> str:
    deadline = time.monotonic() + budget
    with spool.hold(budget) as held:
        if not held:
            raise mlflow_rest.Unavailable("the lineage spool stayed busy for %.0f s" % budget)
        deliver_pending(max(0.1, deadline - time.monotonic()), held=True)
        client = mlflow_rest.Mlflow(os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
                                    max(deadline, time.monotonic() + 5))
        exp = client.experiment_id(experiment(ti.dag_id))
        key = _key(ti)
        run = client.find_run(exp, key)
        if run is None:
            tags = dict(_common_tags(ti))
            tags.update(key)
            run = client.create_run(exp, _ms(ti.start_date), ti.task_id, tags)
        return run["info"]["run_id"]
