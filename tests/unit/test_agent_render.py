"""Config -> files: content, modes, atomic writes, nothing rewritten when unchanged."""
from __future__ import annotations

import os

from playground_agent import files, render
from playground_agent.config import parse
from playground_agent.files import read_env
from support import metadata_doc


def test_env_files_hold_the_settings(tmp_path):
    files = render.render(parse(metadata_doc(**{"airflow-schedulers": "2", "dags-bucket": "team-dags"})), cpus=2)
    airflow = next(spec for path, spec in files.items() if path.endswith("/airflow.env"))
    assert 'AIRFLOW__WEBSERVER__WEB_SERVER_HOST="127.0.0.1"' in airflow.content
    assert 'AIRFLOW__CORE__DAGS_FOLDER="/mnt/playground-bucket/dags"' in airflow.content
    assert airflow.mode == 0o640 and airflow.group == "airflow"
    dropin = next(spec for path, spec in files.items() if path.endswith("playground.target.d/10-agent.conf"))
    assert "Wants=airflow-scheduler@1.service\nWants=airflow-scheduler@2.service\n" in dropin.content
    assert "Wants=playground-bucket-mount.service" in dropin.content
    assert "cloud-sql-proxy" not in dropin.content


def test_no_secret_is_rendered_into_the_shared_env_files():
    files = render.render(parse(metadata_doc()), cpus=2)
    for spec in files.values():
        assert "FERNET" not in spec.content and "SECRET_KEY" not in spec.content and "PASSWORD=" not in spec.content


def test_write_all_is_atomic_with_modes_and_skips_unchanged(tmp_path):
    target = str(tmp_path / "etc" / "airflow.env")
    spec = files.FileSpec('A="1"\n', 0o640, "")
    assert files.write_all({target: spec}) == [target]
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)
    mtime = os.stat(target).st_mtime_ns
    assert files.write_all({target: spec}) == []
    assert os.stat(target).st_mtime_ns == mtime
    assert files.write_all({target: files.FileSpec('A="2"\n', 0o640, "")}) == [target]
    assert not [p for p in os.listdir(tmp_path / "etc") if p.startswith(".tmp-")]


def test_env_values_read_back_exactly(tmp_path):
    path = tmp_path / "x.env"
    path.write_text(files.env_text({"A": 'va"l\\ue', "B": "plain"}))
    assert read_env(str(path)) == {"A": 'va"l\\ue', "B": "plain"}


def test_telemetry_is_off_unless_the_team_turns_it_on():
    off = render.render(parse(metadata_doc()), cpus=2)
    for name in ("airflow.env", "mlflow.env"):
        content = next(f.content for p, f in off.items() if p.endswith("/" + name))
        assert 'MLFLOW_DISABLE_TELEMETRY="true"' in content and 'DO_NOT_TRACK="true"' in content, name
    on = render.render(parse(metadata_doc(telemetry="on")), cpus=2)
    assert not any("MLFLOW_DISABLE_TELEMETRY" in f.content for f in on.values())


def test_software_emulation_gives_the_webserver_minutes_to_start(monkeypatch):
    """Under QEMU's TCG gunicorn's master did not answer within Airflow's 120 s; elsewhere the defaults stay."""
    from playground_agent import render as r

    def airflow_env(slow: bool) -> str:
        files = r.render(parse(metadata_doc()), cpus=2, slow=slow)
        return next(spec.content for path, spec in files.items() if path.endswith("/airflow.env"))

    key = "AIRFLOW__WEBSERVER__WEB_SERVER_MASTER_TIMEOUT"
    assert f'{key}="900"' in airflow_env(True)
    assert key not in airflow_env(False)
    monkeypatch.setattr(r.subprocess, "run", lambda *a, **k: type("P", (), {"stdout": "qemu\n"})())
    assert r.emulated() is True
    monkeypatch.setattr(r.subprocess, "run", lambda *a, **k: type("P", (), {"stdout": "google\n"})())
    assert r.emulated() is False


def test_the_triggerer_is_wanted_from_airflow_2_2_on():
    """Deferrable tasks need a triggerer (Airflow 2.2+); 2.0 and 2.1 have no `airflow triggerer` to run."""
    from playground_agent.versions import Airflow

    cfg = parse(metadata_doc())
    for version, wanted in (("2.0.2", False), ("2.1.4", False), ("2.2.0", True), ("2.11.2", True)):
        files = render.render(cfg, cpus=2, airflow=Airflow(version), slow=False)
        dropin = next(spec for path, spec in files.items() if path.endswith("playground.target.d/10-agent.conf"))
        assert ("Wants=airflow-triggerer.service\n" in dropin.content) is wanted, version


def test_secret_manager_is_airflow_s_secrets_backend_only_when_asked():
    from playground_agent.versions import Airflow

    plain = render.airflow_env(parse(metadata_doc()), 2, Airflow())
    assert not any(k.startswith("AIRFLOW__SECRETS__") for k in plain)
    env = render.airflow_env(parse(metadata_doc(**{"airflow-secrets": "secret-manager"})), 2, Airflow())
    assert env["AIRFLOW__SECRETS__BACKEND"].endswith(".secret_manager.CloudSecretManagerBackend")
    import json

    assert json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {
        "connections_prefix": "airflow-connections", "variables_prefix": "airflow-variables",
        "project_id": parse(metadata_doc()).project_id}
