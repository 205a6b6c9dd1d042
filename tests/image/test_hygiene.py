"""Image hygiene, checked on the built rootfs itself (pristine, never booted)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def rootfs(image):
    return image / "rootfs"


def test_no_ssh_host_keys_and_empty_machine_id(rootfs):
    assert not list((rootfs / "etc/ssh").glob("ssh_host_*"))
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert not (rootfs / "etc/hostname").exists()


def test_no_caches_or_history(rootfs):
    assert not (rootfs / "root/.cache/pip").exists()
    assert not list((rootfs / "var/cache/apt").glob("*.bin")), "apt's pkgcache.bin / srcpkgcache.bin"
    assert not (rootfs / "root/airflow").exists(), "build-time AIRFLOW_HOME"
    assert not list((rootfs / "var/cache/apt/archives").glob("*.deb"))
    lists = {p.name for p in (rootfs / "var/lib/apt/lists").iterdir()}
    assert lists <= {"lock", "partial", "auxfiles"}, f"apt's package lists: {sorted(lists)[:5]}"
    for hist in ("root/.bash_history", "root/.python_history"):
        assert not (rootfs / hist).exists()


def test_nothing_of_the_build_left(rootfs):
    """The build's scratch, logs, logins and answers: none is the instance's, and some say how it was built."""
    for scratch in ("tmp", "var/tmp", "var/log/apt"):
        assert not list((rootfs / scratch).iterdir()), scratch
    assert not (rootfs / "tmp/playground-src").exists()
    assert not list((rootfs / "var/log/journal").glob("*/*")), "the build's journal"
    assert not list((rootfs / "var/log").glob("*.log"))
    for record in ("wtmp", "btmp", "lastlog"):
        path = rootfs / "var/log" / record
        assert not path.exists() or path.stat().st_size == 0, f"/var/log/{record} holds the build's sessions"
    assert not list((rootfs / "var/cache/debconf").glob("*-old"))
    assert not list((rootfs / "var/lib/airflow").glob("*.cfg")), "a build-time airflow.cfg"


def test_no_secret_or_build_access_left(rootfs):
    # The image folder holds the rootfs, the bootable disk made from it and their manifest, nothing of the
    # build (its SSH key sat beside them).
    assert sorted(p.name for p in rootfs.parent.iterdir()) == ["disk.raw", "manifest.json", "rootfs"]
    assert list((rootfs / "var/lib/playground/secrets").iterdir()) == []
    assert not list((rootfs / "etc/playground").glob("*.env"))
    assert not (rootfs / "root/.ssh/authorized_keys").exists()
    assert not (rootfs / "etc/ssh/sshd_config.d/99-playground-build.conf").exists()
    assert not (rootfs / "usr/sbin/policy-rc.d").exists()
    assert not (rootfs / "etc/pip.conf").exists()


def test_no_private_key_in_the_image(rootfs):
    """Any private key baked in would be the same in every machine (host keys are made at first boot)."""
    found = []
    for top in ("etc", "root", "home", "var/lib/playground", "var/lib/postgresql", "var/lib/airflow",
                "var/lib/mlflow"):
        for path in (rootfs / top).rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 1_000_000:
                try:
                    if b"PRIVATE KEY-----" in path.read_bytes():
                        found.append(str(path.relative_to(rootfs)))
                except OSError:
                    pass
    assert not found, found


def test_postgresql_runs_without_tls(rootfs):
    confs = list((rootfs / "etc/postgresql").glob("*/main/conf.d/10-playground.conf"))
    assert confs and all("\nssl = off\n" in c.read_text() for c in confs)


def test_manifest_describes_the_artifact(image, image_profile):
    import json

    from playground.image import profiles

    m = json.loads((image / "manifest.json").read_text())
    assert m["profile"] == image_profile
    assert m["checksum"].startswith("sha256:") and len(m["checksum"]) == 71
    assert set(m["components"]) >= {"python", "postgresql", "airflow", "mlflow", "gcsfuse", "cloud-sql-proxy"}
    assert m["source_image"].startswith(f"debian {profiles.debian_suite(image_profile)} ")
    assert m["components"]["airflow"] == profiles.variables(image_profile)["airflow_version"]
    # One build, one manifest: the bootable disk is made from this rootfs (cli/playground/image/disk.py).
    assert m["disk"]["file"] == "disk.raw" and (image / "disk.raw").stat().st_size == m["disk"]["size_bytes"]
