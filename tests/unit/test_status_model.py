"""`playground status`: agent report -> service levels, exit codes, JSON shape, and the rendering."""
from __future__ import annotations

import json

from playground import status
from rich.console import Console

HEALTHY_REPORT = {
    "config": {"state": "ok", "generation": 3},
    "units": {u: {"active": "active", "sub": "running", "result": "success", "restarts": "0"}
              for u in ("postgresql.service", "airflow-webserver.service", "mlflow-server.service",
                        "airflow-scheduler@1.service", "airflow-scheduler@2.service", "playground-lineage.service")},
    "airflow": {"ok": True, "metadatabase": "healthy", "scheduler": "healthy", "heartbeat_age_s": 2.0},
    "mlflow": {"ok": True, "reason": ""},
    "mount": {"ok": True, "state": "not configured (local DAG folder)"},
    "proxy": {"ok": True, "state": "not configured (MLflow on the local PostgreSQL)"},
    "lineage": {"ok": True, "state": "all delivered", "waiting": 0, "oldest_s": None, "set_aside": 0},
    "disk": {"total_gb": 20.0, "used_pct": 31.5},
    "memory": {"total_mb": 7900, "used_pct": 22.0},
    "autostop": {"minutes": 60, "state": "idle", "held_by": [], "stops_in_s": 1380},
}


def machine(name: str = "demo", state: str = "running") -> status.Machine:
    return status.Machine(name=name, provider="local", project="playground-demo", zone="local-host1-a",
                          state=state, machine_type="nspawn", image="playground-local-1", profile="local",
                          address="10.213.1.2", started_at=None, target=None,
                          start_command=f"playground start --name {name}")


def row_from(report: dict, name: str = "demo") -> dict:
    """The row `check` builds, from a report (as if read over SSH)."""
    services = status.services_from_report(report)
    return {"name": name, "provider": "local", "project": "playground-demo", "zone": "local-host1-a",
            "state": "running", "machine_type": "nspawn", "image": "playground-local-1", "profile": "local",
            "address": "10.213.1.2", "uptime_s": 3720, "schedule": {"next_stop": "21:00 Europe/London",
                                                                     "next_start": None},
            "services": services, "disk": report["disk"], "memory": report["memory"],
            "autostop": report.get("autostop"), "error": None,
            "next_step": None, "level": status.worst(s["level"] for s in services)}


def by_name(rows: list[dict]) -> dict:
    return {r["name"]: r for r in rows}


def test_healthy_report_is_all_green_with_one_row_per_scheduler():
    rows = by_name(status.services_from_report(HEALTHY_REPORT))
    assert {r["level"] for r in rows.values()} == {"green"}
    assert "airflow scheduler 1" in rows and "airflow scheduler 2" in rows
    assert rows["airflow scheduler 1"]["reason"] == "heartbeat 2 s ago"


def test_stopped_unit_is_red_and_stale_heartbeat_amber():
    rep = json.loads(json.dumps(HEALTHY_REPORT))
    rep["units"]["mlflow-server.service"] = {"active": "inactive", "result": "success", "restarts": "0"}
    rep["mlflow"] = {"ok": False, "reason": "MLflow /health not answering on 127.0.0.1:5000"}
    rep["airflow"]["heartbeat_age_s"] = 95.0
    rows = by_name(status.services_from_report(rep))
    assert rows["mlflow"]["level"] == "red" and "inactive" in rows["mlflow"]["reason"]
    assert rows["airflow scheduler 1"]["level"] == "amber" and "95 s" in rows["airflow scheduler 1"]["reason"]
    assert rows["postgresql"]["level"] == "green"


def test_lineage_row_from_the_agents_spool_state():
    rep = json.loads(json.dumps(HEALTHY_REPORT))
    assert by_name(status.services_from_report(rep))["lineage delivery"]["reason"] == "all delivered"
    rep["lineage"] = {"ok": False, "state": "40 waiting for MLflow, oldest 300 s", "waiting": 40, "oldest_s": 300,
                      "set_aside": 0}
    row = by_name(status.services_from_report(rep))["lineage delivery"]
    assert row["level"] == "amber" and row["reason"] == "40 waiting for MLflow, oldest 300 s"
    rep["units"]["playground-lineage.service"] = {"active": "failed", "result": "exit-code", "restarts": "0"}
    assert by_name(status.services_from_report(rep))["lineage delivery"]["level"] == "red"
    del rep["lineage"]  # an agent from before the lineage row
    assert "lineage delivery" not in by_name(status.services_from_report(rep))


def test_failed_config_is_red_with_the_agents_reason():
    rep = dict(HEALTHY_REPORT, config={"state": "error", "error": "metadata attribute 'timezone': expected ..."})
    rows = by_name(status.services_from_report(rep))
    assert rows["agent config"]["level"] == "red" and "timezone" in rows["agent config"]["reason"]


def test_exit_codes():
    green = row_from(HEALTHY_REPORT)
    amber = dict(green, level="amber")
    down = dict(green, level="down")
    assert status.exit_code({"instances": [green]}) == 0
    assert status.exit_code({"instances": [green, amber]}) == 1
    assert status.exit_code({"instances": [amber, down]}) == 2
    assert status.exit_code({"instances": []}) == 2


def test_stopped_machine_is_down_without_ssh():
    row = status.check(machine(state="stopped"))
    assert row["level"] == "down" and row["next_step"] == "playground start --name demo"


def test_collect_runs_in_parallel_and_keeps_order():
    import threading

    seen = []
    barrier = threading.Barrier(3, timeout=5)  # all three checks must be in flight at once

    def checker(m, timeout):
        barrier.wait()
        seen.append(m.name)
        return dict(row_from(HEALTHY_REPORT, m.name))

    model = status.collect([machine("a"), machine("b"), machine("c")], 1.0, checker=checker)
    assert [r["name"] for r in model["instances"]] == ["a", "b", "c"]
    assert sorted(seen) == ["a", "b", "c"]


def test_json_model_keys_are_stable():
    model = {"schema": status.SCHEMA, "generated_at": "2026-11-24T00:00:00Z", "instances": [row_from(HEALTHY_REPORT)]}
    row = json.loads(json.dumps(model))["instances"][0]
    assert model["schema"] == 1
    assert sorted(row) == sorted(["name", "provider", "project", "zone", "state", "machine_type", "image", "profile",
                                  "address", "uptime_s", "schedule", "services", "disk", "memory", "autostop", "error",
                                  "next_step", "level"])
    assert sorted(row["services"][0]) == ["level", "name", "reason", "unit"]


def test_render_shows_levels_reasons_and_journal():
    rep = json.loads(json.dumps(HEALTHY_REPORT))
    rep["units"]["mlflow-server.service"] = {"active": "failed", "result": "exit-code", "restarts": "3"}
    row = row_from(rep)
    next(s for s in row["services"] if s["name"] == "mlflow")["journal"] = ["mlflow: address already in use"]
    row["next_step"] = "playground ssh --name demo -- sudo journalctl -u UNIT"
    down = dict(row_from(HEALTHY_REPORT, "other"), services=[], level="down", state="stopped",
                error="instance is stopped", next_step="playground start --name other", disk=None, memory=None)
    console = Console(width=100, record=True, color_system=None)
    console.print(status.render({"instances": [row, down]}))
    text = console.export_text()
    assert "✖ demo" in text and "red" in text
    assert "mlflow-server.service is failed (exit-code)" in text
    assert "│ mlflow: address already in use" in text
    assert any("●" in line and "postgresql" in line and "active" in line for line in text.splitlines())
    assert "1h2m" in text and "21:00 Europe/London" in text
    assert "instance is stopped" in text and "next: playground start --name other" in text
    assert "32% of 20.0 GB used" in text and "memory 22.0% of 7900 MB used" in text
    assert "autostop  in 23 min (after 60 min idle)" in text


def test_autostop_says_off_the_minutes_left_or_what_holds_the_machine_up():
    assert status.autostop_text({"minutes": 0, "state": "off"}) == "off"
    assert status.autostop_text({"minutes": 1, "state": "idle", "stops_in_s": 1}) == "in 1 min (after 1 min idle)"
    assert status.autostop_text({"minutes": 60, "state": "idle", "stops_in_s": 3600}) == \
        "in 60 min (after 60 min idle)"
    held = {"minutes": 30, "state": "held", "held_by": ["2 task(s) running or queued", "1 SSH session(s) or tunnel(s) "
                                                          "open"]}
    assert status.autostop_text(held) == ("held: 2 task(s) running or queued; 1 SSH session(s) or tunnel(s) open "
                                          "(after 30 min idle)")
    assert status.autostop_text({"minutes": 5, "state": "not checking", "reason": "no check in 30 s"}) == \
        "not checking: no check in 30 s"
    assert status.autostop_text(None) == "-"  # an agent from before autostop


def test_a_restart_is_amber_for_ten_minutes_then_green_again():
    import copy

    rep = copy.deepcopy(HEALTHY_REPORT)
    rep["units"]["mlflow-server.service"].update(restarts="1", active_for_s=42.0)
    assert by_name(status.services_from_report(rep))["mlflow"] == {
        "name": "mlflow", "unit": "mlflow-server.service", "level": "amber", "reason": "restarted 1 time(s), 42 s ago"}
    rep["units"]["mlflow-server.service"]["active_for_s"] = status.RESTART_AMBER_S + 1
    row = by_name(status.services_from_report(rep))["mlflow"]
    assert row["level"] == "green"
    assert status.exit_code({"instances": [row_from(rep)]}) == 0
    del rep["units"]["mlflow-server.service"]["active_for_s"]  # an agent that does not say: stays amber
    assert by_name(status.services_from_report(rep))["mlflow"]["level"] == "amber"


def test_postgresql_is_the_cluster_and_its_postmaster():
    import copy

    rep = copy.deepcopy(HEALTHY_REPORT)
    rep["units"]["postgresql@15-main.service"] = {"active": "active", "sub": "running", "restarts": "0"}
    rep["postgresql"] = {"ok": False, "state": "postmaster not accepting on /var/run/postgresql/.s.PGSQL.5432"}
    row = by_name(status.services_from_report(rep))["postgresql"]
    assert (row["unit"], row["level"]) == ("postgresql@15-main.service", "amber")
    assert "not accepting" in row["reason"]
    rep["units"]["postgresql@15-main.service"]["active"] = "failed"  # the wrapper still says active
    assert by_name(status.services_from_report(rep))["postgresql"]["level"] == "red"


def test_triggerer_row_follows_its_unit_and_its_heartbeat():
    rep = json.loads(json.dumps(HEALTHY_REPORT))
    assert "airflow triggerer" not in by_name(status.services_from_report(rep))  # an image without one
    rep["units"]["airflow-triggerer.service"] = {"active": "active", "sub": "running", "result": "success",
                                                  "restarts": "0"}
    rep["airflow"].update(triggerer="healthy", triggerer_heartbeat_age_s=4.0)
    row = by_name(status.services_from_report(rep))["airflow triggerer"]
    assert (row["level"], row["reason"]) == ("green", "heartbeat 4 s ago")
    rep["airflow"].update(triggerer="unhealthy", triggerer_heartbeat_age_s=300.0)
    row = by_name(status.services_from_report(rep))["airflow triggerer"]
    assert row["level"] == "amber" and "unhealthy" in row["reason"]
    rep["units"]["airflow-triggerer.service"]["active"] = "failed"
    assert by_name(status.services_from_report(rep))["airflow triggerer"]["level"] == "red"


def test_disk_row_is_amber_from_80_and_red_from_95_percent_naming_what_uses_it():
    uses = [{"label": "airflow logs", "path": "/var/log/airflow", "bytes": 3 * 2**30},
            {"label": "postgresql", "path": "/var/lib/postgresql", "bytes": 200 * 2**20}]
    for pct, level in ((31.5, "green"), (80.0, "amber"), (96.2, "red")):
        rep = json.loads(json.dumps(HEALTHY_REPORT))
        rep["disk"] = {"total_gb": 20.0, "free_gb": 0.8, "used_pct": pct, "level": level, "uses": uses}
        row = by_name(status.services_from_report(rep))["disk"]
        assert row["level"] == level
        assert row["reason"] == (f"{pct:.0f}% of 20.0 GB used, 0.8 GB free; "
                                 "airflow logs 3.0 GB, postgresql 200.0 MB")
    rep = json.loads(json.dumps(HEALTHY_REPORT))
    rep["disk"] = {"total_gb": 20.0, "used_pct": 97.0}  # an agent without levels: the same thresholds here
    assert by_name(status.services_from_report(rep))["disk"]["level"] == "red"
    model = {"instances": [row_from(rep)]}
    assert status.exit_code(model) == 1


def worker_report(**parts) -> dict:
    report = {"role": "worker", "main_address": "10.214.1.1", "config": {"state": "ok"},
              "units": {u: {"active": "active", "sub": "running", "result": "success", "restarts": "0"}
                        for u in ("airflow-worker.service", "playground-mlflow-forward.service",
                                  "playground-lineage.service")},
              "broker": {"ok": True, "state": "connected to 10.214.1.1:6379", "queue": "default", "waiting": 3},
              "running": {"ok": True, "tasks": ["etl.t01", "etl.t02", "etl.t03", "etl.t04", "etl.t05"]},
              "mlflow": {"ok": True, "reason": ""}, "disk": {"total_gb": 20.0, "used_pct": 31.5}}
    report.update(parts)
    return report


def test_a_worker_shows_its_queue_and_the_tasks_it_runs():
    rows = {s["name"]: s for s in status.services_from_report(worker_report())}
    said = rows["celery worker"]["reason"]
    assert "queue default (3 waiting)" in said and "runs 5: etl.t01, etl.t02, etl.t03 and 2 more" in said
    assert "database (main's)" not in rows
    idle = {s["name"]: s for s in status.services_from_report(worker_report(running={"ok": True, "tasks": []}))}
    assert "runs no task" in idle["celery worker"]["reason"]


def test_a_worker_that_cannot_reach_the_main_database_is_red_saying_why():
    lost = {"ok": False, "reason": "the main's database: connection refused", "tasks": []}
    rows = {s["name"]: s for s in status.services_from_report(worker_report(running=lost))}
    assert rows["database (main's)"]["level"] == "red" and "connection refused" in rows["database (main's)"]["reason"]
    assert "runs" not in rows["celery worker"]["reason"]
