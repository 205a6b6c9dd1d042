"""The lineage delivery code against a real MLflow server on loopback (the instance's), read back through
MLflow's own Python client: events applied once in order, replays changing nothing, a refused event set
aside without blocking the rest, and events kept while MLflow does not answer."""
from __future__ import annotations

import json
import shlex

import pytest
from support import run_ok

pytestmark = pytest.mark.image

SCRIPT = r'''
import json, os, sys, tempfile, time
from mlflow import MlflowClient
from playground_lineage import delivery, mlflow_rest, spool

os.environ["PLAYGROUND_LINEAGE_SPOOL"] = tempfile.mkdtemp(prefix="spool-")
exp = "lineage-delivery-check-%d" % time.time_ns()
key = {"airflow.dag_id": "d", "airflow.task_id": "t", "airflow.run_id": "r1", "airflow.try_number": "1"}
start = {"kind": "start", "experiment": exp, "key": key, "start_ms": 1700000000000,
         "params": {"task_id": "t", "operator": "PythonOperator"}, "tags": {"mlflow.user": "airflow"},
         "metrics": {"table.public.x.rowCount": 5.0}, "artifacts": {"airflow/d.py": "print(1)\n"},
         "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "source"}],
                       "dataset": {"name": "public.x", "digest": "abcd1234", "source_type": "postgres",
                                   "source": "{}", "profile": "{}"}}]}
end = {"kind": "end", "experiment": exp, "key": key, "status": "FINISHED", "end_ms": 1700000005000,
       "tags": {"airflow.state": "success"}, "metrics": {"airflow.duration_s": 5.0}}
out = {}

# MLflow not answering (a closed port): both events stay, in order.
os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
spool.put(dict(start)); spool.put(dict(end))
out["down"] = list(delivery.deliver_pending(5.0))
os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"
# A refused event (no such experiment name allowed: empty) between them must not block the rest.
spool.put({"kind": "end", "experiment": "", "key": key, "status": "FINISHED", "end_ms": 1})
out["up"] = list(delivery.deliver_pending(20.0))
out["failed"] = sorted(n for n in os.listdir(spool.spool_dir()) if n.endswith(".failed"))
# The same two events again (a replay after a crash): nothing changes.
spool.put(dict(start)); spool.put(dict(end))
out["replayed"] = list(delivery.deliver_pending(20.0))

client = MlflowClient()
runs = client.search_runs([client.get_experiment_by_name(exp).experiment_id])
out["runs"] = len(runs)
run = runs[0]
out["status"] = run.info.status
out["times"] = [run.info.start_time, run.info.end_time]
out["params"] = run.data.params
out["metrics"] = run.data.metrics
out["tags"] = {k: v for k, v in run.data.tags.items() if k.startswith(("airflow.", "mlflow.user"))}
out["inputs"] = [(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs]
out["artifacts"] = [f.path for f in client.list_artifacts(run.info.run_id, "airflow")]
print(json.dumps(out))
'''


def test_delivery_against_a_real_mlflow_server(host):
    raw = run_ok(host, "cd /tmp && sudo -n -u airflow env PYTHONPATH=/opt/playground/lineage "
                       f"/opt/airflow/bin/python -c {shlex.quote(SCRIPT)}")
    got = json.loads(raw.strip().splitlines()[-1])
    assert got["down"] == [0, 2], "MLflow not answering: both events kept"
    assert got["up"][1] == 0 and len(got["failed"]) == 1, got
    assert got["replayed"] == [2, 0], "a replay is taken (and changes nothing)"
    assert got["runs"] == 1, "start and end of one try, twice over, are one run"
    assert got["status"] == "FINISHED" and got["times"] == [1700000000000, 1700000005000]
    assert got["params"] == {"task_id": "t", "operator": "PythonOperator"}
    assert got["metrics"] == {"table.public.x.rowCount": 5.0, "airflow.duration_s": 5.0}
    assert got["tags"]["airflow.state"] == "success" and got["tags"]["mlflow.user"] == "airflow"
    assert got["tags"]["airflow.run_id"] == "r1"
    assert got["inputs"] == [["public.x", "source"]]
    assert got["artifacts"] == ["airflow/d.py"]
