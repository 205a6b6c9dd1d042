"""The CLI with --provider gce, end to end through the client library into the fake Google server."""
from __future__ import annotations

import json
import os

import pytest
from playground.main import app
from typer.testing import CliRunner

PROJECT = "my-team-project"


@pytest.fixture
def google(fake_google, monkeypatch, tmp_path):
    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for var in ("PLAYGROUND_PROVIDER", "PLAYGROUND_PROJECT", "PLAYGROUND_ZONE"):
        monkeypatch.delenv(var, raising=False)
    return fake_google


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_launch_list_stop_destroy_through_the_cli(google):
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-demo", "--no-wait",
              "--set", "dags-bucket=team-dags", "--zone", "europe-west1-c")
    assert res.exit_code == 0, res.output
    assert "provider: gce (flag --provider)" in flat(res.output) and "no external IP" in flat(res.output)
    assert google.calls("instances.insert")[0]["params"]["zone"] == "europe-west1-c"

    rows = json.loads(run("list", "--json", "--project", PROJECT, "--zone", "europe-west1-c").stdout)
    assert [(r["name"], r["provider"], r["state"]) for r in rows if r["provider"] == "gce"] == \
        [("pg-demo", "gce", "running")]
    assert run("stop", "--provider", "gce", "--project", PROJECT, "--zone", "europe-west1-c",
               "--name", "pg-demo").exit_code == 0
    assert run("destroy", "--provider", "gce", "--project", PROJECT, "--zone", "europe-west1-c",
               "--name", "pg-demo", "--yes").exit_code == 0
    assert not google.compute.instances


def test_settings_come_from_playground_toml_and_config_show_says_where(google, tmp_path, monkeypatch):
    (tmp_path / "playground.toml").write_text(f'provider = "gce"\nproject = "{PROJECT}"\nzone = "us-east1-b"\n')
    monkeypatch.setenv("PLAYGROUND_MACHINE_TYPE", "e2-standard-8")
    shown = json.loads(run("config", "show", "--json").stdout)
    assert shown["zone"] == {"value": "us-east1-b", "source": str(tmp_path / "playground.toml")}
    assert shown["machine_type"] == {"value": "e2-standard-8", "source": "environment PLAYGROUND_MACHINE_TYPE"}
    assert shown["disk_size_gb"]["source"] == "default"
    res = run("launch", "--project", PROJECT, "--name", "pg-toml", "--no-wait")
    assert res.exit_code == 0, res.output
    # rich folds a path longer than the line (pytest-xdist's tmp_path is) anywhere inside it.
    assert f"provider:gce({tmp_path / 'playground.toml'})" in "".join(res.output.split())
    insert = google.calls("instances.insert")[0]
    assert insert["params"]["zone"] == "us-east1-b"
    assert insert["body"]["machineType"].endswith("/machineTypes/e2-standard-8")


def test_api_error_is_one_line_and_non_zero(google):
    google.compute.fail_next["instances.insert"] = "api-disabled"
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-demo", "--no-wait")
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors and "gcloud services enable compute.googleapis.com" in flat(res.output)


def test_bad_zone_and_missing_project(google):
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--zone", "mars-1")
    assert res.exit_code == 1 and "--zone: expected a zone such as europe-west2-b" in flat(res.output)
    res = run("stop", "--provider", "gce", "--name", "x")
    assert res.exit_code == 1 and "--project: the GCP project id is required" in flat(res.output)
    assert not google.requests


def test_status_shows_a_gce_machine_it_cannot_reach_with_the_reason(google, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcloud here, no key in the fresh HOME
    assert run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-demo", "--no-wait").exit_code == 0
    res = run("status", "--project", PROJECT, "--json")
    row = next(r for r in json.loads(res.stdout)["instances"] if r["provider"] == "gce")
    assert res.exit_code == 2 and row["state"] == "unreachable" and row["level"] == "down"
    assert "SSH key missing" in row["error"] and "--tunnel-through-iap" in row["error"]


def test_image_list_shows_the_profile_family_newest_last(google, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261125",
                             created="2026-11-25T09:00:00.000-08:00")
    google.compute.add_image(PROJECT, "playground-current", "playground-current-20261125", airflow="2-11-2",
                             mlflow="3-17-2")
    rows = json.loads(run("image", "list", "--gce", "--project", PROJECT, "--json").stdout)
    assert [(r["name"], r["airflow"], r["mlflow"]) for r in rows] == [
        ("playground-seed-20261124", "2.0.2", "2.17.2"), ("playground-seed-20261125", "2.0.2", "2.17.2")]
    assert google.calls("images.list")[0]["query"]["filter"] == ['labels.playground-profile = "seed"']
    res = run("image", "list", "--gce", "--project", PROJECT, "--profile", "current")
    assert res.exit_code == 0 and "playground-current-20261125" in res.stdout and "2.11.2" in res.stdout


def test_image_list_errors_are_one_line(google):
    google.compute.fail_next["images.list"] = "permission"
    res = run("image", "list", "--gce", "--project", PROJECT)
    assert res.exit_code == 1 and "permission denied in project my-team-project" in flat(res.output)
    res = run("image", "list", "--gce")
    assert res.exit_code == 1 and "--project: the GCP project id is required" in flat(res.output)


def test_launch_says_what_to_run_when_it_may_not_open_ssh_to_iap(google):
    google.compute.fail_next["firewalls.insert"] = "permission"
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-demo", "--no-wait")
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "warning: could not create the firewall rule playground-iap-ssh (permission denied)" in out
    assert "gcloud compute firewall-rules create playground-iap-ssh" in out


def test_launch_that_never_turns_healthy_says_the_vm_exists_and_how_to_remove_it(google, monkeypatch, tmp_path):
    """Waiting goes over SSH through IAP (tests/fakegcloud relays to nothing here): the VM is made, the
    wait runs out, and the one line says it is billed and how to check or destroy it."""
    from support import REPO

    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "google_compute_engine").write_text("not a key\n")
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'fakegcloud'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IAP_TARGETS", "{}")
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-slow", "--timeout", "2")
    assert res.exit_code == 1
    out = flat(res.output)
    assert "instance pg-slow did not turn healthy within 2 s: no health report over SSH" in out
    assert "the VM pg-slow exists and is billed while it runs" in out and "playground destroy --provider gce" in out
    assert [i["name"] for i in google.compute.instances.values()] == ["pg-slow"]


def test_list_and_status_cover_every_zone(google):
    for zone in ("europe-west2-b", "us-central1-a"):
        assert run("launch", "--provider", "gce", "--project", PROJECT, "--name", f"pg-{zone[:2]}", "--zone", zone,
                   "--no-wait").exit_code == 0
    rows = json.loads(run("list", "--json", "--project", PROJECT).stdout)
    assert sorted((r["name"], r["zone"]) for r in rows if r["provider"] == "gce") == [
        ("pg-eu", "europe-west2-b"), ("pg-us", "us-central1-a")]
    # A command on one VM without --zone finds its zone.
    res = run("stop", "--provider", "gce", "--project", PROJECT, "--name", "pg-us")
    assert res.exit_code == 0, res.output
    assert google.calls("instances.stop")[0]["params"]["zone"] == "us-central1-a"


def test_image_list_reads_image_project_from_the_settings(google, monkeypatch):
    google.compute.add_image("team-images", "playground-seed", "playground-seed-20261201")
    monkeypatch.setenv("PLAYGROUND_IMAGE_PROJECT", "team-images")
    rows = json.loads(run("image", "list", "--gce", "--project", PROJECT, "--json").stdout)
    assert [r["name"] for r in rows] == ["playground-seed-20261201"]
    assert google.calls("images.list")[0]["params"]["project"] == "team-images"


def test_autostop_is_set_with_the_instances_fingerprint_and_keeps_the_other_attributes(google):
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-auto", "--no-wait",
              "--zone", "europe-west1-c", "--autostop", "60", "--set", "dags-bucket=team-dags")
    assert res.exit_code == 0, res.output
    items = {i["key"]: i["value"] for i in google.calls("instances.insert")[0]["body"]["metadata"]["items"]}
    assert items["autostop"] == "60" and items["dags-bucket"] == "team-dags"
    # Someone else changes the metadata between our read and our write: Compute Engine answers 412, and the
    # CLI reads it again rather than overwriting that change.
    inst = google.compute.instances[(PROJECT, "europe-west1-c", "pg-auto")]
    original = google.compute.handle

    def meanwhile(mid, p, query, body):
        if mid == "instances.setMetadata" and len(google.calls("instances.setMetadata")) == 1:
            inst["metadata"] = {"kind": "compute#metadata", "fingerprint": "changed-meanwhile",
                                "items": inst["metadata"]["items"] + [{"key": "timezone", "value": "Europe/Paris"}]}
        return original(mid, p, query, body)

    google.compute.handle = meanwhile
    res = run("autostop", "off", "--name", "pg-auto", "--provider", "gce", "--project", PROJECT,
              "--zone", "europe-west1-c")
    assert res.exit_code == 0, res.output
    assert "autostop on pg-auto: off (takes effect now)" in flat(res.output)
    sets = google.calls("instances.setMetadata")
    assert len(sets) == 2  # the first refused with 412, the second with the fresh fingerprint
    items = {i["key"]: i["value"] for i in inst["metadata"]["items"]}
    assert items["autostop"] == "off" and items["dags-bucket"] == "team-dags" and items["timezone"] == "Europe/Paris"
    assert not google.violations


def test_a_bad_autostop_is_one_line_and_sends_nothing(google):
    res = run("autostop", "90m", "--name", "pg-auto", "--provider", "gce", "--project", PROJECT)
    assert res.exit_code == 1
    assert "error: MINUTES: expected off or minutes from 1 to 1440 (got '90m')" in flat(res.output)
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-auto", "--no-wait",
              "--autostop", "2000")
    assert res.exit_code == 1 and "--autostop: expected off or minutes from 1 to 1440 (got '2000')" in flat(res.output)
    res = run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-auto", "--no-wait",
              "--autostop", "5", "--set", "autostop=10")
    assert res.exit_code == 1 and "--autostop: given twice" in flat(res.output)
    assert not google.requests
