"""Retention (issue 16): old task logs go, recent ones stay; `airflow db clean` asked as each version has it."""
from __future__ import annotations

import json
import os
import time

import pytest
from playground_agent import retention, versions
from playground_agent.commands import CommandError

DAY = 86400


def aged(path, days: float, now: float, size: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - days * DAY, now - days * DAY))


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setattr(retention, "LOG_FOLDER", str(tmp_path / "log"))
    monkeypatch.setattr(retention, "STATE_FILE", str(tmp_path / "retention.json"))
    monkeypatch.setattr(retention, "airflow_run_env", lambda: {})
    (tmp_path / "log").mkdir()
    return tmp_path


def test_logs_older_than_the_cut_go_with_their_empty_folders(machine):
    now = time.time()
    log = machine / "log"
    aged(log / "dag_id=a/run_id=old/task_id=t/attempt=1.log", 40, now, 100)
    aged(log / "dag_id=a/run_id=new/task_id=t/attempt=1.log", 2, now, 7)
    aged(log / "scheduler/2026-01-01/a.py.log", 31, now, 5)
    outside = machine / "keep.log"
    aged(outside, 400, now)
    os.symlink(outside, log / "link.log")  # a link is not followed, nor removed
    os.utime(log / "link.log", (now - 400 * DAY, now - 400 * DAY), follow_symlinks=False)
    assert retention.prune_logs(str(log), now - 30 * DAY) == {"files": 2, "bytes": 105}
    assert not (log / "dag_id=a/run_id=old").exists() and not (log / "scheduler").exists()
    assert (log / "dag_id=a/run_id=new/task_id=t/attempt=1.log").exists()
    assert outside.exists() and os.path.islink(log / "link.log") and log.is_dir()


def test_db_clean_is_asked_as_each_version_has_it():
    cut = 1_700_000_000.0
    assert retention.db_clean_args(versions.Airflow("2.0.2"), cut) is None
    assert retention.db_clean_args(versions.Airflow("2.5.3"), cut) == [
        "db", "clean", "--clean-before-timestamp", "2023-11-14T22:13:20+00:00", "--yes"]
    assert retention.db_clean_args(versions.Airflow("2.11.2"), cut)[-1] == "--skip-archive"


def test_a_failing_db_clean_is_recorded_and_the_logs_still_pruned(machine):
    now = time.time()
    aged(machine / "log/old.log", 10, now)
    calls = []

    def failing(cmd, **kw):
        calls.append(cmd)
        raise CommandError("airflow db clean failed (exit 1): OperationalError: the database is gone")

    result = retention.run(7, now=now, airflow=versions.Airflow("2.11.2"), runner=failing)
    assert calls[0][:5] == ["runuser", "-u", "airflow", "--", "/opt/airflow/bin/airflow"]
    assert result["logs"]["files"] == 1 and "database is gone" in result["error"]
    assert json.loads((machine / "retention.json").read_text()) == result
    old = retention.run(7, now=now, airflow=versions.Airflow("2.0.2"), runner=failing)
    assert old["error"] == "" and "has no db clean" in old["db"] and len(calls) == 1
