"""GCE workers on the agent's side (issue 17): no SSH handover there, the main and its workers read the
cluster's passwords and keys from the Secret Manager secret the launcher made (cluster-secret), through the
fake Google server, which checks every call against secretmanager.v1's discovery document. The main takes
the secret's Fernet and webserver keys as its own; a secret that lacks one, or stays refused, is one line
naming cluster-secret."""
from __future__ import annotations

import pytest
from playground_agent import bootstrap, cluster, secret_manager
from playground_agent.config import Config, ConfigError
from playground_agent.files import env_text, parse_env, read_env
from playground_agent.metadata import MetadataClient
from playground_agent.versions import Airflow
from support import agent_config, metadata_doc, service_accounts

SECRET = "projects/team/secrets/playground-demo-cluster"
KEYS = {"BROKER_PASSWORD": "b" * 32, "DB_PASSWORD": "d" * 32, "AIRFLOW__CORE__FERNET_KEY": "f" * 43 + "=",
        "AIRFLOW__WEBSERVER__SECRET_KEY": "s" * 64}
MAIN = {"airflow-executor": "CeleryExecutor", "private-subnet": "10.154.0.0/20", "cluster-secret": SECRET}
WORKER = dict(MAIN, **{"role": "worker", "main-address": "10.154.0.10"})


def config(**attrs) -> Config:
    return agent_config(**attrs)


@pytest.fixture
def machine(tmp_path, monkeypatch, fake_google, metadata):
    conf = tmp_path / "etc/postgresql/15/main"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "pg_hba.conf").write_text("local all postgres peer\n")
    (tmp_path / "secrets").mkdir()
    monkeypatch.setattr(cluster.paths, "p", lambda path: str(tmp_path) + path)
    monkeypatch.setattr(cluster.paths, "SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setattr(cluster, "CLUSTER_ENV", str(tmp_path / "secrets/cluster.env"))
    monkeypatch.setattr(cluster, "own_address", lambda subnet: "10.154.0.10")
    monkeypatch.setattr(cluster, "installed", lambda: Airflow("2.11.2"))
    monkeypatch.setenv("PLAYGROUND_CLUSTER_SECRET_PATIENCE", "0")
    fake_google.secrets.values[("team", "playground-demo-cluster")] = env_text(KEYS)
    doc = metadata_doc()
    doc["instance"]["service-accounts"] = service_accounts(fake_google.secrets.token)
    metadata.set(doc)
    return MetadataClient(metadata.host, retries=1)


def test_a_main_takes_the_broker_password_and_its_keys_from_the_secret(machine, tmp_path):
    cfg = config(**MAIN)
    files = cluster.files(cfg, machine)
    held = files[cluster.CLUSTER_ENV]
    assert held.mode == 0o600 and parse_env(held.content) == KEYS
    assert "requirepass %s\n" % KEYS["BROKER_PASSWORD"] in files[cluster.REDIS_CONF].content
    (tmp_path / "secrets/cluster.env").write_text(held.content)
    # Its own keys, made at its first boot, give way to the secret's: the workers decrypt with those.
    secrets = bootstrap.ensure_secrets("1", given=cluster.adopted_keys(cfg))
    assert secrets["AIRFLOW__CORE__FERNET_KEY"] == KEYS["AIRFLOW__CORE__FERNET_KEY"]
    assert secrets["AIRFLOW__WEBSERVER__SECRET_KEY"] == KEYS["AIRFLOW__WEBSERVER__SECRET_KEY"]
    assert read_env(str(tmp_path / "secrets/airflow.env")) == secrets
    assert cluster.ensure_main_secrets()["DB_PASSWORD"] == KEYS["DB_PASSWORD"]  # what the airflow role gets


def test_a_worker_needs_no_handover_file_with_the_secret(machine):
    files = cluster.files(config(**WORKER), machine)
    env = files[cluster.CELERY_ENV].content
    assert "redis://:%s@10.154.0.10:6379/0" % KEYS["BROKER_PASSWORD"] in env
    assert "airflow:%s@10.154.0.10:5432/airflow" % KEYS["DB_PASSWORD"] in env
    assert 'AIRFLOW__CORE__FERNET_KEY="%s"' % KEYS["AIRFLOW__CORE__FERNET_KEY"] in env


def test_a_secret_without_every_key_is_one_line_naming_it(machine, fake_google):
    fake_google.secrets.values[("team", "playground-demo-cluster")] = env_text(dict(KEYS, DB_PASSWORD=""))
    with pytest.raises(ConfigError, match="cluster-secret.*lacks DB_PASSWORD"):
        cluster.files(config(**WORKER), machine)


def test_a_refused_secret_is_retried_while_the_grant_propagates_then_named(machine, fake_google, monkeypatch):
    fake_google.secrets.denied.add("playground-demo-cluster")
    with pytest.raises(ConfigError, match="cluster-secret.*answered 403"):
        cluster.files(config(**WORKER), machine)  # no patience: at once
    monkeypatch.setenv("PLAYGROUND_CLUSTER_SECRET_PATIENCE", "60")
    said = []
    monkeypatch.setattr(secret_manager.time, "sleep", lambda s: fake_google.secrets.denied.clear())
    files = cluster.files(config(**WORKER), machine, said.append)
    assert cluster.CELERY_ENV in files
    assert said and "answered 403; retrying" in said[0] and KEYS["DB_PASSWORD"] not in " ".join(said)


def test_without_a_cluster_secret_nothing_is_asked_of_secret_manager(machine, fake_google):
    cluster.files(config(**{k: v for k, v in MAIN.items() if k != "cluster-secret"}), machine)
    assert not fake_google.calls("projects.secrets.versions.access")
    assert cluster.adopted_keys(config(**dict(MAIN, **{"cluster-secret": ""}))) == {}
