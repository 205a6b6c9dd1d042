"""`playground image push --gce` end to end: a real disk.raw (made by disk.py from a small rootfs) archived
with tar, uploaded by google-cloud-storage to gcp-storage-emulator, imported by images.insert into the fake
Compute API (which reads the archive back from the emulator as GCE reads the bucket), then launched as a
Shielded VM from the family. Booting the real image's disk is tests/image/test_vm_boot.py's."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import urllib.request

import pytest
from playground.image import disk
from playground.main import app
from support import storage_emulator
from test_image_disk import tiny_rootfs
from typer.testing import CliRunner

PROJECT = "my-team-project"
BUCKET = f"{PROJECT}-playground-images"


@pytest.fixture
def storage(tmp_path, monkeypatch):
    with storage_emulator(tmp_path, PROJECT) as endpoint:
        monkeypatch.setenv("PLAYGROUND_STORAGE_ENDPOINT", endpoint)
        yield endpoint


def objects(endpoint: str, bucket: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/storage/v1/b/{bucket}/o") as resp:
        return [o["name"] for o in json.load(resp).get("items", [])]


def buckets(endpoint: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/storage/v1/b?project={PROJECT}") as resp:
        return [b["name"] for b in json.load(resp).get("items", [])]


@pytest.fixture
def local_image(tmp_path, monkeypatch):
    """A local image folder as the build leaves it: rootfs, a bootable disk.raw, the manifest."""
    for tool in ("mkfs.ext4", "mkfs.vfat", "mcopy", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install.sh installs it)")
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for var in ("PLAYGROUND_PROVIDER", "PLAYGROUND_PROJECT", "PLAYGROUND_ZONE", "PLAYGROUND_IMAGE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "home/images/local/playground-local-20261201-120000"
    folder.mkdir(parents=True)
    root = tiny_rootfs(folder)
    info = disk.make_disk(root, folder / "disk.raw", 10_000, None)
    (folder / "manifest.json").write_text(json.dumps({
        "name": folder.name, "profile": "local", "os": "Debian GNU/Linux 12 (bookworm)", "disk": info,
        "components": {"airflow": "2.11.2", "mlflow": "3.17.2", "postgresql": "15.20"},
        "source_hash": "d080b4820ce509a6",
        "checksum": "sha256:00"}))
    return folder


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_push_imports_the_disk_into_the_family_and_launch_boots_it_as_a_shielded_vm(fake_google, storage,
                                                                                      local_image):
    fake_google.compute.storage_endpoint = storage
    res = run("image", "push", "--gce", "--project", PROJECT, "--json")
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout[res.stdout.index("{"):])
    assert made["image"] == local_image.name and made["family"] == "playground-local"
    assert made["source"] == f"https://storage.googleapis.com/{BUCKET}/{local_image.name}.tar.gz"
    assert made["bucket_created"] and BUCKET in buckets(storage)
    assert objects(storage, BUCKET) == [], "the archive is removed once the image is READY"

    insert = fake_google.calls("images.insert")[0]["body"]
    assert insert["rawDisk"] == {"source": made["source"], "containerType": "TAR"}
    assert insert["guestOsFeatures"] == [{"type": "UEFI_COMPATIBLE"}]
    assert insert["labels"] == {"managed-by": "playground", "playground-profile": "local", "built-from": "local-disk",
                                "airflow": "2-11-2", "mlflow": "3-17-2", "postgresql": "15",
                                "source-hash": "d080b4820ce509a6"}
    image = fake_google.compute.images[(PROJECT, "playground-local")]
    assert image["status"] == "READY" and image["diskSizeGb"] == str(local_image.joinpath("disk.raw").stat().st_size
                                                                     // 2**30)
    listed = json.loads(run("image", "list", "--gce", "--profile", "local", "--project", PROJECT, "--json").stdout)
    assert [(r["name"], r["airflow"], r["mlflow"]) for r in listed] == [(local_image.name, "2.11.2", "3.17.2")]

    res = run("launch", "--provider", "gce", "--profile", "local", "--project", PROJECT, "--name", "pg-disk",
              "--no-wait")
    assert res.exit_code == 0, res.output
    body = fake_google.calls("instances.insert")[0]["body"]
    assert body["disks"][0]["initializeParams"]["sourceImage"] == image["selfLink"]
    assert body["shieldedInstanceConfig"]["enableSecureBoot"] is True

    res = run("launch", "--provider", "gce", "--profile", "seed-local", "--project", PROJECT, "--no-wait")
    assert res.exit_code == 1 and "push it with `playground image push --gce --profile seed-local`" in \
        " ".join(res.output.split())
    res = run("image", "push", "--gce", "--project", PROJECT)
    assert res.exit_code == 1 and "already exists" in res.output and "pushed before" in " ".join(res.output.split())


def test_the_archive_is_disk_raw_alone_sparse_in_gnu_tar(tmp_path, local_image):
    from playground.image import push

    out = tmp_path / "disk.tar.gz"
    size = push.archive(local_image / "disk.raw", out, lambda s: None)
    assert size == out.stat().st_size < 50 * 2**20, "the zeros of a sparse disk cost nothing"
    with tarfile.open(out, "r:gz") as tar:
        members = tar.getmembers()
    assert [(m.name, m.size) for m in members] == [("disk.raw", (local_image / "disk.raw").stat().st_size)]
    assert members[0].type == tarfile.GNUTYPE_SPARSE, "GNU's sparse member (tar --format=oldgnu -S)"
    with pytest.raises(Exception, match="named disk.raw"):
        os.rename(local_image / "disk.raw", local_image / "other.raw")
        push.archive(local_image / "other.raw", out, lambda s: None)


def test_a_shielded_vm_from_an_image_that_is_not_uefi_compatible_is_refused(fake_google, monkeypatch, tmp_path):
    """What GCE refuses, the fake refuses: a BIOS-only image cannot boot a Shielded VM."""
    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-bios")
    fake_google.compute.images[(PROJECT, "playground-seed")]["guestOsFeatures"] = []
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    res = run("launch", "--provider", "gce", "--profile", "seed", "--project", PROJECT, "--name", "pg-bios",
              "--no-wait")
    assert res.exit_code == 1 and "UEFI-compatible" in " ".join(res.output.split())
    assert not fake_google.compute.instances


def test_a_bad_archive_fails_the_import_and_leaves_nothing(fake_google, storage, local_image, monkeypatch):
    """GCE ends the import's operation in error; the push removes the archive and the FAILED image."""
    from playground.image import push

    fake_google.compute.storage_endpoint = storage

    def wrong_archive(disk_path, out, report):
        with tarfile.open(out, "w:gz") as tar:
            tar.add(disk_path.parent / "manifest.json", arcname="manifest.json")
        return out.stat().st_size

    monkeypatch.setattr(push, "archive", wrong_archive)
    res = run("image", "push", "--gce", "--project", PROJECT)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "INVALID_IMAGE_FILE" in text and "disk.raw" in text, text
    assert objects(storage, BUCKET) == []
    assert not fake_google.compute.all_images.get(PROJECT), "no FAILED image left behind"


def test_push_refuses_bad_input_before_any_request(fake_google, local_image):
    cases = [(("image", "push", "--project", PROJECT), "--gce is required"),
             (("image", "push", "--gce", "--project", PROJECT, "--profile", "seed"), "built on GCE already"),
             (("image", "push", "--gce", "--project", PROJECT, "--bucket", "Bad_Bucket!"), "--bucket: expected"),
             (("image", "push", "--gce", "--project", PROJECT, "--image", "nope"), "--image: no local local image"),
             (("image", "push", "--gce", "--project", "X"), "project")]
    for args, message in cases:
        res = run(*args)
        assert res.exit_code != 0 and message in " ".join(res.output.split()), (args, res.output)
    assert not fake_google.requests


def test_google_out_of_reach_is_one_line(local_image, monkeypatch):
    for var in ("PLAYGROUND_GOOGLE_ENDPOINT", "PLAYGROUND_STORAGE_ENDPOINT"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ANONYMOUS", "1")
    res = run("image", "push", "--gce", "--project", PROJECT)
    assert res.exit_code == 1 and "cannot reach the compute API at http://127.0.0.1:9" in " ".join(res.output.split())
