"""One attribute schema (agent/playground_agent/schema.py): the agent, the CLI and the README agree on it."""
from __future__ import annotations

import dataclasses

import pytest
from playground import attributes
from playground.errors import PlaygroundError
from playground_agent import config, main, schema
from playground_agent.config import parse
from support import REPO, metadata_doc


def test_readme_attribute_table_is_the_schema():
    readme = (REPO / "README.md").read_text()
    assert schema.markdown_table() in readme, "regenerate it: cd agent && python3 -m playground_agent.schema"


def test_every_attribute_fills_a_config_field_with_the_schema_default():
    fields = {f.name: f for f in dataclasses.fields(config.Config)}
    for attr in schema.ATTRIBUTES:
        assert attr.field in fields, attr.name
        if fields[attr.field].default is not dataclasses.MISSING:  # gcp-project has none: it falls back to the project
            assert fields[attr.field].default == attr.value, attr.name
    cfg = parse(metadata_doc())
    assert (cfg.airflow_port, cfg.mlflow_port, cfg.airflow_schedulers) == (
        schema.default("airflow-port"), schema.default("mlflow-port"), schema.default("airflow-schedulers"))


@pytest.mark.parametrize("key, value", [
    ("airflow-schedulers", "0"), ("airflow-schedulers", "2x"), ("airflow-port", "80"), ("lineage", "maybe"),
    ("artifacts-root", "gs://b/../x"), ("mlflow-db-user", "root;drop"), ("airflow-executor", "KubernetesExecutor"),
    ("cloudsql-instance", "not-a-connection"), ("logs-bucket", "a"), ("airflow-admin-user", "-rf"),
    ("retention-days", "0"), ("retention-days", "30d"), ("retention-days", "3651"),
    ("cluster-secret", "playground-demo-cluster"), ("cluster-secret", "projects/p/secrets/a b"),
])
def test_cli_and_agent_refuse_the_same_values_naming_the_same_attribute(key, value):
    with pytest.raises(PlaygroundError) as cli:
        attributes.parse_sets([f"{key}={value}"], "team-demo")
    with pytest.raises(schema.ConfigError) as agent:
        parse(metadata_doc(**{key: value}))
    assert agent.value.attribute == key
    assert str(cli.value).startswith(f"--set {key}: expected {agent.value.expected}")


@pytest.mark.parametrize("key, value", [
    ("airflow-schedulers", "4"), ("timezone", "Asia/Tokyo"), ("artifacts-root", "gs://team-art/mlflow"),
    ("dags-bucket", "team-dags"), ("lineage", "off"), ("airflow-port", "8081"),
])
def test_cli_and_agent_accept_the_same_values(key, value):
    assert attributes.parse_sets([f"{key}={value}"], "team-demo") == {key: value}
    parse(metadata_doc(**{key: value}))


def test_unknown_key_names_the_nearest_known_one():
    with pytest.raises(PlaygroundError, match="did you mean 'mlflow-port'"):
        attributes.parse_sets(["mlflow-prot=5001"], "team-demo")
    with pytest.raises(PlaygroundError, match="--set zzz: expected a playground attribute: the list"):
        attributes.parse_sets(["zzz=1"], "team-demo")


def test_agent_ignores_google_keys_and_logs_a_misspelt_one(monkeypatch):
    doc = metadata_doc(**{"startup-script": "echo hi", "enable-oslogin": "TRUE", "airflow-shedulers": "2"})
    cfg = parse(doc)  # neither is an error at boot: project-wide metadata holds keys of other tools
    assert cfg.airflow_schedulers == 1
    assert schema.unknown_keys(doc["instance"]["attributes"]) == ["airflow-shedulers"]
    logged: list[str] = []
    monkeypatch.setattr(main, "log", logged.append)
    monkeypatch.setattr(main, "parse", lambda d: (_ for _ in ()).throw(schema.ConfigError("x", "y")))
    monkeypatch.setattr(main, "fail", lambda e: 1)

    class Client:
        def read_all(self):
            return doc, "etag"
    monkeypatch.setattr(main.bootstrap, "ensure_ssh_keys", lambda keys: None)
    main.apply(Client())
    assert any("'airflow-shedulers'" in line and "did you mean 'airflow-schedulers'" in line for line in logged)


@pytest.mark.parametrize("days,calendar,cron", [
    ("mon-fri", "Mon..Fri", "1-5"), ("mon,tue,wed,thu,fri", "Mon..Fri", "1-5"), ("sat-sun", "Sat,Sun", "0,6"),
    ("fri-mon", "Mon,Fri..Sun", "0,1,5,6"), ("daily", "", "*"), ("mon,wed,fri", "Mon,Wed,Fri", "1,3,5"),
])
def test_backup_at_and_the_schedule_read_days_alike(days, calendar, cron):
    """One reading of days for the nightly backup's systemd timer (agent) and the nightly stop's cron (CLI):
    `schedule --days fri-mon --backup-to` hands the agent days it must accept."""
    from playground.gce.schedule_spec import parse_days

    ctx = schema.Context(known_zone=lambda z: True)
    assert schema.parse_value("backup-at", f"{days} 20:45", ctx) == f"{calendar} *-*-* 20:45:00 UTC".strip()
    assert parse_days(days) == cron
    for bad in ("mon-xyz", "monday", "mon-"):
        with pytest.raises(schema.ConfigError, match="backup-at"):
            schema.parse_value("backup-at", f"{bad} 20:45", ctx)
        with pytest.raises(PlaygroundError, match="--days"):
            parse_days(bad)
