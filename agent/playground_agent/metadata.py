"""Client for the GCE metadata server (or a local server speaking its protocol).

Follows the guest agent: one recursive JSON read, the `Metadata-Flavor: Google`
header both ways, bounded retries with backoff, and the
`wait_for_change=true&last_etag=` long poll for changes.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Tuple

DEFAULT_HOST = "metadata.google.internal"
ROOT = "/computeMetadata/v1/"


class MetadataError(Exception):
    """The metadata server could not be read."""


def _manager_environment() -> Dict[str, str]:
    """systemd's default environment for units (where a local instance sets the host)."""
    try:
        out = subprocess.run(["systemctl", "show-environment"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def metadata_host() -> str:
    # The variable Google's own libraries honour (host or host:port); a shell
    # run by hand lacks it, so fall back to what systemd gives the units.
    return (os.environ.get("GCE_METADATA_HOST") or _manager_environment().get("GCE_METADATA_HOST")
            or DEFAULT_HOST)


class MetadataClient:
    def __init__(
        self,
        host: Optional[str] = None,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.host = host or metadata_host()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _url(self, path: str, params: Dict[str, str]) -> str:
        query = urllib.parse.urlencode(params)
        return "http://%s%s%s%s" % (self.host, ROOT, path.lstrip("/"), "?" + query if query else "")

    def _get_once(self, url: str, timeout: float) -> Tuple[bytes, str]:
        req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.headers.get("Metadata-Flavor") != "Google":
                raise MetadataError("%s answered without Metadata-Flavor: Google" % self.host)
            return resp.read(), resp.headers.get("ETag", "")

    def get(
        self,
        path: str = "",
        recursive: bool = True,
        wait_for_change: bool = False,
        last_etag: str = "",
        timeout_sec: int = 60,
    ) -> Tuple[Any, str]:
        """Return (decoded JSON or text, etag). Raises MetadataError after the retries."""
        params: Dict[str, str] = {}
        if recursive:
            params["recursive"] = "true"
            params["alt"] = "json"
        timeout = self.timeout
        if wait_for_change:
            params["wait_for_change"] = "true"
            params["timeout_sec"] = str(timeout_sec)
            if last_etag:
                params["last_etag"] = last_etag
            timeout = timeout_sec + self.timeout
        url = self._url(path, params)
        last_exc: Optional[Exception] = None
        for attempt in range(self.retries):
            try:
                body, etag = self._get_once(url, timeout)
                text = body.decode("utf-8")
                if recursive:
                    return json.loads(text), etag
                return text, etag
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise MetadataError("metadata key %r not found" % path) from exc
                last_exc = exc
                if 400 <= exc.code < 500:
                    break  # a client error does not get better by retrying
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_exc = exc
            time.sleep(self.backoff * (2 ** attempt))
        raise MetadataError(
            "metadata server %s unreachable after %d tries: %s" % (self.host, self.retries, last_exc)
        )

    def read_all(self) -> Tuple[Dict[str, Any], str]:
        """The whole tree: instance (attributes, id, zone) and project (id, attributes)."""
        doc, etag = self.get("", recursive=True)
        if not isinstance(doc, dict):
            raise MetadataError("metadata root is not a JSON object")
        return doc, etag
