"""Day two on a booted image (issue 16): the daily retention round deletes task logs and Airflow's run
history older than retention-days and keeps the rest; the journal is capped; the health report says how full
the disk is and what fills it."""
from __future__ import annotations

import json

import pytest
from support import run_ok

pytestmark = pytest.mark.image


def psql(host, sql: str) -> str:
    return run_ok(host, f"runuser -u airflow -- psql -qtAX -d airflow -c \"{sql}\"").strip()


def airflow_version(host) -> tuple:
    doc = json.loads(run_ok(host, "cat /etc/playground/image-manifest.json"))
    return tuple(int(x) for x in doc["components"]["airflow"].split(".")[:2])


def test_retention_deletes_what_is_older_than_its_days_and_keeps_the_rest(host):
    assert run_ok(host, "systemctl is-active playground-retention.timer").strip() == "active"
    old, new = "/var/log/airflow/dag_id=pg_old/run_id=r/task_id=t/attempt=1.log", "/var/log/airflow/pg_recent.log"
    run_ok(host, f"runuser -u airflow -- mkdir -p $(dirname {old}) && runuser -u airflow -- sh -c "
                 f"'echo old > {old} && touch -d \"40 days ago\" {old} && echo new > {new}'")
    # Airflow's audit log table has a time column in every 2.x: one row past the default 30 days, one now.
    psql(host, "DELETE FROM log WHERE event LIKE 'pg-retention-%'")
    psql(host, "INSERT INTO log (dttm, event) VALUES (now() - interval '60 days', 'pg-retention-old'), "
               "(now(), 'pg-retention-new')")
    runs_before = psql(host, "SELECT count(*) FROM dag_run")
    run_ok(host, "systemctl start playground-retention.service")
    result = json.loads(run_ok(host, "cat /var/lib/playground/retention.json"))
    assert result["error"] == "" and result["days"] == 30 and result["logs"]["files"] >= 1
    assert not host.file("/var/log/airflow/dag_id=pg_old").exists  # the file and its folders
    assert host.file(new).exists
    assert psql(host, "SELECT count(*) FROM dag_run") == runs_before  # every recent run is still there
    events = psql(host, "SELECT event FROM log WHERE event LIKE 'pg-retention-%' ORDER BY 1").split()
    if airflow_version(host) >= (2, 3):
        assert result["db"].startswith("cleaned before ")
        assert events == ["pg-retention-new"]
        if airflow_version(host) >= (2, 6):  # --skip-archive: no copies of the purged rows keep the space
            assert psql(host, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '_airflow_deleted%'") == "0"
    else:  # 2.0-2.2 have no db clean: the rows stay, and the report says why
        assert "has no db clean" in result["db"]
        assert events == ["pg-retention-new", "pg-retention-old"]
    psql(host, "DELETE FROM log WHERE event LIKE 'pg-retention-%'")
    run_ok(host, f"rm -f {new}")


def test_journal_is_capped(host):
    """journald says its own limits when it starts: ours, not 10% of the disk."""
    lines = run_ok(host, "journalctl -b -u systemd-journald -o cat --no-pager")
    assert "max 500.0M" in lines or "max 100.0M" in lines, lines[-800:]
    assert "SystemMaxUse=500M" in run_ok(host, "cat /etc/systemd/journald.conf.d/playground.conf")


def test_health_report_says_how_full_the_disk_is_and_what_fills_it(host):
    disk = json.loads(run_ok(host, "playground-agent status --json"))["disk"]
    assert disk["level"] in ("green", "amber", "red") and 0 < disk["used_pct"] <= 100
    labels = [u["label"] for u in disk["uses"]]
    assert "postgresql" in labels and "airflow logs" in labels
    sizes = [u["bytes"] for u in disk["uses"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[labels.index("postgresql")] > 10 * 2**20
