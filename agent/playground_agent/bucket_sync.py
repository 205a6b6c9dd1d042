"""DAGs from the dags bucket where gcsfuse is absent: a one-way mirror of gs://BUCKET/dags/ into the
folder Airflow reads, the one the gcsfuse mount gives on GCE images (MOUNT_POINT/dags).

GCS's JSON API through gcs.py (objects.list, paged, and objects.get with alt=media).
An object is fetched again only when its generation changed; a file is removed only when an earlier round
fetched it and the bucket no longer lists it (Airflow's own __pycache__ stays). An object name that would
land outside the folder is refused and reported, never written.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Dict, Optional

from . import gcs
from .metadata import MetadataClient

PREFIX = "dags/"
STATE_NAME = ".playground-sync.json"  # in MOUNT_POINT, beside dags/: Airflow never parses it
INTERVAL_S = 30.0
HINTS = {403: "the instance's service account needs roles/storage.objectViewer on the bucket",
         404: "no such bucket"}

# A round could not complete; what was synced before stays.
SyncError = gcs.GcsError


def list_objects(root: str, bucket: str, token: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """Every object under PREFIX: name -> its resource (generation, size)."""
    return gcs.list_objects(root, bucket, PREFIX, token, HINTS)


def local_path(dest: str, name: str) -> Optional[str]:
    """Where object `name` lands under dest, or None when it would land outside (or is a folder marker)."""
    rel = name[len(PREFIX):]
    if not rel or rel.endswith("/") or "\0" in rel:
        return None
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return os.path.join(dest, *parts)


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".sync-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sync_once(bucket: str, dest: str, previous: Dict[str, str], client: Optional[MetadataClient] = None,
              root: str = "") -> Dict[str, Any]:
    """One round: fetch what is new or changed, remove what was fetched before and is gone.
    previous: name -> generation of the last round. Returns the new round's state."""
    root = root or gcs.endpoint()
    token = gcs.token(client)
    objects = list_objects(root, bucket, token)
    synced: Dict[str, str] = {}
    refused = []
    fetched = 0
    for name, item in sorted(objects.items()):
        path = local_path(dest, name)
        if path is None:
            if not name.endswith("/"):
                refused.append(name)
            continue
        generation = str(item.get("generation", ""))
        if previous.get(name) != generation or not os.path.isfile(path):
            _write(path, gcs.download(root, bucket, name, generation, token, HINTS))
            fetched += 1
        synced[name] = generation
    removed = 0
    for name in set(previous) - set(synced):
        path = local_path(dest, name)
        if path and os.path.isfile(path):
            os.unlink(path)
            removed += 1
    return {"objects": synced, "fetched": fetched, "removed": removed, "refused": refused[:20],
            "synced_at": time.time(), "error": ""}


def state_path(mount_point: str) -> str:
    return os.path.join(mount_point, STATE_NAME)


def read_state(mount_point: str) -> Dict[str, Any]:
    try:
        with open(state_path(mount_point), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _save_state(mount_point: str, state: Dict[str, Any]) -> None:
    _write(state_path(mount_point), (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def run(bucket: str, mount_point: str, interval: float = INTERVAL_S, once: bool = False, log=print) -> int:
    """Sync every `interval` seconds; a failed round keeps the files and the state's objects, records why."""
    dest = os.path.join(mount_point, "dags")
    client = gcs.client()
    state = read_state(mount_point)
    while True:
        try:
            new = sync_once(bucket, dest, state.get("objects") or {}, client)
            if new["fetched"] or new["removed"] or new["refused"] != state.get("refused"):
                log("gs://%s/%s -> %s: %d fetched, %d removed, %d in sync%s" % (
                    bucket, PREFIX, dest, new["fetched"], new["removed"], len(new["objects"]),
                    "; refused (outside the folder): " + ", ".join(new["refused"]) if new["refused"] else ""))
            state = new
        except (SyncError, OSError) as exc:
            log("sync of gs://%s/%s failed: %s" % (bucket, PREFIX, exc))
            state = dict(state, error=str(exc), failed_at=time.time())
        _save_state(mount_point, state)
        if once:
            return 0 if not state.get("error") else 1
        time.sleep(interval)
