"""`playground-agent airflow-api METHOD PATH [BODY]`: Airflow's REST API on this machine, as the admin user,
for whichever Airflow the image has (root only: it reads the admin password itself, so no secret is ever on a
command line).

The two APIs differ in ways every script would otherwise repeat (versions.py: "rest_api"):
- Airflow 2: /api/v1 with basic auth ([api] auth_backends, render.py);
- Airflow 3: /api/v2 with a JWT from the FAB auth manager's token endpoint, POST /auth/token with the user's
  name and password (apache-airflow-providers-fab, "Generate JWT token with FAB auth manager"); a DAG run's
  body names its logical_date (null: now), which v2 requires and v1 did not have.
PATH is relative to the API's root (dags/x/dagRuns), the same on both."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

from . import bootstrap, files, paths
from .versions import Airflow, installed

ADMIN = "admin"


class ApiError(Exception):
    pass


def base_url(cfg: Optional[Dict[str, Any]]) -> str:
    return "http://127.0.0.1:%d" % int((cfg or {}).get("airflow_port", 8080))


def _send(req: urllib.request.Request, timeout: float) -> Tuple[int, Any]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError("Airflow's API at %s does not answer: %s"
                       % (req.full_url, getattr(exc, "reason", exc))) from None
    try:
        return status, json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except ValueError:
        return status, {"raw": raw.decode("utf-8", "replace")[:500]}


def token(base: str, password: str, timeout: float = 30) -> str:
    req = urllib.request.Request(base + "/auth/token", method="POST",
                                 data=json.dumps({"username": ADMIN, "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    status, body = _send(req, timeout)
    if status >= 300 or not isinstance(body, dict) or not body.get("access_token"):
        raise ApiError("POST /auth/token: HTTP %d, no access_token (%s)" % (status, str(body)[:200]))
    return str(body["access_token"])


def request(airflow: Airflow, base: str, password: str, method: str, path: str,
            body: Optional[Dict[str, Any]] = None, timeout: float = 30) -> urllib.request.Request:
    """The request for one call: the version's prefix, authentication and body."""
    prefix, auth = airflow.get("rest_api")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % (ADMIN, password)).encode()).decode()
    else:
        headers["Authorization"] = "Bearer " + token(base, password, timeout)
    path = path.lstrip("/")
    if (auth != "basic" and method.upper() == "POST" and path.endswith("/dagRuns") and body is not None
            and "logical_date" not in body):
        body = dict(body, logical_date=None)
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request("%s%s/%s" % (base, prefix, path), method=method.upper(), data=data,
                                  headers=headers)


def call(method: str, path: str, body: Optional[Dict[str, Any]] = None, timeout: float = 30) -> Tuple[int, Any]:
    """(HTTP status, parsed JSON) of one call as the admin user."""
    base = base_url(files.read_json(paths.GOOD_CONFIG))
    return _send(request(installed(), base, bootstrap.admin_password(), method, path, body, timeout), timeout)


def main(method: str, path: str, body_text: str) -> int:
    """Print the answer's JSON; exit 1 with one line on an HTTP error or an API that does not answer."""
    import sys

    try:
        body = json.loads(body_text) if body_text else None
    except ValueError as exc:
        print("playground-agent: airflow-api: BODY: expected JSON, got %r (%s)" % (body_text[:80], exc),
              file=sys.stderr)
        return 2
    if body is not None and not isinstance(body, dict):
        print("playground-agent: airflow-api: BODY: expected a JSON object", file=sys.stderr)
        return 2
    try:
        status, answer = call(method, path, body)
    except ApiError as exc:
        print("playground-agent: airflow-api: %s" % exc, file=sys.stderr)
        return 1
    print(json.dumps(answer))
    if status >= 300:
        detail = answer.get("detail") or answer.get("title") if isinstance(answer, dict) else answer
        print("playground-agent: airflow-api: %s %s: HTTP %d %s" % (method.upper(), path, status, str(detail)[:200]),
              file=sys.stderr)
        return 1
    return 0
