"""`playground backup` and `playground restore`: the agent's tar stream (playground_agent/backup.py) over
SSH, into a file of this machine or out of one. Nothing half-written is left: the file is written as
NAME.part and renamed once the agent has said it is complete; a restore that fails on the machine changes
nothing there (the agent restores under temporary names first).

The file holds the machine's Fernet key: it is made 0600, in a folder the user chose.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from . import remote
from .errors import PlaygroundError

Report = Callable[[str], None]
CHUNK = 1 << 20


@dataclass
class BackupDone:
    path: Union[Path, str]  # a file here, or its gs:// URL
    size: int
    seconds: float
    manifest: dict


def _channel(conn, command: str):
    conn.open()
    transport = conn.client.get_transport()
    chan = transport.open_session()
    chan.exec_command(command)
    return chan


def _agent_line(err: str, what: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("MANIFEST ")]
    if any("command not found" in line or "invalid choice" in line for line in lines):
        return f"{what}: this machine's agent has no {what} (an image from before backups): upgrade its image"
    return lines[-1].removeprefix("playground-agent: ").removeprefix(f"{what}: ") if lines \
        else f"{what} failed on the machine"


def backup(target, dest_dir: Path, report: Report) -> BackupDone:
    """The machine at target backed up into dest_dir/NAME-YYYYmmdd-HHMMSS.tar."""
    if not dest_dir.is_dir():
        raise PlaygroundError(f"--to: {dest_dir} is not a folder")
    if not os.access(dest_dir, os.W_OK):
        raise PlaygroundError(f"--to: {dest_dir} is not writable")
    path = dest_dir / f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}.tar"
    part = path.with_name(path.name + ".part")
    started = time.monotonic()
    conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
    size = 0
    err = b""
    try:
        with remote.one_line_errors(target):
            chan = _channel(conn, "sudo -n playground-agent backup")
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while True:
                    data = chan.recv(CHUNK)
                    if not data:
                        break
                    out.write(data)
                    size += len(data)
                    report(f"backing up {target.name}: {size / 2**20:.1f} MiB")
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(CHUNK)
                out.flush()
                os.fsync(out.fileno())
            code = chan.recv_exit_status()
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(CHUNK)
        text = err.decode("utf-8", "replace")
        manifest_lines = [line for line in text.splitlines() if line.startswith("MANIFEST ")]
        if code != 0 or not manifest_lines:
            raise PlaygroundError(f"backup of {target.name}: " + _agent_line(text, "backup"))
        manifest = json.loads(manifest_lines[-1][len("MANIFEST "):])
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
        conn.close()
    return BackupDone(path, size, round(time.monotonic() - started, 1), manifest)


def restore(target, src: Path, replace: bool, report: Report) -> dict:
    """src streamed to the machine's agent; its JSON answer (the counts found and expected)."""
    if not src.is_file():
        raise PlaygroundError(f"--from: {src} is not a file")
    total = src.stat().st_size
    conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
    out = err = b""
    try:
        with remote.one_line_errors(target):
            chan = _channel(conn, "sudo -n playground-agent restore" + (" --replace" if replace else ""))
            sent = 0
            with open(src, "rb") as fh:
                while True:
                    data = fh.read(CHUNK)
                    if not data:
                        break
                    try:
                        chan.sendall(data)
                    except OSError:
                        break  # the agent refused and closed its input: its line says why
                    sent += len(data)
                    report(f"sending {src.name} to {target.name}: {sent * 100 // max(total, 1)}%")
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(CHUNK)
            chan.shutdown_write()
            report(f"restoring on {target.name}")
            while not chan.exit_status_ready() or chan.recv_ready() or chan.recv_stderr_ready():
                if chan.recv_ready():
                    out += chan.recv(CHUNK)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(CHUNK)
                    lines = err.decode("utf-8", "replace").strip().splitlines()
                    if lines:
                        report(lines[-1].removeprefix("playground-agent: "))
                else:
                    time.sleep(0.1)
            code = chan.recv_exit_status()
    finally:
        conn.close()
    text = err.decode("utf-8", "replace")
    try:
        result = json.loads(out.decode("utf-8", "replace"))
    except ValueError:
        result = None
    if code != 0 and not (isinstance(result, dict) and "found" in result):
        raise PlaygroundError(f"restore onto {target.name}: " + _agent_line(text, "restore"))
    if not isinstance(result, dict):
        raise PlaygroundError(f"restore onto {target.name}: the agent's answer is not JSON")
    return result


def counts_rows(expected: dict, found: dict | None = None) -> list[tuple[str, str, str]]:
    """(database, what, count[, found]) rows for a table, in a fixed order."""
    rows = []
    for db in sorted(expected):
        for what in sorted(expected[db]):
            got = "" if found is None else str((found.get(db) or {}).get(what, "-"))
            rows.append((f"{db}.{what}", str(expected[db][what]), got))
    return rows


# --- gs://BUCKET/PREFIX: the same file, kept in Cloud Storage ---
# Bucket names: 3-63 of a-z 0-9 . _ -, beginning and ending with a letter or digit
# (https://cloud.google.com/storage/docs/buckets#naming).
GS_RE = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,61}[a-z0-9])(/[^\s]*)?$")


def gs_location(url: str, flag: str) -> Optional[tuple[str, str]]:
    """(bucket, object prefix or name) of a gs:// URL; None for a path of this machine."""
    if not url.startswith("gs://"):
        return None
    match = GS_RE.match(url)
    if not match:
        raise PlaygroundError(f"{flag}: expected gs://BUCKET[/PREFIX] (a bucket name of 3-63 of a-z 0-9 . _ -), "
                              f"got {url!r}")
    return match.group(1), (match.group(2) or "").strip("/")


def _gs_error(exc: Exception, flag: str, url: str) -> PlaygroundError:
    from google.api_core import exceptions as gex

    msg = (getattr(exc, "message", None) or str(exc)).strip()
    if isinstance(exc, gex.NotFound):
        return PlaygroundError(f"{flag}: {url}: not found (a bucket is made with `gcloud storage buckets create "
                               "gs://BUCKET --uniform-bucket-level-access --public-access-prevention`)")
    if isinstance(exc, gex.Forbidden):
        return PlaygroundError(f"{flag}: {url}: permission denied: {msg} (needs roles/storage.objectAdmin on the "
                               "bucket, or storage.objects.create and .get)")
    if isinstance(exc, gex.PreconditionFailed):
        return PlaygroundError(f"{flag}: {url} exists already: a backup is never overwritten")
    return PlaygroundError(f"{flag}: {url}: Cloud Storage error: {msg}")


def _bucket(bucket: str, project: Optional[str], flag: str):
    """The bucket, looked up before any work (a missing one is one line, nothing made)."""
    from google.api_core import exceptions as gex

    from .gce.google import network_errors, storage_client, unreachable

    try:
        return storage_client(project).get_bucket(bucket)
    except gex.GoogleAPICallError as exc:
        raise _gs_error(exc, flag, f"gs://{bucket}") from exc
    except network_errors() as exc:
        raise unreachable("storage", exc) from exc


def backup_to_gs(target, url: str, project: Optional[str], report: Report) -> BackupDone:
    """The machine backed up into a private temporary folder, then uploaded to gs://BUCKET/PREFIX/NAME-...tar
    (never over an object there: if_generation_match=0); the temporary file is removed either way."""
    import tempfile

    from google.api_core import exceptions as gex

    from .gce.google import network_errors, unreachable

    bucket_name, prefix = gs_location(url, "--to")
    bucket = _bucket(bucket_name, project, "--to")
    with tempfile.TemporaryDirectory(prefix="playground-backup-") as folder:  # 0700
        done = backup(target, Path(folder), report)
        name = (prefix + "/" if prefix else "") + done.path.name
        dest = f"gs://{bucket_name}/{name}"
        blob = bucket.blob(name, chunk_size=8 * CHUNK)
        try:
            with open(done.path, "rb") as fh:
                from .image.push import _Reading

                blob.upload_from_file(_Reading(fh, done.size, report), size=done.size,
                                      content_type="application/x-tar", if_generation_match=0)
        except gex.GoogleAPICallError as exc:
            raise _gs_error(exc, "--to", dest) from exc
        except network_errors() as exc:
            raise unreachable("storage", exc) from exc
    return BackupDone(dest, done.size, done.seconds, done.manifest)


def download_from_gs(url: str, folder: Path, project: Optional[str], report: Report) -> Path:
    """gs://BUCKET/NAME into folder, for restore."""
    from google.api_core import exceptions as gex

    from .gce.google import network_errors, unreachable

    bucket_name, name = gs_location(url, "--from")
    if not name or name.endswith("/"):
        raise PlaygroundError(f"--from: {url}: expected the backup object, gs://BUCKET/PATH/NAME.tar")
    dest = folder / name.rsplit("/", 1)[-1]
    report(f"downloading {url}")
    try:
        _bucket(bucket_name, project, "--from").blob(name).download_to_filename(str(dest))
    except gex.GoogleAPICallError as exc:
        dest.unlink(missing_ok=True)
        raise _gs_error(exc, "--from", url) from exc
    except network_errors() as exc:
        dest.unlink(missing_ok=True)
        raise unreachable("storage", exc) from exc
    return dest
