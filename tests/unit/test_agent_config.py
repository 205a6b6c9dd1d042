"""Metadata attributes -> Config: defaults, valid values, and bad or hostile input."""
from __future__ import annotations

import pytest
from playground_agent.config import ConfigError, parse
from support import metadata_doc


def test_project_id_alone_gives_a_working_local_default():
    cfg = parse(metadata_doc())
    assert cfg.project_id == "playground-demo"
    assert (cfg.zone, cfg.region) == ("europe-west2-b", "europe-west2")
    assert cfg.mlflow_backend == "local"
    assert cfg.artifacts_root == "/var/lib/playground/mlflow-artifacts"
    assert (cfg.airflow_port, cfg.mlflow_port, cfg.cloudsql_proxy_port) == (8080, 5000, 3309)
    assert cfg.airflow_schedulers == 1 and cfg.airflow_executor == "LocalExecutor"


def test_full_gce_settings_are_read():
    cfg = parse(metadata_doc(**{
        "dags-bucket": "gs://team-dags", "logs-bucket": "team-logs", "artifacts-root": "gs://team-ml/artifacts",
        "cloudsql-instance": "playground-demo:europe-west2:mlflow-db", "mlflow-db-password-secret":
        "projects/playground-demo/secrets/mlflow-db/versions/latest", "airflow-schedulers": "2",
        "timezone": "UTC", "airflow-admin-user": "ops.admin",
    }))
    assert cfg.dags_bucket == "team-dags"
    assert cfg.artifacts_root == "gs://team-ml/artifacts"
    assert cfg.mlflow_backend == "cloudsql"
    assert cfg.airflow_schedulers == 2
    assert cfg.airflow_admin_user == "ops.admin"


def test_instance_attributes_win_over_project_ones():
    doc = metadata_doc(**{"airflow-schedulers": "3"})
    doc["project"]["attributes"] = {"airflow-schedulers": "2", "timezone": "UTC"}
    assert parse(doc).airflow_schedulers == 3


@pytest.mark.parametrize("attr,value,expected", [
    ("dags-bucket", "../../etc", "GCS bucket name"),
    ("dags-bucket", "team/../../etc", "GCS bucket name"),
    ("dags-bucket", "Team-Dags", "GCS bucket name"),
    ("artifacts-root", "/var/lib/../../etc/shadow", "absolute local path without '..'"),
    ("artifacts-root", "relative/path", "absolute local path"),
    ("artifacts-root", "gs://ok-bucket/../x", "plain prefix"),
    ("airflow-schedulers", "9", "integer from 1 to 4"),
    ("airflow-schedulers", "two", "integer from 1 to 4"),
    ("airflow-port", "80", "integer from 1024 to 65535"),
    ("airflow-executor", "KubernetesExecutor", "one of LocalExecutor"),
    ("lineage", "yes", "one of on, off"),
    ("cloudsql-instance", "just-a-name", "PROJECT:REGION:INSTANCE"),
    ("timezone", "Mars/Olympus", "IANA time zone"),
    ("timezone", "../../../etc/passwd", "IANA time zone"),
    ("mlflow-db-name", "mlflow; DROP DATABASE airflow", "database identifier"),
    ("airflow-admin-user", "admin\nAIRFLOW__CORE__EXECUTOR=Debug", "single line"),
    ("mlflow-db-user", "x\"", "database identifier"),
    ("gcp-project", "Bad_Project", "GCP project id"),
])
def test_bad_values_name_the_attribute_and_what_was_expected(attr, value, expected):
    with pytest.raises(ConfigError) as err:
        parse(metadata_doc(**{attr: value}))
    assert err.value.attribute == attr
    assert expected in str(err.value)


def test_newline_injection_into_any_attribute_is_refused():
    for attr in ("dags-bucket", "timezone", "artifacts-root", "mlflow-backend"):
        with pytest.raises(ConfigError, match="single line"):
            parse(metadata_doc(**{attr: "ok\nAIRFLOW__CORE__FERNET_KEY=stolen"}))


def test_cloudsql_backend_needs_a_password_secret():
    with pytest.raises(ConfigError) as err:
        parse(metadata_doc(**{"cloudsql-instance": "playground-demo:europe-west2:mlflow-db"}))
    assert err.value.attribute == "mlflow-db-password-secret"


def test_ports_must_differ():
    with pytest.raises(ConfigError, match="all different"):
        parse(metadata_doc(**{"airflow-port": "5000"}))


def test_missing_project_id_is_named():
    doc = metadata_doc()
    doc["project"] = {}
    with pytest.raises(ConfigError) as err:
        parse(doc)
    assert err.value.attribute == "gcp-project"


def test_ssh_keys_are_parsed_and_hostile_lines_refused():
    cfg = parse(metadata_doc(**{"ssh-keys": "alice:ssh-ed25519 AAAAC3Nza alice@laptop\n\nbob:ssh-rsa AAAAB3 bob"}))
    assert [(k.user, k.key.split()[0]) for k in cfg.ssh_keys] == [("alice", "ssh-ed25519"), ("bob", "ssh-rsa")]
    with pytest.raises(ConfigError) as err:
        parse(metadata_doc(**{"ssh-keys": "../../root:ssh-ed25519 AAAA"}))
    assert err.value.attribute == "ssh-keys"
    with pytest.raises(ConfigError):
        parse(metadata_doc(**{"ssh-keys": 'alice:command="rm -rf /" ssh-ed25519 AAAA'}))
