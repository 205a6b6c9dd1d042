"""`playground-agent apply` with bad metadata: non-zero, says why, last good config kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from playground_agent.config import parse
from support import REPO, metadata_doc


def run_agent(root, host, *args):
    env = dict(os.environ, PLAYGROUND_ROOT=str(root), GCE_METADATA_HOST=host,
               PYTHONPATH=str(REPO / "agent"))
    return subprocess.run([sys.executable, "-m", "playground_agent", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_bad_attribute_fails_names_it_and_keeps_the_last_good_config(tmp_path, metadata):
    good = parse(metadata_doc(**{"airflow-schedulers": "2"})).to_dict()
    (tmp_path / "var/lib/playground").mkdir(parents=True)
    (tmp_path / "var/lib/playground/config.json").write_text(json.dumps(good))
    (tmp_path / "etc/playground").mkdir(parents=True)
    (tmp_path / "etc/playground/airflow.env").write_text("KEEP=1\n")
    metadata.set(metadata_doc(**{"airflow-schedulers": "9"}))

    proc = run_agent(tmp_path, metadata.host, "apply", "--no-start")

    assert proc.returncode == 1
    assert "'airflow-schedulers': expected an integer from 1 to 4" in proc.stderr
    assert (tmp_path / "etc/playground/airflow.env").read_text() == "KEEP=1\n"
    assert json.loads((tmp_path / "var/lib/playground/config.json").read_text()) == good
    report = json.loads((tmp_path / "run/playground/status.json").read_text())
    assert report["healthy"] is False
    assert report["config"]["state"] == "error"
    assert "airflow-schedulers" in report["last_error"]


def test_metadata_server_down_fails_clearly_as_a_temporary_failure(tmp_path, monkeypatch):
    """Exit 75 (EX_TEMPFAIL) after the agent's patience, which its unit restarts; a refused config is 1."""
    monkeypatch.setenv("PLAYGROUND_METADATA_PATIENCE", "0")
    proc = run_agent(tmp_path, "127.0.0.1:9", "apply", "--no-start")
    assert proc.returncode == 75
    assert "unreachable after" in proc.stderr
    report = json.loads((tmp_path / "run/playground/status.json").read_text())
    assert "unreachable" in report["last_error"]


def test_the_agent_unit_restarts_apply_after_a_temporary_failure_only():
    from playground_agent.main import EXIT_REFUSED, EXIT_TEMPFAIL

    unit = dict(line.split("=", 1) for line in (REPO / "units/playground-agent.service").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert unit["Restart"] == "on-failure"
    assert unit["RestartPreventExitStatus"].split() == [str(EXIT_REFUSED)] and EXIT_TEMPFAIL != EXIT_REFUSED


def test_agent_runs_on_python_3_8_syntax():
    # The seed image runs the agent on Python 3.8: compile every module for it.
    import ast
    for path in (REPO / "agent" / "playground_agent").glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def test_a_metadata_server_failing_at_boot_is_waited_for(tmp_path, metadata):
    """HTTP 500 for the first seconds (Google's guest agent retries until metadata answers): the agent
    keeps trying with backoff, then applies the config (it gets as far as writing it here)."""
    import threading
    import time
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    until = time.monotonic() + 3

    class Flaky(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            if time.monotonic() < until:
                self.send_response(500)
                self.send_header("Metadata-Flavor", "Google")
                self.end_headers()
                return
            upstream = urllib.request.Request(f"http://{metadata.host}{self.path}",
                                              headers={"Metadata-Flavor": "Google"})
            with urllib.request.urlopen(upstream, timeout=5) as resp:
                body = resp.read()
                self.send_response(200)
                for key in ("Metadata-Flavor", "ETag", "Content-Type"):
                    self.send_header(key, resp.headers[key])
                self.end_headers()
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = run_agent(tmp_path, f"127.0.0.1:{server.server_address[1]}", "apply", "--no-start")
    finally:
        server.shutdown()
        server.server_close()
    assert "metadata not readable yet" in proc.stderr and "retrying" in proc.stderr, proc.stderr
    assert (tmp_path / "etc/playground/airflow.env").is_file(), proc.stderr  # the config was applied


def test_while_metadata_is_unreadable_the_last_good_config_starts_once(tmp_path, monkeypatch):
    from playground_agent import main, paths
    from playground_agent.metadata import MetadataError

    monkeypatch.setattr(paths, "GOOD_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setattr(paths, "ETC", str(tmp_path))
    started, clock = [], [0.0]
    monkeypatch.setattr(main, "_systemctl", lambda *a: started.append(a) or 0)
    monkeypatch.setattr(main, "log", lambda m: None)
    monkeypatch.setattr(main.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(main.time, "monotonic", lambda: clock[0])

    class Down:
        def read_all(self):
            raise MetadataError("metadata server answered 500")

    # No complete last good config: nothing starts, and the agent gives up after its patience.
    with pytest.raises(MetadataError, match="gave up after"):
        main.read_metadata(Down(), 120, start=True)
    assert started == []
    for name in ("config.json", "airflow.env", "mlflow.env"):
        (tmp_path / name).write_text("x\n")
    clock[0] = 0.0
    with pytest.raises(MetadataError):
        main.read_metadata(Down(), 120, start=True)
    assert started == [("start", "--no-block", "playground.target")]
