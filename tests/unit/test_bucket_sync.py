"""The dags bucket synced where gcsfuse is absent: against gcp-storage-emulator (GCS's JSON API), reached
through STORAGE_EMULATOR_HOST as Google's libraries do. New and changed objects are fetched, unchanged ones
are not, deleted ones are removed, names that would land outside the DAG folder are refused, and a failed
round keeps what was synced and says why in the health report."""
from __future__ import annotations

import socket
import time
import urllib.parse
import urllib.request

import pytest
from gcp_storage_emulator.server import create_server
from playground_agent import bucket_sync, health, paths

BUCKET = "team-dags"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs(monkeypatch):
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    root = f"http://127.0.0.1:{port}"

    def put(name: str, data: bytes) -> None:
        url = f"{root}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}"
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, timeout=10).read()

    def delete(name: str) -> None:
        req = urllib.request.Request(f"{root}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}",
                                     method="DELETE")
        urllib.request.urlopen(req, timeout=10).read()

    yield put, delete
    server.stop()


def test_new_changed_and_deleted_objects_are_mirrored_and_nothing_else(gcs, tmp_path):
    put, delete = gcs
    put("dags/etl.py", b"# etl v1\n")
    put("dags/lib/helpers.py", b"X = 1\n")
    put("dags/sub/", b" ")  # a folder marker, as the console makes (the emulator refuses an empty body)
    put("data/raw.csv", b"a,b\n")  # outside dags/: not synced
    dest = tmp_path / "dags"
    first = bucket_sync.sync_once(BUCKET, str(dest), {})
    assert (dest / "etl.py").read_bytes() == b"# etl v1\n"
    assert (dest / "lib/helpers.py").read_bytes() == b"X = 1\n"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == \
        ["etl.py", "lib/helpers.py"]
    assert first["fetched"] == 2 and first["error"] == ""

    again = bucket_sync.sync_once(BUCKET, str(dest), first["objects"])
    assert again["fetched"] == 0, "unchanged objects are not fetched again"

    (dest / "__pycache__").mkdir()
    (dest / "__pycache__/etl.cpython-311.pyc").write_bytes(b"airflow's own")
    (dest / "local-note.txt").write_text("not from the bucket")
    put("dags/etl.py", b"# etl v2\n")
    delete("dags/lib/helpers.py")
    third = bucket_sync.sync_once(BUCKET, str(dest), again["objects"])
    assert (dest / "etl.py").read_bytes() == b"# etl v2\n"
    assert not (dest / "lib/helpers.py").exists()
    assert (third["fetched"], third["removed"]) == (1, 1)
    # Only what an earlier round fetched is ever removed.
    assert (dest / "__pycache__/etl.cpython-311.pyc").exists() and (dest / "local-note.txt").exists()


class WireGCS:
    """GCS's two calls as bytes on the wire, for what the emulator cannot hold (it stores objects as files,
    so it refuses a `..` name that real GCS accepts) and to see the headers sent."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[tuple[str, str]] = []
        wire = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                wire.seen.append((self.path, self.headers.get("Authorization")))
                path, _, query = self.path.partition("?")
                if "alt=media" in query:
                    body = objects[urllib.parse.unquote(path.rsplit("/o/", 1)[1])]
                else:
                    body = json.dumps({"items": [{"name": n, "generation": "7"} for n in objects]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("name", ["dags/../escape.py", "dags/a/../../escape.py", "dags//abs.py", "dags/./x.py"])
def test_an_object_name_that_would_leave_the_folder_is_refused_and_reported(tmp_path, monkeypatch, name):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # no token wanted
    wire = WireGCS({name: b"import os\n", "dags/ok.py": b"# fine\n"})
    try:
        dest = tmp_path / "mnt" / "dags"
        state = bucket_sync.sync_once(BUCKET, str(dest), {}, root=wire.root)
    finally:
        wire.close()
    assert state["refused"] == [name]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["mnt/dags/ok.py"]
    assert not any("escape" in path or "abs.py" in path for path, _ in wire.seen), "a refused object is not fetched"


def test_a_failed_round_keeps_the_files_and_health_says_why(gcs, tmp_path, monkeypatch):
    put, _ = gcs
    put("dags/etl.py", b"# etl\n")
    mount = tmp_path / "mnt"
    assert bucket_sync.run(BUCKET, str(mount), once=True, log=lambda s: None) == 0
    monkeypatch.setattr(paths, "BUCKET_MOUNT", str(mount))
    monkeypatch.setattr(paths, "GCSFUSE", str(tmp_path / "no-gcsfuse"))
    cfg = {"dags_bucket": BUCKET}
    ok = health.mount_state(cfg)
    assert ok["ok"] and ok["state"].startswith("synced 1 object(s)")

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    logged = []
    assert bucket_sync.run(BUCKET, str(mount), once=True, log=logged.append) == 1
    assert "GCS not reachable" in logged[0]
    assert (mount / "dags/etl.py").read_bytes() == b"# etl\n"
    failing = health.mount_state(cfg)
    assert not failing["ok"] and failing["state"].startswith("sync failing: GCS not reachable")

    stale = health.mount_state(cfg, now=time.time() + 3600)
    assert not stale["ok"]


def test_a_missing_bucket_is_named_with_the_status(gcs, tmp_path):
    with pytest.raises(bucket_sync.SyncError, match="GCS answered 404 .* no such bucket"):
        bucket_sync.sync_once("no-such-bucket", str(tmp_path / "dags"), {})


def test_without_the_emulator_the_instance_token_is_sent(monkeypatch, tmp_path):
    """On GCE: the bearer token from the metadata server goes with every call (checked on the wire)."""
    from playground.local import metadata_server
    from playground_agent.metadata import MetadataClient
    from support import metadata_doc, service_accounts

    wire = WireGCS({"dags/a.py": b"# a\n"})
    doc = metadata_doc()
    doc["instance"]["serviceAccounts"] = service_accounts("ya29.t")
    meta = metadata_server.serve(lambda: doc, "127.0.0.1", 0)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    try:
        client = MetadataClient(f"127.0.0.1:{meta.server_address[1]}", retries=1)
        bucket_sync.sync_once(BUCKET, str(tmp_path / "dags"), {}, client, root=wire.root)
    finally:
        wire.close()
        meta.shutdown()
    assert [auth for _, auth in wire.seen] == ["Bearer ya29.t", "Bearer ya29.t"]
    assert wire.seen[0][0].startswith(f"/storage/v1/b/{BUCKET}/o?prefix=dags%2F")
    assert (tmp_path / "dags/a.py").read_bytes() == b"# a\n"


def test_bucket_sync_without_a_bucket_ends_cleanly_and_says_so(monkeypatch, capsys):
    """dags-bucket removed: the unit's restart after the re-apply ends with 0, so Restart=on-failure rests."""
    from playground_agent import main

    monkeypatch.setenv("BUCKET", "")
    monkeypatch.setenv("MOUNT_POINT", "/mnt/playground-bucket")
    assert main.main(["bucket-sync", "--once"]) == 0
    assert "no dags-bucket set" in capsys.readouterr().err
