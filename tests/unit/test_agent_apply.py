"""`playground-agent apply` with bad metadata: non-zero, says why, last good config kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_metadata_server_down_fails_clearly(tmp_path):
    proc = run_agent(tmp_path, "127.0.0.1:9", "apply", "--no-start")
    assert proc.returncode == 1
    assert "unreachable after" in proc.stderr
    report = json.loads((tmp_path / "run/playground/status.json").read_text())
    assert "unreachable" in report["last_error"]


def test_agent_runs_on_python_3_8_syntax():
    # The seed image runs the agent on Python 3.8: compile every module for it.
    import ast
    for path in (REPO / "agent" / "playground_agent").glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
