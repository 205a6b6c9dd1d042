"""Cloud Storage's JSON API with the standard library: list, download, upload and delete, with the
instance's token from the metadata server as Google's client libraries do on GCE.

STORAGE_EMULATOR_HOST, the variable those libraries honour, points it at an emulator, which takes no token.
Used by the DAG bucket sync (bucket_sync.py) and the nightly backup (nightly.py).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any, Dict, Optional

from .metadata import MetadataClient, MetadataError

ENDPOINT = "https://storage.googleapis.com"


class GcsError(Exception):
    """A call to Cloud Storage failed; the message says what to do."""


def endpoint() -> str:
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if not host:
        return ENDPOINT
    return host.rstrip("/") if "://" in host else "http://" + host.rstrip("/")


def client() -> Optional[MetadataClient]:
    """The metadata server's client for tokens; none against an emulator."""
    return None if os.environ.get("STORAGE_EMULATOR_HOST") else MetadataClient(retries=2)


def token(metadata: Optional[MetadataClient]) -> Optional[str]:
    if os.environ.get("STORAGE_EMULATOR_HOST") or metadata is None:
        return None
    try:
        doc, _ = metadata.get("instance/service-accounts/default/token", recursive=False)
        return json.loads(doc)["access_token"]
    except (MetadataError, ValueError, KeyError, TypeError) as exc:
        raise GcsError("no access token from the metadata server (%s)" % exc) from None


def call(method: str, url: str, tok: Optional[str], hints: Dict[int, str], body: Optional[IO[bytes]] = None,
         size: int = 0, timeout: float = 30.0) -> bytes:
    """One request; an HTTP error is a GcsError naming the status and hints[status] (what to do)."""
    headers = {"Authorization": "Bearer " + tok} if tok else {}
    if body is not None:
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(size)})
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise GcsError("GCS answered %d for %s %s: %s" % (
            exc.code, method, url.split("?")[0], hints.get(exc.code, "retrying"))) from None
    except (urllib.error.URLError, OSError) as exc:
        raise GcsError("GCS not reachable (%s)" % exc) from None


def _b(bucket: str) -> str:
    return urllib.parse.quote(bucket, safe="")


def list_objects(root: str, bucket: str, prefix: str, tok: Optional[str],
                 hints: Dict[int, str]) -> Dict[str, Dict[str, Any]]:
    """Every object under prefix: name -> its resource (generation, size)."""
    found: Dict[str, Dict[str, Any]] = {}
    page = ""
    while True:
        query = {"prefix": prefix, "fields": "items(name,generation,size),nextPageToken"}
        if page:
            query["pageToken"] = page
        url = "%s/storage/v1/b/%s/o?%s" % (root, _b(bucket), urllib.parse.urlencode(query))
        try:
            doc = json.loads(call("GET", url, tok, hints).decode("utf-8"))
        except ValueError as exc:
            raise GcsError("GCS listing unreadable (%s)" % exc) from None
        for item in doc.get("items") or []:
            found[item["name"]] = item
        page = doc.get("nextPageToken") or ""
        if not page:
            return found


def download(root: str, bucket: str, name: str, generation: str, tok: Optional[str],
             hints: Dict[int, str]) -> bytes:
    url = "%s/storage/v1/b/%s/o/%s?alt=media&generation=%s" % (
        root, _b(bucket), urllib.parse.quote(name, safe=""), generation)
    return call("GET", url, tok, hints)


def upload(root: str, bucket: str, name: str, path: str, tok: Optional[str], hints: Dict[int, str]) -> Dict[str, Any]:
    """The file at path as a new object, never over one already there (ifGenerationMatch=0: GCS answers 412).
    A single-request media upload (up to 5 TiB: https://cloud.google.com/storage/docs/uploading-objects); a
    failed one is tried again whole by the next run."""
    query = urllib.parse.urlencode({"uploadType": "media", "name": name, "ifGenerationMatch": "0"})
    url = "%s/upload/storage/v1/b/%s/o?%s" % (root, _b(bucket), query)
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        # Minutes for a large backup over a slow link; the default 30 s is for the small calls.
        return json.loads(call("POST", url, tok, hints, body=fh, size=size, timeout=600).decode("utf-8"))


def delete(root: str, bucket: str, name: str, tok: Optional[str], hints: Dict[int, str]) -> None:
    call("DELETE", "%s/storage/v1/b/%s/o/%s" % (root, _b(bucket), urllib.parse.quote(name, safe="")), tok, hints)
