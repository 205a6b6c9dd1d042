"""Airflow 2.0-2.2 lineage (the seed image): the cluster policy records each task through its callbacks,
still runs the DAG author's own callbacks, and is never the reason a callback fails."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from support import REPO

sys.path.insert(0, str(REPO / "lineage"))
from playground_lineage import events, listener, policy  # noqa: E402


def fake_task(**callbacks):
    dag = SimpleNamespace(dag_id="etl", fileloc="/nonexistent/etl.py", tags=["claims"], params={})
    return SimpleNamespace(task_id="load", dag=dag, inlets=[], outlets=[], task_type="PythonOperator",
                           template_fields=(), **callbacks)


def fake_ti(task):
    """A TaskInstance as Airflow 2.0 has it: no run_id (2.2) or map_index (2.3); the run is looked up."""
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return SimpleNamespace(task=task, dag_id="etl", task_id=task.task_id, try_number=1, _try_number=1,
                           start_date=when, end_date=when, duration=1.5, execution_date=when,
                           get_dagrun=lambda: SimpleNamespace(dag_id="etl", run_id="manual__1"))


@pytest.fixture(autouse=True)
def seed_airflow(monkeypatch):
    # The seed image's Airflow, as far as the events ask (its version decides how try_number is read).
    monkeypatch.setitem(sys.modules, "airflow", SimpleNamespace(__version__="2.0.2"))


@pytest.fixture
def sent(monkeypatch):
    got = []
    monkeypatch.setattr(listener, "dispatch", lambda event, budget=None: got.append(event))
    return got


@pytest.mark.parametrize("callback, kind, status", [
    ("on_execute_callback", "start", None), ("on_success_callback", "end", "FINISHED"),
    ("on_failure_callback", "end", "FAILED"), ("on_retry_callback", "end", "FAILED")])
def test_each_callback_sends_its_event_then_calls_the_authors_own(sent, callback, kind, status):
    calls = []
    task = fake_task(**{callback: lambda ctx: calls.append(ctx["ti"].task_id) or "own result"})
    policy.task_policy(task)
    ti = fake_ti(task)
    assert getattr(task, callback)({"ti": ti}) == "own result"
    assert calls == ["load"]
    assert [e["kind"] for e in sent] == [kind]
    assert sent[0]["key"] == {"airflow.dag_id": "etl", "airflow.task_id": "load", "airflow.run_id": "manual__1",
                              "airflow.try_number": "1"}
    if status:
        assert sent[0]["status"] == status
    if callback == "on_retry_callback":
        assert sent[0]["tags"]["airflow.state"] == "up_for_retry"


def test_a_task_without_callbacks_gets_lineage_ones(sent):
    task = fake_task(on_execute_callback=None, on_success_callback=None, on_failure_callback=None,
                     on_retry_callback=None)
    policy.task_policy(task)
    ti = fake_ti(task)
    task.on_execute_callback({"ti": ti})
    task.on_success_callback({"ti": ti})
    assert [e["kind"] for e in sent] == ["start", "end"]


def test_lineage_failing_never_hides_the_authors_callback(monkeypatch):
    def broken(event, budget=None):
        raise RuntimeError("spool disk full")
    monkeypatch.setattr(listener, "dispatch", broken)
    calls = []
    task = fake_task(on_failure_callback=lambda ctx: calls.append("alert sent"))
    policy.task_policy(task)
    task.on_failure_callback({"ti": fake_ti(task)})
    assert calls == ["alert sent"]


def test_the_authors_exception_still_reaches_airflow(sent):
    def own(ctx):
        raise ValueError("author's bug")
    task = fake_task(on_success_callback=own)
    policy.task_policy(task)
    with pytest.raises(ValueError, match="author's bug"):
        task.on_success_callback({"ti": fake_ti(task)})
    assert [e["kind"] for e in sent] == ["end"]


def test_a_dag_parsed_twice_is_wrapped_once(sent):
    task = fake_task(on_success_callback=None)
    policy.task_policy(task)
    policy.task_policy(task)
    task.on_success_callback({"ti": fake_ti(task)})
    assert len(sent) == 1


def test_start_event_on_airflow_2_0_names_the_run_and_the_unmapped_index(sent):
    task = fake_task(on_execute_callback=None)
    policy.task_policy(task)
    task.on_execute_callback({"ti": fake_ti(task)})
    (event,) = sent
    assert event["key"]["airflow.run_id"] == "manual__1"
    assert event["tags"]["airflow.map_index"] == "-1"
    assert event["params"]["logical_date"] == "2026-01-01T00:00:00+00:00"


def fake_dag(**callbacks):
    dag = SimpleNamespace(dag_id="etl", **callbacks)
    dag.has_on_success_callback = callbacks.get("on_success_callback") is not None
    dag.has_on_failure_callback = callbacks.get("on_failure_callback") is not None
    return dag


def test_dag_policy_records_the_end_of_a_run_and_keeps_the_authors_callback(monkeypatch):
    spooled = []
    monkeypatch.setattr(listener.spool, "put", spooled.append)
    calls = []
    dag = fake_dag(on_success_callback=None, on_failure_callback=lambda ctx: calls.append(ctx["reason"]))
    policy.dag_policy(dag)
    policy.dag_policy(dag)  # parsed twice in one process: wrapped once
    # Without these the scheduler never asks the DAG processor to run the callbacks.
    assert dag.has_on_success_callback and dag.has_on_failure_callback
    run = SimpleNamespace(dag_id="etl", run_id="manual__1")
    dag.on_success_callback({"dag_run": run, "reason": "success"})
    dag.on_failure_callback({"dag_run": run, "reason": "task_failure"})
    assert spooled == [{"kind": "dagrun", "dag_id": "etl", "run_id": "manual__1"}] * 2
    assert calls == ["task_failure"]


def test_dag_policy_failing_to_spool_never_hides_the_authors_callback(monkeypatch):
    def full(event):
        raise OSError("spool disk full")
    monkeypatch.setattr(listener.spool, "put", full)
    calls = []
    dag = fake_dag(on_failure_callback=lambda ctx: calls.append("paged"))
    policy.dag_policy(dag)
    dag.on_failure_callback({"dag_run": SimpleNamespace(dag_id="etl", run_id="r"), "reason": "task_failure"})
    assert calls == ["paged"]


def test_callbacks_outside_execute_still_see_the_declared_tables(sent, monkeypatch):
    """Airflow 2.0 fills task.inlets/outlets only inside execute; the DAG's declaration is in _inlets/_outlets."""
    monkeypatch.setattr(events, "_facts", lambda table: {})
    table = SimpleNamespace(database="public", name="claims_enriched", cluster="warehouse")
    task = fake_task(on_success_callback=None, on_execute_callback=None)
    task.outlets, task._outlets = [], [table]
    policy.task_policy(task)
    ti = fake_ti(task)
    task.on_execute_callback({"ti": ti})
    task.on_success_callback({"ti": ti})
    start, end = sent
    assert start["params"]["destination_tables"] == "public.claims_enriched"
    assert [(d["dataset"]["name"], d["tags"][0]["value"]) for d in end["datasets"]] == [
        ("public.claims_enriched", "destination")]
