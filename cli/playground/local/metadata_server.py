"""A local server that speaks the GCE metadata protocol, for local instances and tests.

What the agent relies on, as GCE does it: `Metadata-Flavor: Google` required on
requests (403 without) and sent on answers, `?recursive=true` JSON, directory
listings, 404 for missing keys, an ETag, and `wait_for_change=true&last_etag=`
long polls. The document is re-read from its file on every request, so changing
the file is how the CLI changes an instance's attributes.

Fault drills: `--fail-for S` answers every request with HTTP 500 for the first S seconds after the
server starts (a metadata server that is up but failing, as at a zonal incident), then serves normally.

Run: python -m playground.local.metadata_server --doc FILE --bind IP --port N [--fail-for S]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

PREFIX = "/computeMetadata/v1"
MAX_WAIT = 300


def etag_of(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def camel(part: str) -> str:
    """GCE's path names are dashed (project-id), its recursive JSON keys camelCase (projectId)."""
    first, *rest = part.split("-")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def dashed(key: str) -> str:
    return "".join("-" + ch.lower() if ch.isupper() else ch for ch in key)


def lookup(doc: Any, path: str) -> Any:
    """The node at a path of GCE's dashed names in a document of its recursive (camelCase) form; a key
    found as it is comes first (attribute names, account emails are never translated)."""
    node = doc
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict):
            raise KeyError(path)
        if part in node:
            node = node[part]
        elif camel(part) in node:
            node = node[camel(part)]
        else:
            raise KeyError(path)
    return node


def make_handler(load: Callable[[], Any], failing_until: float = 0.0) -> type[BaseHTTPRequestHandler]:
    """failing_until: a time.monotonic() before which every request gets HTTP 500."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "Metadata Server for VM"
        sys_version = ""

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests run many requests
            pass

        def _send(self, code: int, body: str, ctype: str = "application/text", etag: str = "") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(data)

        def _lookup(self, path: str) -> tuple[bool, Any]:
            """(True, the node at path), or (False, None) once a 404 is sent."""
            try:
                return True, lookup(load(), path)
            except (KeyError, ValueError):
                self._send(404, "not found\n", "text/html")
                return False, None

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            if time.monotonic() < failing_until:
                self._send(500, "Internal Server Error\n", "text/html")
                return
            if self.headers.get("Metadata-Flavor") != "Google":
                self._send(403, "Missing required header: Metadata-Flavor\n", "text/html")
                return
            if url.path == "/":
                # GCE answers its root with the one directory: google-auth's ping (is this GCE?) asks it.
                self._send(200, "computeMetadata/\n")
                return
            if not (url.path == PREFIX or url.path.startswith(PREFIX + "/")):
                self._send(404, "not found\n", "text/html")
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            recursive = query.get("recursive", "").lower() == "true"
            path = url.path[len(PREFIX):]
            found, node = self._lookup(path)
            if not found:
                return
            tag = etag_of(node)
            if query.get("wait_for_change", "").lower() == "true":
                timeout = min(float(query.get("timeout_sec", MAX_WAIT)), MAX_WAIT)
                last = query.get("last_etag", tag)  # GCE: no last_etag waits for the next change
                deadline = time.monotonic() + timeout
                while tag == last and time.monotonic() < deadline:
                    time.sleep(0.2)
                    found, node = self._lookup(path)
                    if not found:
                        return
                    tag = etag_of(node)
            if isinstance(node, dict):
                if recursive or query.get("alt") == "json":
                    self._send(200, json.dumps(node), "application/json", tag)
                else:
                    # Listed by their path names, as GCE lists them (attribute names as they are).
                    name = (lambda k: k) if path.rstrip("/").endswith("/attributes") else dashed
                    listing = "".join(name(k) + ("/" if isinstance(v, dict) else "") + "\n"
                                      for k, v in sorted(node.items()))
                    self._send(200, listing, "application/text", tag)
            elif query.get("alt") == "json":
                self._send(200, json.dumps(node), "application/json", tag)
            elif isinstance(node, str) and node.startswith("{"):
                # A leaf whose text is a JSON object (the service account's token) is sent as JSON, as GCE
                # sends it: Google's clients parse the body only when it says so.
                self._send(200, node, "application/json", tag)
            else:
                self._send(200, str(node), "application/text", tag)

    return Handler


def file_loader(path: str) -> Callable[[], Any]:
    def load() -> Any:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    return load


def serve(load: Callable[[], Any], bind: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a daemon thread (tests); returns the server (server_address has the port)."""
    server = ThreadingHTTPServer((bind, port), make_handler(load))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", required=True, help="JSON file with the instance and project trees")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--pidfile")
    parser.add_argument("--fail-for", type=float, default=0.0, metavar="S",
                        help="answer HTTP 500 to everything for the first S seconds (fault drills)")
    args = parser.parse_args()
    if args.fail_for < 0:
        parser.error("--fail-for: expected seconds, 0 or more")
    failing_until = time.monotonic() + args.fail_for if args.fail_for else 0.0
    if args.fail_for:
        print("answering HTTP 500 for %.0f s (--fail-for)" % args.fail_for, flush=True)
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(file_loader(args.doc), failing_until))
    server.daemon_threads = True
    if args.pidfile:
        with open(args.pidfile, "w") as fh:
            fh.write(str(os.getpid()))
    server.serve_forever()


if __name__ == "__main__":
    main()
