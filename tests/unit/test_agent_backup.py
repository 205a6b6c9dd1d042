"""The backup stream's reader (issue 16): the manifest is checked before anything is extracted, a member
that would land outside the staging folder is refused, a cut stream is found out, and a backup of a newer
Airflow or PostgreSQL is a downgrade, refused. The database work itself runs on real instances
(tests/image/test_backup.py)."""
from __future__ import annotations

import io
import json
import tarfile

import pytest
from playground_agent import backup, restore

HERE = {"airflow": "2.11.2", "postgresql": 15, "mlflow": "3.17.2", "image": {}}


def manifest(**versions) -> dict:
    return {"format": backup.FORMAT, "versions": dict(HERE, **versions), "databases": {"airflow": {"counts": {}}},
            "artifacts": {"files": 1, "bytes": 5}}


def stream(members: list[tuple[str, bytes]], kinds: dict | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            kind = (kinds or {}).get(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def good(doc: dict | None = None) -> list[tuple[str, bytes]]:
    return [("manifest.json", json.dumps(doc or manifest()).encode()), ("secrets/fernet-key", b"k"),
            ("db/airflow.dump", b"PGDMP"), ("artifacts/1/r/artifacts/a.txt", b"hello")]


def ended(doc: dict | None = None, files: int = 1) -> list[tuple[str, bytes]]:
    """A stream as backup() writes it now: the manifest names its end, and the end what was copied."""
    doc = dict(doc or manifest(), end=backup.END)
    return good(doc) + [(backup.END, json.dumps({"artifacts": {"files": files, "bytes": 5}}).encode())]


@pytest.fixture(autouse=True)
def this_machine(monkeypatch):
    for module in (backup, restore):  # what the backup records and what the restore compares it with
        monkeypatch.setattr(module, "image_versions", lambda: dict(HERE))


def test_a_whole_backup_is_staged_with_its_manifest(tmp_path):
    got = restore.extract(stream(good()), str(tmp_path))
    assert got["versions"]["airflow"] == "2.11.2"
    assert (tmp_path / "artifacts/1/r/artifacts/a.txt").read_bytes() == b"hello"
    assert (tmp_path / "db/airflow.dump").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("members,kinds,said", [
    ([("db/airflow.dump", b"x"), ("manifest.json", b"{}")], None, "does not begin with manifest.json"),
    ([("manifest.json", b"not json")], None, "expected a playground backup of format"),
    ([("manifest.json", json.dumps({"format": 99}).encode())], None, "expected a playground backup of format"),
    (good() + [("../../etc/cron.d/x", b"boom")], None, "not a plain file under its own folder"),
    (good() + [("/etc/passwd", b"boom")], None, "not a plain file under its own folder"),
    (good() + [("artifacts/link", b"")], {"artifacts/link": "symlink"}, "not a plain file under its own folder"),
    (good()[:2], None, "lacks db/airflow.dump"),
    (good()[:3], None, "has 0 of the 1 artifact files"),
    (ended()[:-1], None, "lacks its last member end.json: truncated"),
    (ended()[:-2] + ended()[-1:], None, "has 0 of the 1 artifact files"),
    (ended(files=2), None, "has 1 of the 2 artifact files"),
    (good(dict(manifest(), end=backup.END)) + [(backup.END, b"[")], None, "not the JSON a backup ends with"),
])
def test_a_bad_stream_is_one_error_naming_what_is_wrong(tmp_path, members, kinds, said):
    with pytest.raises(backup.BackupError, match=said.replace("(", r"\(")):
        restore.extract(stream(members, kinds), str(tmp_path))
    assert not (tmp_path.parent / "etc").exists()


def test_a_cut_stream_and_no_tar_at_all_are_refused(tmp_path):
    whole = stream(good()).getvalue()
    # Cut inside a member's header, inside its data, and nothing after the manifest.
    for data in (whole[:2048 + 100], whole[:3072 + 600], whole[:1024], b"not a tar" * 200, b""):
        with pytest.raises(backup.BackupError, match="truncated|not a readable tar|empty"):
            restore.extract(io.BytesIO(data), str(tmp_path / str(len(data))))


@pytest.mark.parametrize("versions,said", [
    ({"airflow": "2.12.0"}, "Airflow 2.12.0 and this machine runs 2.11.2: a downgrade is refused"),
    ({"postgresql": 16}, "PostgreSQL 16 and this machine runs 15: a downgrade is refused"),
    ({"airflow": "banana"}, "versions.airflow and versions.postgresql expected"),
])
def test_a_newer_backup_is_a_downgrade_refused_before_anything_is_extracted(tmp_path, versions, said):
    with pytest.raises(backup.BackupError, match=said):
        restore.extract(stream(good(manifest(**versions))), str(tmp_path))
    assert not (tmp_path / "db").exists()


def test_an_older_backup_is_restorable():
    restore.check_versions(manifest(airflow="2.0.2", postgresql=13))


def test_an_ended_stream_counts_the_artifacts_its_end_names(tmp_path):
    got = restore.extract(stream(ended()), str(tmp_path))
    assert got["end"] == backup.END and not (tmp_path / backup.END).exists()


def test_an_artifact_written_while_the_backup_runs_is_in_it_and_the_restore_accepts_it(tmp_path, monkeypatch):
    """MLflow (the lineage service) may log an artifact after the manifest counted them: the stream holds
    it, its end says so, and reading it back is not taken for a cut stream (found by test_backup)."""
    artifacts = tmp_path / "artifacts"
    (artifacts / "1/r").mkdir(parents=True)
    (artifacts / "1/r/first.txt").write_text("one")
    monkeypatch.setattr(backup, "STAGING_DIR", str(tmp_path))
    monkeypatch.setattr(backup, "machine_config", lambda: {"artifacts_root": str(artifacts)})
    monkeypatch.setattr(backup, "databases", lambda cfg: {})
    monkeypatch.setattr(backup, "_fernet_key", lambda: "key")
    add_bytes = backup._add_bytes

    def then_mlflow_writes(tar, name, data):
        add_bytes(tar, name, data)
        if name == "manifest.json":
            (artifacts / "1/r/second.txt").write_text("two")

    monkeypatch.setattr(backup, "_add_bytes", then_mlflow_writes)
    out = io.BytesIO()
    done = backup.backup(out)
    assert done["artifacts"]["files"] == 2
    out.seek(0)
    stage = tmp_path / "stage"
    stage.mkdir()
    got = restore.extract(out, str(stage))
    assert got["artifacts"]["files"] == 1  # what the manifest saw; the end counts the second
    assert sorted(p.name for p in (stage / "artifacts/1/r").iterdir()) == ["first.txt", "second.txt"]
