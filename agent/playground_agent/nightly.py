"""The nightly backup (attributes backup-to, backup-at, backup-keep): `playground backup`'s file, made on the
machine and uploaded to gs://BUCKET[/PREFIX] as NAME-nightly-YYYYmmdd-HHMMSS.tar, then the nightly backups
beyond backup-keep deleted, oldest first. playground-backup.timer runs it at backup-at, which `playground
schedule --backup-to` puts 15 minutes before the nightly stop; a machine that was off then runs it at its
next start (the timer's Persistent=).

The file holds the Fernet key: it is staged 0600 in a private folder and removed either way; the bucket's
readers are the machine's. Only objects named NAME-nightly-<timestamp>.tar under the prefix are ever
deleted: `playground backup --to gs://` files (NAME-<timestamp>.tar) and anything else stay.

On GCE the VM's service account needs roles/storage.objectCreator on the bucket to write and
roles/storage.objectAdmin to list and delete old ones (objectCreator alone cannot delete:
https://cloud.google.com/storage/docs/access-control/iam-roles); the VM's cloud-platform scope covers both.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from . import backup, gcs, paths
from .files import read_json, write_atomic

STAMP = "%Y%m%d-%H%M%S"
WRITE_HINTS = {403: "the instance's service account needs roles/storage.objectCreator on the bucket",
               404: "no such bucket: create it (gcloud storage buckets create gs://BUCKET "
                    "--uniform-bucket-level-access --public-access-prevention)",
               412: "an object of that name is there already; never overwritten"}
PRUNE_HINTS = {403: "the instance's service account needs roles/storage.objectAdmin on the bucket to delete "
                    "old nightly backups", 404: "no such bucket"}


def log(msg: str) -> None:
    print("playground-agent: backup: " + msg, file=sys.stderr, flush=True)


def location(url: str) -> Tuple[str, str]:
    """gs://BUCKET[/PREFIX] (validated by the schema) -> (bucket, prefix with a trailing / or "")."""
    bucket, _, prefix = url[len("gs://"):].strip("/").partition("/")
    return bucket, prefix + "/" if prefix else ""


def object_name(prefix: str, instance: str, when: float) -> str:
    return "%s%s-nightly-%s.tar" % (prefix, instance, time.strftime(STAMP, time.gmtime(when)))


def to_prune(names: List[str], prefix: str, instance: str, keep: int) -> List[str]:
    """Of the names in the bucket, this machine's nightly backups beyond the newest `keep`, oldest first."""
    mine = re.compile(r"^%s%s-nightly-[0-9]{8}-[0-9]{6}\.tar$" % (re.escape(prefix), re.escape(instance)))
    nightly = sorted(n for n in names if mine.match(n))  # the timestamp sorts as the name does
    return nightly[:-keep] if len(nightly) > keep else []


def run(cfg: Dict[str, Any], now: Optional[float] = None) -> Dict[str, Any]:
    """One nightly backup; the state written to paths.NIGHTLY_STATE (health.backup_summary reads it) is
    returned (state ok, error or off)."""
    url = str(cfg.get("backup_to") or "")
    if not url:
        return _save({"state": "off", "error": ""})
    started = time.time() if now is None else now
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    bucket, prefix = location(url)
    instance = str(cfg.get("instance_name") or "playground")
    name = object_name(prefix, instance, started)
    state: Dict[str, Any] = {"state": "error", "at": at, "to": url, "error": ""}
    stage = tempfile.mkdtemp(prefix="playground-nightly-", dir=backup.STAGING_DIR)  # 0700
    try:
        path = os.path.join(stage, "backup.tar")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            manifest = backup.backup(fh)
        root, tok = gcs.endpoint(), gcs.token(gcs.client())
        gcs.upload(root, bucket, name, path, tok, WRITE_HINTS)
        state.update(state="ok", object="gs://%s/%s" % (bucket, name), bytes=os.path.getsize(path),
                     seconds=round(time.time() - started, 1),
                     counts={role: db["counts"] for role, db in manifest["databases"].items()})
        try:
            names = list(gcs.list_objects(root, bucket, prefix + instance + "-nightly-", tok, PRUNE_HINTS))
            doomed = to_prune(names, prefix, instance, int(cfg.get("backup_keep") or 7))
            for old in doomed:
                gcs.delete(root, bucket, old, tok, PRUNE_HINTS)
            state["pruned"] = doomed
        except gcs.GcsError as exc:  # the new backup is there: old ones stay until this works
            state["prune_error"] = str(exc)
    except (backup.BackupError, gcs.GcsError, OSError) as exc:
        state["error"] = str(exc)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return _save(state)


def _save(state: Dict[str, Any]) -> Dict[str, Any]:
    write_atomic(paths.NIGHTLY_STATE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644, 0)
    return state


def main() -> int:
    cfg = read_json(paths.GOOD_CONFIG)
    if not cfg:
        log("no applied configuration (%s): has the agent applied metadata?" % paths.GOOD_CONFIG)
        return 1
    state = run(cfg)
    if state["state"] == "off":
        log("backup-to is not set: no nightly backup")
        return 0
    if state["state"] == "error":
        log("failed: %s" % state["error"])
        return 1
    log("%s: %d bytes in %.1f s%s%s" % (
        state["object"], state["bytes"], state["seconds"],
        "; deleted %d older" % len(state["pruned"]) if state.get("pruned") else "",
        "; old ones not deleted: %s" % state["prune_error"] if state.get("prune_error") else ""))
    return 0
