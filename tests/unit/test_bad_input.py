"""Nothing billable starts on bad input: every bad flag or attribute is one line, exit 1, and no request
reaches the fake Google server (it counts them). The README's table "Bad input" lists these cases."""
from __future__ import annotations

import pytest
from playground.main import app
from typer.testing import CliRunner

PROJECT = "my-team-project"
GCE = ["--provider", "gce", "--project", PROJECT]


@pytest.fixture
def google(fake_google, monkeypatch, tmp_path):
    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad-settings").mkdir()
    (tmp_path / "bad-settings" / "airflow_settings.yaml").write_text(
        "airflow:\n  connections:\n    - {conn_id: a, conn_type: http, conn_port: x, conn_password: s3cret}\n")
    for var in ("PLAYGROUND_PROVIDER", "PLAYGROUND_PROJECT", "PLAYGROUND_ZONE"):
        monkeypatch.delenv(var, raising=False)
    return fake_google


def one_error(args: list[str]) -> str:
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1, res.output
    assert len(errors) == 1, res.output
    return " ".join(res.output[res.output.index("error:"):].split())


CASES = [
    (["launch", *GCE, "--set", "no-such-attr=1"], "--set no-such-attr: expected a playground attribute"),
    (["launch", *GCE, "--set", "airflow-shedulers=2"], "did you mean 'airflow-schedulers'?"),
    (["launch", *GCE, "--set", "airflow-schedulers=99"],
     "--set airflow-schedulers: expected an integer from 1 to 4 (got '99')"),
    (["launch", *GCE, "--set", "retention-days=0"],
     "--set retention-days: expected an integer from 1 to 3650 (got '0')"),
    (["launch", *GCE, "--set", "timezone=Mars/Olympus_Mons"], "--set timezone: expected an IANA time zone"),
    (["launch", *GCE, "--set", "mlflow-port=8080"],
     "--set mlflow-port: expected web, MLflow, proxy (and 5432) ports all different"),
    (["launch", *GCE, "--set", "mlflow-backend=cloudsql"],
     "--set cloudsql-instance: expected a connection name when mlflow-backend is cloudsql"),
    (["launch", *GCE, "--set", "dags-bucket=../etc"], "--set dags-bucket: expected a GCS bucket name"),
    (["launch", "--provider", "gce", "--project", "Demo Proj"], "--project: expected a GCP project id"),
    (["launch", "--provider", "gce", "--project", "DemoProj"], "--project: expected a GCP project id"),
    (["launch", *GCE, "--machine-type", "not a type"], "--machine-type: expected a machine type"),
    (["launch", *GCE, "--zone", "mars-1-z"], "--zone: expected a zone such as europe-west2-b"),
    (["launch", *GCE, "--name", "Bad_Name", "--no-wait"], "--name: expected 1-63 of a-z 0-9 -"),
    (["launch", *GCE, "--disk-size", "5"], "--disk-size: expected 10-65536 (GB)"),
    (["launch", *GCE], "SSH key missing"),  # waiting needs the IAP key: said before anything is made
    (["stop", *GCE, "--zone", "mars-1-z", "--name", "pg"], "--zone: expected a zone"),
    (["start", *GCE, "--zone", "mars-1-z", "--name", "pg"], "--zone: expected a zone"),
    (["destroy", *GCE, "--zone", "mars-1-z", "--name", "pg", "--yes"], "--zone: expected a zone"),
    (["list", "--project", PROJECT, "--zone", "mars-1-z"], "--zone: expected a zone"),
    (["status", "--project", PROJECT, "--zone", "mars-1-z"], "--zone: expected a zone"),
    (["schedule", "--project", PROJECT, "--zone", "mars-1-z", "--tz", "UTC"], "--zone: expected a zone"),
    (["schedule", "show", "--project", "Demo Proj"], "--project: expected a GCP project id"),
    (["launch", *GCE, "--workers", "2"],
     "--workers: profile seed has no Celery provider in its Airflow lock; use --profile current"),
    (["launch", "--project", PROJECT, "--workers", "2", "--set", "role=worker"],
     "--workers: sets role, main-address, private-subnet, airflow-executor and cluster-secret itself"),
    (["launch", "--project", PROJECT, "--workers", "9"], "--workers: expected 0-8 worker machines, got 9"),
    (["scale", "--name", "pgw", "--workers", "-1"], "--workers: expected 0-8 worker machines, got -1"),
    (["scale", *GCE, "--name", "pgw", "--workers", "9"], "--workers: expected 0-8 worker machines, got 9"),
    (["launch", *GCE, "--set", "role=worker"], "--set airflow-executor: expected CeleryExecutor on a worker"),
    (["schedule", "--project", PROJECT, "--tz", "UTC", "--backup-to", "team-backups"],
     "--backup-to: expected gs://BUCKET[/PREFIX]"),
    (["schedule", "--project", PROJECT, "--tz", "UTC", "--backup-to", "gs://team-backups", "--backup-keep", "0"],
     "--backup-keep: expected an integer from 1 to 365"),
    (["schedule", "--project", PROJECT, "--tz", "UTC", "--backup-keep", "3"], "--backup-keep: goes with --backup-to"),
    (["stop", *GCE, "--name", "Bad_Name"], "--name: expected 1-63 of a-z 0-9 -"),
    (["destroy", *GCE, "--name", "-x", "--yes"], "--name: expected 1-63 of a-z 0-9 -"),
    (["image", "list", "--gce", "--project", "Demo Proj"], "--project: expected a GCP project id"),
    (["launch", *GCE, "--runtime", "vm"], "--runtime: local instances only"),
    (["launch", *GCE, "--data-disk", "5"], "--data-disk: expected 10-65536 (GB), got 5"),
    (["upgrade", *GCE, "--name", "Bad_Name"], "--name: expected 1-63 of a-z 0-9 -"),
    (["launch", *GCE, "--dags", "no-such-folder"], "--dags: project folder no-such-folder: expected a folder"),
    (["launch", *GCE, "--dags", ".", "--no-wait"], "--dags: deploys once the machine is healthy, so it needs --wait"),
    (["deploy", "no-such-folder", *GCE], "project folder no-such-folder: expected a folder holding DAGs"),
    (["deploy", "bad-settings", *GCE],
     "airflow_settings.yaml: airflow.connections[0].conn_port: expected a port number 1-65535 (got 'x')"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_and_sends_no_request(google, args, expected):
    line = one_error(args)
    assert expected in line, line
    assert google.requests == [], [r["method"] for r in google.requests]


def test_the_same_values_launch_a_local_instance_nowhere(google, tmp_path):
    """Locally too: a bad --set is refused before the image is looked for or anything is made."""
    line = one_error(["launch", "--project", PROJECT, "--set", "airflow-schedulers=99", "--no-build"])
    assert "--set airflow-schedulers: expected an integer from 1 to 4" in line
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("args, expected", [
    (["--runtime", "docker"], "--runtime: expected one of nspawn, vm, got 'docker'"),
    (["--runtime", "vm", "--data-disk", "5000"], "--data-disk: expected 1-1024 (GiB), got 5000"),
])
def test_a_bad_runtime_is_refused_before_anything_is_made(google, tmp_path, args, expected):
    line = one_error(["launch", "--project", PROJECT, "--no-build", *args])
    assert expected in line, line
    assert not (tmp_path / "state").exists()


def test_good_input_is_sent_as_given(google):
    res = CliRunner().invoke(app, ["launch", *GCE, "--no-wait", "--set", "airflow-schedulers=2",
                                   "--set", "timezone=Europe/London"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    items = {i["key"]: i["value"] for i in google.calls("instances.insert")[0]["body"]["metadata"]["items"]}
    assert items["airflow-schedulers"] == "2" and items["timezone"] == "Europe/London"


@pytest.mark.parametrize("args, expected", [
    (["backup", "--name", "nosuch", "--to", "gs://Bad_Bucket!"], "--to: expected gs://BUCKET[/PREFIX]"),
    (["backup", "--name", "nosuch", "--to", "gs://ab"], "--to: expected gs://BUCKET[/PREFIX]"),
    (["restore", "--name", "nosuch", "--from", "gs://UPPER/x.tar"], "--from: expected gs://BUCKET[/PREFIX]"),
])
def test_a_bad_cloud_storage_url_is_refused_before_the_machine_is_looked_for(google, args, expected):
    line = one_error(args)
    assert expected in line and "nosuch" not in line, line
    assert google.requests == []
