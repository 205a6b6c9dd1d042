"""A real local instance booted from the newest image of a local profile, shared by the image checks.

`--image-profile seed-local` runs the same checks on the seed's stack (Airflow 2.0 on Debian 11);
the default is the local profile.

These checks are pytest-testinfra over SSH, so they run unchanged against a GCE
test instance: pytest tests/image --hosts=ssh://USER@HOST (and --manifest FILE).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import testinfra
from playground.image import local_build
from playground.local import instance
from support import need_local


def pytest_addoption(parser):
    parser.addoption("--manifest", default=None, help="image manifest.json for a --hosts run against GCE")
    parser.addoption("--image-profile", default="local", help="the local profile whose image is checked "
                     "(local, seed-local)")


@pytest.fixture(scope="session")
def image_profile(request) -> str:
    from playground.image import profiles

    profile = request.config.getoption("--image-profile")
    if profile not in profiles.local_profiles():
        raise pytest.UsageError(f"--image-profile: expected one of {', '.join(profiles.local_profiles())}")
    return profile


@pytest.fixture(scope="session")
def image(request, image_profile) -> Path:
    if request.config.getoption("hosts"):
        pytest.skip("checking given --hosts, not a local image")
    need_local()
    # Only an image built from this very tree counts: a stale one would test old code.
    found = local_build.newest_image(image_profile, matching_source=True)
    if found is None:
        found = local_build.build_local(image_profile, report=lambda s: print("image build:", s))
    return found


@pytest.fixture(scope="session")
def manifest(request, image_or_none) -> dict:
    given = request.config.getoption("--manifest")
    if given:
        return json.loads(Path(given).read_text())
    return json.loads((image_or_none / "manifest.json").read_text())


@pytest.fixture(scope="session")
def image_or_none(request):
    if request.config.getoption("hosts"):
        return None
    return request.getfixturevalue("image")


@pytest.fixture(scope="session")
def local_instance(request, image_profile):
    """One launched instance for the session; destroyed at the end."""
    if request.config.getoption("hosts"):
        yield None
        return
    img = request.getfixturevalue("image")
    name = "pgtest-main"
    if (instance.paths.instances_dir() / name).exists():
        instance.destroy(name)
    inst, _ = instance.launch(name, "playground-test", {}, img, image_profile, report=lambda s: None, timeout=300)
    yield inst
    instance.destroy(name)


@pytest.fixture(scope="session")
def host(request, local_instance):
    hosts = request.config.getoption("hosts")
    if hosts:
        return testinfra.get_host(hosts.split(",")[0], sudo=True)
    key = instance.ssh_key()
    known = local_instance.dir / "known_hosts"
    cfg = local_instance.dir / "ssh_config"
    cfg.write_text(f"Host *\n  IdentityFile {key}\n  StrictHostKeyChecking no\n  UserKnownHostsFile {known}\n"
                   "  LogLevel ERROR\n  BatchMode yes\n")
    return testinfra.get_host(f"ssh://{instance.SSH_USER}@{local_instance.address}", ssh_config=str(cfg),
                              sudo=True)
