"""The agent's REST client (agent/playground_agent/airflow_api.py) against a local HTTP server that answers as
Airflow 2's /api/v1 (basic auth) or Airflow 3's /api/v2 (a JWT from FAB's /auth/token) would."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playground_agent import airflow_api
from playground_agent.versions import Airflow

PASSWORD = "s3cret-pw"


@pytest.fixture
def server():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                         "body": body})
            if self.path == "/auth/token":
                if body == {"username": "admin", "password": PASSWORD}:
                    return self._answer(201, {"access_token": "jwt-1"})
                return self._answer(401, {"detail": "Invalid credentials"})
            basic = "Basic " + base64.b64encode(b"admin:" + PASSWORD.encode()).decode()
            if self.path.startswith("/api/v1/") and self.headers.get("Authorization") == basic:
                return self._answer(200, {"dags": [], "path": self.path})
            if self.path.startswith("/api/v2/") and self.headers.get("Authorization") == "Bearer jwt-1":
                if self.command == "POST" and self.path.endswith("/dagRuns") and "logical_date" not in (body or {}):
                    return self._answer(422, {"detail": "logical_date: Field required"})
                return self._answer(200, {"dag_run_id": (body or {}).get("dag_run_id"), "path": self.path})
            return self._answer(401, {"detail": "Not authenticated"})

        do_GET = do_POST = do_PATCH = _handle

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


def send(server, version: str, method: str, path: str, body=None, password: str = PASSWORD):
    base, _ = server
    req = airflow_api.request(Airflow(version), base, password, method, path, body)
    return airflow_api._send(req, 10)


@pytest.mark.parametrize("version", ["2.0.2", "2.11.2"])
def test_airflow_2_is_v1_with_basic_auth(server, version):
    status, body = send(server, version, "GET", "/dags")
    assert (status, body["path"]) == (200, "/api/v1/dags")
    assert [s["path"] for s in server[1]] == ["/api/v1/dags"], "no token request on 2.x"


def test_airflow_3_takes_a_token_then_calls_v2_and_a_run_names_its_logical_date(server):
    status, body = send(server, "3.3.2", "POST", "dags/etl/dagRuns", {"dag_run_id": "r1"})
    assert (status, body) == (200, {"dag_run_id": "r1", "path": "/api/v2/dags/etl/dagRuns"})
    token_call, run_call = server[1]
    assert token_call["path"] == "/auth/token" and token_call["auth"] is None
    assert run_call["auth"] == "Bearer jwt-1" and run_call["body"] == {"dag_run_id": "r1", "logical_date": None}


def test_a_refused_token_is_one_line_naming_the_endpoint(server):
    with pytest.raises(airflow_api.ApiError, match=r"POST /auth/token: HTTP 401"):
        send(server, "3.3.2", "GET", "dags", password="wrong")


def test_an_api_that_does_not_answer_is_an_api_error():
    req = airflow_api.request(Airflow("2.11.2"), "http://127.0.0.1:9", PASSWORD, "GET", "dags")
    with pytest.raises(airflow_api.ApiError, match="does not answer"):
        airflow_api._send(req, 5)


def test_bad_body_is_refused_before_any_call(capsys):
    assert airflow_api.main("POST", "dags/x/dagRuns", "{not json") == 2
    assert "BODY: expected JSON" in capsys.readouterr().err
    assert airflow_api.main("POST", "dags/x/dagRuns", "[1]") == 2
