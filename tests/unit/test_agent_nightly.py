"""The nightly backup (attributes backup-to, backup-at, backup-keep) against gcp-storage-emulator, GCS's JSON
API reached through STORAGE_EMULATOR_HOST: the machine's backup file lands as NAME-nightly-<UTC time>.tar,
the nightly backups beyond backup-keep go, oldest first, and nothing else in the bucket is ever touched; a
failure is recorded (amber in status) with nothing left staged."""
from __future__ import annotations

import io
import json
import tarfile
import urllib.request

import pytest
from gcp_storage_emulator.server import create_server
from playground.gce import schedule_spec
from playground.status import backup_row
from playground_agent import backup, health, nightly, paths, render, schema
from test_bucket_sync import free_port

BUCKET = "team-backups"
DAY = 86400.0
T0 = 1796400000.0  # 2026-12-04 16:00:00 UTC


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    root = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", root)
    monkeypatch.setattr(paths, "NIGHTLY_STATE", str(tmp_path / "backup-nightly.json"))
    stage = tmp_path / "stage"
    stage.mkdir()
    monkeypatch.setattr(backup, "STAGING_DIR", str(stage))

    def names() -> list[str]:
        with urllib.request.urlopen(f"{root}/storage/v1/b/{BUCKET}/o", timeout=10) as resp:
            return sorted(i["name"] for i in json.load(resp).get("items") or [])

    def get(name: str) -> bytes:
        url = f"{root}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}?alt=media"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read()

    yield names, get, stage
    server.stop()


def fake_backup(out) -> dict:
    """What backup.backup() does to its file, in small: a tar with a manifest."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        data = b'{"format": 1}'
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return {"databases": {"airflow": {"counts": {"dag_runs": 3}}}}


CFG = {"instance_name": "pg-team", "backup_to": f"gs://{BUCKET}/nightly", "backup_keep": 2}


def test_a_nightly_backup_lands_in_the_bucket_and_only_the_oldest_nightly_ones_beyond_keep_go(gcs, monkeypatch):
    names, get, stage = gcs
    monkeypatch.setattr(backup, "backup", fake_backup)
    other = ["nightly/pg-team-20261201-000000.tar",  # `playground backup --to gs://` file: never pruned
             "nightly/pg-other-nightly-20261101-204500.tar",  # another machine's
             "nightly/pg-team-nightly-notes.txt", "elsewhere/pg-team-nightly-20261101-204500.tar"]
    for name in other:
        req = urllib.request.Request(
            f"{nightly.gcs.endpoint()}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}",
            data=b"x", method="POST", headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, timeout=10).read()
    states = [nightly.run(CFG, now=T0 + i * DAY) for i in range(3)]
    assert [s["state"] for s in states] == ["ok", "ok", "ok"]
    assert states[0]["object"] == f"gs://{BUCKET}/nightly/pg-team-nightly-20261204-160000.tar"
    assert states[2]["pruned"] == ["nightly/pg-team-nightly-20261204-160000.tar"] and not states[1]["pruned"]
    assert names() == sorted(other + ["nightly/pg-team-nightly-20261205-160000.tar",
                                      "nightly/pg-team-nightly-20261206-160000.tar"])
    with tarfile.open(fileobj=io.BytesIO(get("nightly/pg-team-nightly-20261206-160000.tar"))) as tar:
        assert tar.getnames() == ["manifest.json"]
    assert states[2]["counts"] == {"airflow": {"dag_runs": 3}} and states[2]["bytes"] > 0
    assert list(stage.iterdir()) == []  # the staged file (it holds the Fernet key) is gone
    assert json.loads(open(paths.NIGHTLY_STATE).read()) == states[2]
    row = backup_row(health.backup_summary(dict(CFG, backup_at="Mon..Fri *-*-* 20:45:00 Europe/London")))
    assert row["level"] == "green" and "last 2026-12-06T16:00:00Z" in row["reason"]


def test_a_missing_bucket_is_recorded_and_amber_with_what_to_do(gcs, monkeypatch):
    names, _, stage = gcs
    monkeypatch.setattr(backup, "backup", fake_backup)
    state = nightly.run(dict(CFG, backup_to="gs://no-such-bucket/x"), now=T0)
    assert state["state"] == "error" and "404" in state["error"] and "no such bucket" in state["error"]
    assert list(stage.iterdir()) == []
    row = backup_row(health.backup_summary(dict(CFG, backup_to="gs://no-such-bucket/x",
                                                backup_at="*-*-* 20:45:00 UTC")))
    assert row["level"] == "amber" and "failing: GCS answered 404" in row["reason"]


def test_a_failed_dump_uploads_nothing_and_exits_1(gcs, monkeypatch, capsys):
    names, _, stage = gcs

    def broken(out):
        out.write(b"partial")
        raise backup.BackupError("pg_dump airflow: connection refused")

    monkeypatch.setattr(backup, "backup", broken)
    monkeypatch.setattr(nightly, "read_json", lambda path: CFG if path.endswith("config.json") else None)
    assert nightly.main() == 1
    assert "failed: pg_dump airflow: connection refused" in capsys.readouterr().err
    assert names() == [] and list(stage.iterdir()) == []


def test_without_backup_to_nothing_runs():
    assert health.backup_summary({"backup_to": ""}) is None


def test_the_timer_follows_backup_at_and_is_wanted_only_with_backup_to():
    from playground_agent.config import Config
    from playground_agent.versions import Airflow

    cfg = Config(instance_id="1", instance_name="n", project_id="p", zone="z", region="r")
    files = render.render(cfg, cpus=2, airflow=Airflow("2.11.2"), slow=False)
    timer = [v.content for k, v in files.items() if k.endswith("playground-backup.timer.d/10-agent.conf")][0]
    assert "OnCalendar=\nOnCalendar=*-*-* 20:45:00 UTC\n" in timer
    assert "playground-backup.timer" not in files[[k for k in files if "playground.target.d" in k][0]].content
    cfg.backup_to, cfg.backup_at = "gs://b/p", "Mon..Fri *-*-* 20:45:00 Europe/London"
    files = render.render(cfg, cpus=2, airflow=Airflow("2.11.2"), slow=False)
    assert "Wants=playground-backup.timer" in files[[k for k in files if "playground.target.d" in k][0]].content
    assert "OnCalendar=Mon..Fri *-*-* 20:45:00 Europe/London" in \
        [v.content for k, v in files.items() if k.endswith("10-agent.conf") and "backup" in k][0]


@pytest.mark.parametrize("stop,days,at", [
    ("21:00", "mon-fri", "mon,tue,wed,thu,fri 20:45 Europe/London"),
    ("00:05", "mon-fri", "sun,mon,tue,wed,thu 23:50 Europe/London"),  # the evening before
    ("19:30", "daily", "daily 19:15 Europe/London"),
])
def test_schedule_puts_the_backup_15_minutes_before_the_stop(stop, days, at):
    spec = schedule_spec.make_spec(stop, None, days, "Europe/London")
    attrs = schedule_spec.backup_attributes(spec, "gs://team-backups/pg", 5)
    assert attrs == {"backup-to": "gs://team-backups/pg", "backup-at": at, "backup-keep": "5"}
    ctx = schema.Context(known_zone=lambda z: True)
    assert schema.parse_value("backup-at", at, ctx).endswith(":00 Europe/London")
    assert schedule_spec.backup_attributes(spec, "off", None) == {"backup-to": ""}


@pytest.mark.parametrize("to,keep,said", [
    ("team-backups", None, "--backup-to: expected gs://BUCKET[/PREFIX]"),
    ("gs://Bad_Bucket!", None, "--backup-to: expected a GCS bucket name"),
    ("gs://team-backups", 0, "--backup-keep: expected an integer from 1 to 365"),
])
def test_a_bad_backup_flag_is_one_line(to, keep, said):
    from playground.errors import PlaygroundError

    with pytest.raises(PlaygroundError, match=said.replace("[", r"\[").replace("]", r"\]")):
        schedule_spec.backup_attributes(schedule_spec.make_spec("21:00", None, "mon-fri", "UTC"), to, keep)
