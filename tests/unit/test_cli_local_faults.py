"""Local-provider faults that need no instance: one clear line, non-zero exit, nothing made."""
from __future__ import annotations

import json
import os

import pytest
from playground.main import app
from typer.testing import CliRunner


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLAYGROUND_PROVIDER", raising=False)
    monkeypatch.delenv("PLAYGROUND_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run(*args: str):
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, " ".join(res.output.split())


def fake_image(home):
    image = home / "images" / "local" / "playground-local-20260101-000000"
    (image / "rootfs").mkdir(parents=True)
    (image / "manifest.json").write_text("{}")
    return image


def test_no_image_and_no_build(home):
    code, out = run("launch", "--project", "team-demo", "--no-build")
    assert code == 1 and "no local image for profile 'local': run `playground image build`" in out
    assert not (home / "instances").exists()


def test_not_root(home, monkeypatch):
    fake_image(home)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out = run("launch", "--project", "team-demo", "--no-build")
    assert code == 1 and "needs root" in out and "sudo" in out
    assert not (home / "instances").exists()


def test_no_systemd_nspawn(home, monkeypatch, tmp_path):
    fake_image(home)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, out = run("launch", "--project", "team-demo", "--no-build")
    assert code == 1 and "systemd-nspawn is not installed: apt-get install systemd-container" in out
    assert not (home / "instances").exists()


@pytest.mark.parametrize("args, expected", [
    (["--project", "Team_Demo"], "--project: expected a GCP project id"),
    (["--project", "team-demo", "--name", "9lives"], "--name: expected 1-31 of a-z 0-9 -"),
    (["--project", "team-demo", "--set", "novalue"], "--set: expected KEY=VALUE"),
    (["--project", "team-demo", "--provider", "aws"], "expected one of local, gce, got 'aws'"),
])
def test_bad_flags(home, args, expected):
    code, out = run("launch", *args)
    assert code == 1 and expected in out
    assert not (home / "instances").exists()


def test_unknown_instance(home):
    for cmd in (["start", "--name", "ghost"], ["stop", "--name", "ghost"], ["destroy", "--name", "ghost", "--yes"],
                ["tunnel", "--name", "ghost"]):
        code, out = run(*cmd)
        assert code == 1 and "no local instance named 'ghost'" in out, cmd


def test_image_list_local(home):
    image = fake_image(home)
    (image / "manifest.json").write_text(json.dumps({
        "name": image.name, "built_at": "2026-01-01T00:00:00Z", "components": {"airflow": "2.11.2", "mlflow": "3.17.2"},
        "size_bytes": 3 * 2**29, "checksum": "sha256:" + "0" * 64}))
    (home / "images" / "local" / "playground-local-20260102-000000.building").mkdir()  # unfinished: not listed
    res = CliRunner().invoke(app, ["image", "list", "--json"], catch_exceptions=False)
    assert res.exit_code == 0
    assert json.loads(res.stdout) == [{"name": image.name, "created": "2026-01-01T00:00:00Z", "airflow": "2.11.2",
                                       "mlflow": "3.17.2", "size": "1.50 GiB", "checksum": "sha256:" + "0" * 64,
                                       "path": str(image)}]
    code, out = run("image", "list", "--profile", "nosuch")
    assert code == 1 and "--profile: unknown profile 'nosuch'" in out
