"""The agent's lineage health: what waits in the spool, for how long, and what was set aside."""
from __future__ import annotations

import time

import pytest
from playground_agent import health, paths, resources

ACTIVE = {"active": "active"}


@pytest.fixture
def spool(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "LINEAGE_SPOOL", str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    return tmp_path / "spool"


def spooled(spool, seconds_ago: float, now: float) -> None:
    """An event named as playground_lineage.spool.put names them."""
    (spool / ("%020d-%s.json" % (int((now - seconds_ago) * 1e9), "e%d" % seconds_ago))).write_text("{}")


def test_empty_spool_is_all_delivered(spool):
    (spool / ".lock").write_text("")
    assert health.lineage_state({"lineage": "on"}, ACTIVE) == {"ok": True, "state": "all delivered", "waiting": 0,
                                                               "oldest_s": None, "set_aside": 0}
    assert health.lineage_state({"lineage": "off"}, ACTIVE)["state"] == "off (attribute lineage)"


def test_waiting_events_are_fine_until_late(spool):
    now = time.time()
    spooled(spool, 5, now)
    spooled(spool, 20, now)
    (spool / ".tmp-event.json.tmp").write_text("{}")  # being written: not counted
    state = health.lineage_state({}, ACTIVE, now=now)
    assert state["ok"] and state["waiting"] == 2 and state["oldest_s"] == pytest.approx(20, abs=0.2)
    assert state["state"] == "2 waiting for MLflow, oldest 20 s"
    spooled(spool, health.LINEAGE_LATE_S + 1, now)
    assert not health.lineage_state({}, ACTIVE, now=now)["ok"]


def test_set_aside_events_and_a_stopped_service_are_not_ok(spool):
    assert not health.lineage_state({}, {"active": "inactive"})["ok"]
    (spool / "00000000000000000001-x.json.failed").write_text("{}")
    (spool / "00000000000000000001-x.json.reason").write_text("HTTPError: 400\n")
    state = health.lineage_state({}, ACTIVE)
    assert not state["ok"] and state["set_aside"] == 1
    assert state["state"] == f"1 set aside in {spool} (never delivered: *.failed with a .reason, *.bad unreadable)"
    (spool / "00000000000000000002-y.json.bad").write_text("{")
    assert health.lineage_state({}, ACTIVE)["set_aside"] == 2


def test_no_spool_yet(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "LINEAGE_SPOOL", str(tmp_path / "none"))
    assert health.lineage_state({}, ACTIVE)["state"] == "all delivered"


def test_postgresql_is_ok_only_while_the_postmaster_accepts_on_its_socket(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(paths, "ROOT", str(tmp_path))
    (tmp_path / "etc/postgresql/15/main").mkdir(parents=True)
    (tmp_path / "etc/postgresql/15/main/postgresql.conf").write_text("")
    (tmp_path / "etc/postgresql/16/main").mkdir(parents=True)  # a version with no cluster config: not one
    assert health.postgres_clusters() == ["postgresql@15-main.service"]
    assert health.postgres_state(ACTIVE) == {
        "ok": False, "state": "postmaster not accepting on " + health.PG_SOCKET,
        "reason": "postgresql: postmaster not accepting on " + health.PG_SOCKET}
    sock_path = tmp_path / health.PG_SOCKET.lstrip("/")
    sock_path.parent.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen()
    try:
        assert health.postgres_state(ACTIVE)["ok"]
        assert health.postgres_state({"active": "failed"})["state"] == "cluster unit failed"
    finally:
        listener.close()


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A machine's folders under tmp_path (paths.p prefixes ROOT), the cache in its own /run."""
    monkeypatch.setattr(paths, "ROOT", str(tmp_path))
    monkeypatch.setattr(paths, "RUN_DIR", str(tmp_path / "run/playground"))
    return tmp_path


def test_disk_levels_follow_dfs_use_percent():
    assert [resources.disk_level(p) for p in (0, 79.9, 80, 94.9, 95, 100)] == \
        ["green", "green", "amber", "amber", "red", "red"]


def test_disk_reports_what_uses_the_space_largest_first_and_caches_it(root):
    logs = root / "var/log/airflow/dag_id=x"
    logs.mkdir(parents=True)
    (logs / "attempt=1.log").write_bytes(b"x" * 300_000)
    (root / "var/lib/postgresql").mkdir(parents=True)
    (root / "var/lib/postgresql/base").write_bytes(b"y" * 100_000)
    report = resources.disk()
    assert report["level"] == resources.disk_level(report["used_pct"]) and report["free_gb"] >= 0
    labels = [u["label"] for u in report["uses"]]
    assert labels == ["airflow logs", "postgresql"]  # folders that do not exist are not listed
    assert report["uses"][0]["bytes"] >= 300_000 and report["uses"][1]["bytes"] >= 100_000
    (logs / "attempt=2.log").write_bytes(b"x" * 1_000_000)
    assert resources.disk()["uses"] == report["uses"]  # cached: du walks the logs at most every DISK_USES_TTL_S
    later = resources.disk_uses(now=time.time() + resources.DISK_USES_TTL_S + 1)
    assert later[0]["bytes"] >= 1_300_000
