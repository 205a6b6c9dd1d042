"""`playground image build` on bad input: one clear line, non-zero exit, nothing made.

These run the real Packer (validate) on a copy of the image definition with one
thing broken; the failures that need a build container are in
tests/image/test_build_faults.py.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest
from playground import paths
from playground.image import packer
from playground.main import app
from support import REPO
from typer.testing import CliRunner

BUILD_TOOLS = ("packer", "debootstrap", "systemd-nspawn", "ssh-keygen")


def run(*args: str):
    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return res.exit_code, " ".join(res.output.split())


def one_error_line(out: str) -> str:
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1, out
    return errors[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("PLAYGROUND_PROJECT", "PLAYGROUND_ZONE", "PLAYGROUND_GCE_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def broken_definition(tmp_path, monkeypatch):
    """A copy of the repository's image definition the test may break (the template finds the agent,
    units, DAGs and lineage plugin beside packer/, so those are linked in)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "packer", repo / "packer")
    for part in ("agent", "units", "dags", "lineage"):
        (repo / part).symlink_to(REPO / part)
    monkeypatch.setattr(paths, "PACKER_DIR", repo / "packer")
    return repo / "packer"


def test_missing_packer_variable_is_named_before_anything_is_made(home, broken_definition, monkeypatch):
    for tool in BUILD_TOOLS:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (.ci/run installs it)")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    profile = broken_definition / "profiles" / "local.pkrvars.hcl"
    profile.write_text("".join(line for line in profile.read_text().splitlines(keepends=True)
                               if not line.startswith("airflow_version")))
    code, out = run("image", "build")
    assert code == 1
    assert ('packer template (local profile): Unset variable "airflow_version": '
            "set it in packer/profiles/local.pkrvars.hcl") in one_error_line(out)
    # Checked before the base rootfs, the copy or the container: nothing was made or left.
    assert not (home.parent / "cache" / "base").exists()
    assert [p.name for p in (home / "images" / "local").iterdir()] == [".build.lock"]


def test_wrong_type_in_a_profile_is_named(home, broken_definition):
    if shutil.which("packer") is None:
        pytest.skip("packer not installed (.ci/run installs it)")
    profile = broken_definition / "profiles" / "seed.pkrvars.hcl"
    profile.write_text(profile.read_text() + 'use_iap = "sometimes"\n')
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    assert code == 1
    line = one_error_line(out)
    assert "packer template (seed profile):" in line and "use_iap" in line, line


def test_local_build_needs_root(home, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out = run("image", "build")
    assert code == 1 and "building the local image needs root" in one_error_line(out) and "sudo" in out
    assert not (home / "images" / "local").exists()


@pytest.mark.parametrize("tool, package", [("packer", "packer"), ("debootstrap", "debootstrap"),
                                           ("systemd-nspawn", "systemd-container")])
def test_missing_build_tool_says_how_to_install_it(home, monkeypatch, tmp_path, tool, package):
    """Only `tool` is missing: the others are linked into a PATH of their own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for other in BUILD_TOOLS:
        found = shutil.which(other)
        if other != tool and found:
            (bin_dir / other).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, out = run("image", "build")
    assert code == 1
    assert f"{tool} is not installed: apt-get install {package}" in one_error_line(out)
    assert not (home / "images" / "local").exists()


def test_gce_build_without_packer(home, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    assert code == 1 and "packer is not installed: apt-get install packer" in one_error_line(out)


@pytest.mark.parametrize("args, expected", [
    (["--profile", "nosuch"], "--profile: unknown profile 'nosuch'; expected one of current, local, seed, seed-local"),
    (["--profile", "seed"], "--profile: seed is a GCE profile"),
    (["--gce", "--profile", "seed"], "--project: the GCP project id is required for the gce provider"),
    (["--gce", "--profile", "local", "--project", "p-123456"], "--profile: local is built here and pushed"),
    (["--gce", "--project", "My_Project"], "--project: expected a GCP project id"),
    (["--gce", "--project", "my-team-project", "--zone", "europe"], "--zone: expected a zone such as europe-west2-b"),
])
def test_bad_flags(home, args, expected):
    code, out = run("image", "build", *args)
    assert code == 1 and expected in one_error_line(out)
    assert not (home / "images").exists()


def test_gce_build_takes_the_settings_profile_and_project(home, monkeypatch):
    """No --profile with --gce means gce_profile from the settings; an unknown one is named."""
    monkeypatch.setenv("PLAYGROUND_GCE_PROFILE", "nosuch")
    monkeypatch.setenv("PLAYGROUND_PROJECT", "my-team-project")
    code, out = run("image", "build", "--gce")
    assert code == 1 and "--profile: unknown profile 'nosuch'" in one_error_line(out)


# Packer 1.6.6's own error texts (as its machine-readable ui,error lines carry them) and the line made of each.
@pytest.mark.parametrize("raw, expected", [
    ('Error: Unset variable "airflow_version"\\n\\nA used variable must be set or have a default value; see\\n'
     "https://packer.io/docs/configuration/from-1.5/syntax for details.\\n\\n",
     'Unset variable "airflow_version"'),
    ('Error: Undefined -var variable\\n\\nA "nosuch" variable was passed in the command line but was not found in '
     "known\\nvariables. To declare variable \"nosuch\"%!(PACKER_COMMA) place this block in one of your .pkr\\n",
     'Undefined -var variable: A "nosuch" variable was passed in the command line but was not found in known '
     "variables"),
    ("Error: 1 error(s) occurred:\\n\\n* a project_id must be specified\\n\\n  on packer/template/sources.pkr.hcl "
     "line 4:\\n  (source code not available)\\n\\n",
     "a project_id must be specified (packer/template/sources.pkr.hcl line 4)"),
    ("\\n--> googlecompute.gce: google: could not find default credentials.",
     "google: could not find default credentials."),
    ("Script exited with non-zero exit status: 1.Allowed exit codes are: [0]",
     "Script exited with non-zero exit status: 1.Allowed exit codes are: [0]"),
])
def test_packer_errors_become_one_line(raw, expected):
    assert packer.error_line(raw) == expected


def test_packer_progress_names_the_script():
    line = ("1795633387,,ui,say,==> null.local: Provisioning with shell script: "
            "/src/packer/template/../scripts/20-postgresql.sh")
    steps = packer.scripts()
    assert steps[0] == "10-base.sh" and steps[-1] == "90-hygiene.sh" and "lib.sh" not in steps
    n = steps.index("20-postgresql.sh") + 1
    assert packer.progress_of(line) == f"provisioning: 20-postgresql.sh ({n}/{len(steps)})"
    assert packer.progress_of("1795633387,,ui,message,    null.local: Setting up libpq5") is None


def test_gce_build_without_credentials_is_one_line_and_starts_nothing(home, monkeypatch, tmp_path):
    if shutil.which("packer") is None:
        pytest.skip("packer not installed (.ci/run installs it)")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    assert code == 1
    assert "no Google credentials: run `gcloud auth application-default login`" in one_error_line(out)
    assert not (tmp_path / "state" / "playground" / "logs").exists()


def test_gce_build_opens_ssh_to_iap_then_runs_packer(home, fake_google, monkeypatch, tmp_path):
    """The firewall rule through the fake Google server (checked against Compute's discovery document),
    then the real `packer build -only=googlecompute.gce`: validated, started, and stopped by its builder at
    the credentials lookup (an unreadable GOOGLE_APPLICATION_CREDENTIALS file fails before any network call;
    GCE_METADATA_HOST points the metadata fallback at a closed loopback port all the same)."""
    if shutil.which("packer") is None:
        pytest.skip("packer not installed (.ci/run installs it)")
    google = fake_google
    google.compute.add_image("ubuntu-os-pro-cloud", "ubuntu-pro-1804-lts", "ubuntu-pro-1804-bionic-v20261110")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    (rule,) = [c["body"] for c in google.calls("firewalls.insert")]
    assert rule["targetTags"] == ["allow-iap-ssh"] and rule["sourceRanges"] == ["35.235.240.0/20"]
    assert code == 1
    line = one_error_line(out)
    assert "packer build failed: google: error getting credentials" in line, line
    assert "gcloud auth application-default login" in line
    (log,) = (tmp_path / "state" / "playground" / "logs").glob("image-build-playground-seed-*.log")
    assert "googlecompute.gce" in log.read_text()


def test_a_failed_script_is_named_with_its_status_and_last_error():
    """Lines as Packer 1.6.6 printed them when 30-airflow.sh could not reach the package index."""
    lines = [
        "1795634266,,ui,message,    null.local: Processing triggers for libc-bin (2.36-9+deb12u14) ...",
        "1795634267,,ui,say,==> null.local: Provisioning with shell script: "
        "/src/packer/template/../scripts/30-airflow.sh",
        "1795634279,,ui,message,    null.local: Requirement already satisfied: setuptools in /opt/airflow/lib",
        "1795634294,,ui,error,==> null.local: ERROR: Could not find a version that satisfies the requirement wheel",
        "1795634294,,ui,error,==> null.local: ERROR: No matching distribution found for wheel",
        "1795634294,,ui,error,Build 'null.local' errored after 1 minute 3 seconds: Script exited with non-zero "
        "exit status: 1.Allowed exit codes are: [0]",
        "1795634294,,ui,error,\\n==> Some builds didn't complete successfully and had errors:",
        "1795634294,null.local,error,Script exited with non-zero exit status: 1.Allowed exit codes are: [0]",
        "1795634294,,ui,error,--> null.local: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]",
        "1795634294,,ui,say,\\n==> Builds finished but no artifacts were created.",
    ]
    output = packer.BuildOutput()
    statuses = [output.feed(line + "\n") for line in lines]
    steps = packer.scripts()
    assert f"provisioning: 30-airflow.sh ({steps.index('30-airflow.sh') + 1}/{len(steps)})" in statuses
    assert output.failure(1) == "30-airflow.sh exited with status 1: ERROR: No matching distribution found for wheel"


def test_a_failure_before_any_script_is_packers_own_error():
    output = packer.BuildOutput()
    output.feed("1795634231,,ui,error,Build 'null.local' errored after 2 minutes: Timeout waiting for SSH.\n")
    output.feed("1795634231,,ui,error,--> null.local: Timeout waiting for SSH.\n")
    assert output.failure(1) == "Timeout waiting for SSH."


def test_sigterm_during_a_build_raises_through_the_clean_up_and_is_restored_after():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(packer.BuildInterrupted) as caught:
        with packer.signals_raise():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # not reached: the handler raises as soon as the signal lands
    assert caught.value.exit_code == 128 + signal.SIGTERM
    assert "image build interrupted (SIGTERM): nothing was kept" in str(caught.value)
    assert signal.getsignal(signal.SIGTERM) == before


def test_gce_build_whose_base_image_family_is_gone_fails_before_anything_is_made(home, fake_google):
    """The seed's base is looked up first (Google's family lookup skips deprecated images): when it answers
    404 the build says so in one line, before the firewall rule or Packer."""
    if shutil.which("packer") is None:
        pytest.skip("packer not installed (.ci/run installs it)")
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    assert code == 1
    line = one_error_line(out)
    assert "the seed profile's base image family ubuntu-pro-1804-lts was not found in project " \
           "ubuntu-os-pro-cloud" in line
    assert "packer/profiles/seed.pkrvars.hcl" in line
    assert [c["method"] for c in fake_google.requests] == ["images.getFromFamily"]
    (call,) = fake_google.requests
    assert call["params"] == {"project": "ubuntu-os-pro-cloud", "family": "ubuntu-pro-1804-lts"}


def test_the_end_of_support_1804_family_is_named_with_the_way_left(home, fake_google, monkeypatch):
    """A var-file back on ubuntu-os-cloud's ubuntu-1804-lts (empty since 2023-05-31) gets the Pro family named."""
    from playground.image import profiles

    plain = profiles.variables
    monkeypatch.setattr(profiles, "variables", lambda profile: {
        **plain(profile), "source_image_family": "ubuntu-1804-lts", "source_image_project": "ubuntu-os-cloud"})
    if shutil.which("packer") is None:
        pytest.skip("packer not installed (.ci/run installs it)")
    code, out = run("image", "build", "--gce", "--profile", "seed", "--project", "my-team-project")
    assert code == 1
    line = one_error_line(out)
    assert "base image family ubuntu-1804-lts was not found in project ubuntu-os-cloud" in line
    assert "ubuntu-pro-1804-lts in ubuntu-os-pro-cloud" in line, "the way left for 18.04 is named"
