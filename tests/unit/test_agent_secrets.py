"""The agent reads the MLflow database password from Secret Manager with the instance's token (the fake
Google server checks each call against secretmanager.v1's discovery document), writes it only to a
root-only file, and refuses a secret it cannot read: nothing written, the attribute named."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import unquote

import pytest
from playground_agent import paths, render, secret_manager
from playground_agent.config import ConfigError, parse
from playground_agent.metadata import MetadataClient
from support import REPO, metadata_doc

SECRET = "projects/playground-demo/secrets/mlflow-db"
PASSWORD = 'p@ss:w/rd%"$HOME'  # every character that matters in a URI, a shell or an env file
CLOUDSQL = {"mlflow-backend": "cloudsql", "cloudsql-instance": "playground-demo:europe-west2:mlflow-db",
            "mlflow-db-password-secret": SECRET}


@pytest.fixture
def google(fake_google):
    fake_google.secrets.values[("playground-demo", "mlflow-db")] = PASSWORD
    return fake_google


def gce_doc(**attrs):
    doc = metadata_doc(**{**CLOUDSQL, **attrs})
    token = {"access_token": "ya29.fake-instance-token", "expires_in": 3599, "token_type": "Bearer"}
    doc["instance"]["service-accounts"] = {"default": {"token": json.dumps(token)}}  # GCE serves it as JSON text
    return doc


def test_the_password_reaches_only_the_root_only_file(google, metadata):
    metadata.set(gce_doc())
    cfg = parse(gce_doc())
    files = secret_manager.files(cfg, MetadataClient(metadata.host, retries=1))
    (path, spec), = files.items()
    assert path.endswith("/var/lib/playground/secrets/mlflow.env") and spec.mode == 0o600 and spec.group == ""
    line = next(x for x in spec.content.splitlines() if x.startswith("MLFLOW_BACKEND_STORE_URI="))
    uri = line.split("=", 1)[1].strip('"')
    assert uri.startswith("mysql+pymysql://mlflow:") and uri.endswith("@127.0.0.1:3309/mlflow")
    assert unquote(uri.split(":", 2)[2].rsplit("@", 1)[0]) == PASSWORD
    assert "$" not in uri and '"' not in uri, "percent-encoded: systemd and sh pass it through untouched"
    (call,) = google.calls("projects.secrets.versions.access")
    assert call["params"] == {"projectsId": "playground-demo", "secretsId": "mlflow-db", "versionsId": "latest"}
    shared = render.render(cfg)
    assert not any(PASSWORD in f.content or "p%40ss" in f.content for f in shared.values())


@pytest.mark.parametrize("setup,expected", [
    (lambda g: g.secrets.denied.add("mlflow-db"), "Secret Manager answered 403"),
    (lambda g: g.secrets.values.clear(), "Secret Manager answered 404"),
    (lambda g: setattr(g.secrets, "token", "another"), "Secret Manager answered 401"),
])
def test_a_secret_it_cannot_read_is_named(google, metadata, setup, expected):
    setup(google)
    metadata.set(gce_doc())
    with pytest.raises(ConfigError) as err:
        secret_manager.files(parse(gce_doc()), MetadataClient(metadata.host, retries=1))
    assert err.value.attribute == "mlflow-db-password-secret" and expected in str(err.value)
    assert PASSWORD not in str(err.value)


READ_ONLY = "https://www.googleapis.com/auth/cloud-platform.read-only"


def test_a_token_without_the_cloud_platform_scope_is_named_not_a_missing_role(google, metadata):
    """A VM made with narrower scopes (the old launch gave cloud-platform.read-only): Secret Manager refuses
    the token whatever its roles, so the hint names the scope, not roles/secretmanager.secretAccessor."""
    google.secrets.token_scopes = [READ_ONLY]
    metadata.set(gce_doc())  # this metadata server does not list the scopes: Secret Manager's 403 tells
    with pytest.raises(ConfigError) as err:
        secret_manager.files(parse(gce_doc()), MetadataClient(metadata.host, retries=1))
    assert "insufficient authentication scopes" in str(err.value)
    assert "--scopes=cloud-platform" in str(err.value) and "secretAccessor" not in str(err.value)


def test_scopes_listed_by_the_metadata_server_are_checked_before_any_request(google, metadata):
    doc = gce_doc()
    doc["instance"]["service-accounts"]["default"]["scopes"] = READ_ONLY + "\n"  # GCE: one scope a line
    metadata.set(doc)
    with pytest.raises(ConfigError) as err:
        secret_manager.files(parse(doc), MetadataClient(metadata.host, retries=1))
    assert "needs the cloud-platform scope" in str(err.value) and "cloud-platform.read-only" in str(err.value)
    assert not google.calls("projects.secrets.versions.access")


def test_apply_with_an_unreadable_secret_writes_nothing_and_reports_why(google, metadata, tmp_path):
    google.secrets.denied.add("mlflow-db")
    metadata.set(gce_doc())
    env = dict(os.environ, PLAYGROUND_ROOT=str(tmp_path), GCE_METADATA_HOST=metadata.host,
               PYTHONPATH=str(REPO / "agent"))
    proc = subprocess.run([sys.executable, "-m", "playground_agent", "apply", "--no-start"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "'mlflow-db-password-secret'" in proc.stderr and "roles/secretmanager.secretAccessor" in proc.stderr
    assert not (tmp_path / "etc/playground/mlflow.env").exists(), "no config is written on a failed apply"
    assert not (tmp_path / "var/lib/playground/secrets/mlflow.env").exists()
    report = json.loads((tmp_path / "run/playground/status.json").read_text())
    assert report["healthy"] is False and "mlflow-db-password-secret" in report["last_error"]


def test_a_stale_secrets_file_is_removed_when_the_backend_goes_local(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SECRETS_DIR", str(tmp_path / "secrets"))
    stale = tmp_path / "secrets" / "mlflow.env"
    stale.parent.mkdir()
    stale.write_text('MLFLOW_BACKEND_STORE_URI="mysql+pymysql://old"\n')
    files = render.render(parse(metadata_doc()))
    files.update(secret_manager.files(parse(metadata_doc()), MetadataClient("127.0.0.1:9", retries=1)))
    assert secret_manager.remove_unneeded(files) == [str(stale)]
    assert not stale.exists(), "the unit would read the old URI after the new one"
    stale.write_text("kept\n")
    assert secret_manager.remove_unneeded({str(stale): files[next(iter(files))]}) == [] and stale.exists()


def test_generated_admin_passwords_are_never_read_as_options(tmp_path, monkeypatch):
    # `airflow users create --password X` failed on first boot when X began with "-".
    from playground_agent import bootstrap

    monkeypatch.setattr(paths, "SECRETS_DIR", str(tmp_path))
    seen = set()
    for i in range(300):
        bootstrap.ensure_secrets(str(i))
        pw = (tmp_path / "admin-password").read_text().strip()
        assert pw.isalnum() and len(pw) == 24, pw
        seen.add(pw)
    assert len(seen) == 300
    assert oct((tmp_path / "admin-password").stat().st_mode & 0o777) == "0o600"


def test_a_secret_reaches_a_child_on_stdin_and_getpass_reads_it_without_a_terminal():
    """How the admin password reaches `airflow users create`: on stdin, from a session of its own, so
    getpass (which Airflow's prompt uses) reads it there even when the agent runs in a terminal."""
    from playground_agent import commands

    probe = ("import getpass, sys; p = getpass.getpass('Password:'); q = getpass.getpass('Again:'); "
             "print(p == q, len(p), 'pw-7x' in ' '.join(sys.argv))")
    out = commands.run([sys.executable, "-c", probe], secret_input="pw-7xQ2\npw-7xQ2\n")
    assert out.split() == ["True", "7", "False"]
