"""`playground image push --gce`: the local image's disk, the one tested here, becomes a GCE image (issue 20).

Three steps, each as Google documents them:
1. archive: `disk.raw` alone in a gzip-compressed tar, GNU's old format and sparse (`tar --format=oldgnu
   -Sczf`, Google's command for a manual import: https://cloud.google.com/compute/docs/import/import-existing-image);
2. upload to a Cloud Storage bucket of the project (google-cloud-storage, resumable, in 16 MiB chunks);
3. `images.insert` with `rawDisk.source` the object's https://storage.googleapis.com/BUCKET/OBJECT URL (the
   form the Compute API documents for rawDisk.source), in the family playground-PROFILE that `launch` takes,
   labelled with the manifest's versions, and guestOsFeatures UEFI_COMPATIBLE: a Shielded VM (what `launch`
   makes) needs an image marked UEFI-compatible, and the disk boots UEFI with Secure Boot (tests/image/
   test_vm_boot.py boots it so).
The archive is removed from the bucket once the image is READY (Google has copied it), unless kept; a
failure removes what this push made: the archive object, and an image left FAILED.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from .. import paths
from ..errors import PlaygroundError
from ..gce.google import reachable, storage_client

Report = Callable[[str], None]
GCS_URL = "https://storage.googleapis.com"
CHUNK = 16 << 20  # resumable upload chunks (a multiple of 256 KiB, as GCS requires)
GUEST_OS_FEATURES = ["UEFI_COMPATIBLE"]
# Bucket names: 3-63 of a-z 0-9 - _ . , starting and ending with a letter or digit
# (https://cloud.google.com/storage/docs/buckets#naming); without dots here (no domain verification).
BUCKET_RE = r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$"


def default_bucket(project: str) -> str:
    return f"{project}-playground-images"


def check_bucket(name: str) -> None:
    import re

    if not re.match(BUCKET_RE, name) or name.startswith("goog") or "google" in name:
        raise PlaygroundError(f"--bucket: expected 3-63 of a-z 0-9 - _ (not starting with goog, no google), "
                              f"got {name!r}")


def label(value: str) -> str:
    """A version as a label value (lowercase, digits, - and _ only)."""
    import re

    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def archive(disk: Path, out: Path, report: Report) -> int:
    """disk (named disk.raw) into out as Google's import wants it; returns the archive's bytes."""
    if disk.name != "disk.raw":
        raise PlaygroundError(f"GCE imports a disk named disk.raw, got {disk.name}")
    compressor = "pigz" if shutil.which("pigz") else "gzip"
    report(f"archiving {disk.name} ({disk.stat().st_size / 2**30:.0f} GiB, sparse) with tar and {compressor}")
    proc = subprocess.run(["tar", "--format=oldgnu", "--sparse", f"--use-compress-program={compressor}",
                           "-cf", str(out), "-C", str(disk.parent), disk.name], capture_output=True, text=True)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        raise PlaygroundError(f"tar of {disk} failed: {proc.stderr.strip()[-300:]}")
    return out.stat().st_size


class _Reading:
    """A file that reports how much of it has been read (the upload's progress)."""

    def __init__(self, fh, total: int, report: Report) -> None:
        self.fh, self.total, self.report, self.done, self.shown = fh, total, report, 0, -1

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.done += len(data)
        percent = self.done * 100 // max(self.total, 1)
        if percent != self.shown:
            self.shown = percent
            self.report(f"uploading: {self.done / 2**20:.0f} of {self.total / 2**20:.0f} MiB ({percent}%)")
        return data

    def __getattr__(self, name):
        return getattr(self.fh, name)


def _storage_error(exc: Exception, project: str, bucket: str) -> PlaygroundError:
    from google.api_core import exceptions as gex

    msg = (getattr(exc, "message", None) or str(exc)).strip()
    if isinstance(exc, gex.Forbidden):
        return PlaygroundError(f"permission denied on bucket {bucket} in project {project}: {msg} (the push needs "
                               "roles/storage.admin on the bucket, or storage.objects.create and .delete)")
    if isinstance(exc, gex.GoogleAPICallError):
        return PlaygroundError(f"Cloud Storage error ({exc.code}) on bucket {bucket}: {msg}")
    return PlaygroundError(f"Cloud Storage call failed on bucket {bucket}: {type(exc).__name__}: {exc}")


def upload(project: str, bucket: str, location: str, name: str, path: Path, report: Report) -> tuple[str, bool]:
    """path into gs://bucket/name, the bucket made if missing (uniform access, public access prevented);
    returns the object's URL and whether the bucket was made."""
    from google.api_core import exceptions as gex

    from ..gce.google import network_errors, unreachable

    try:
        client = storage_client(project)
        made = False
        try:
            target = client.get_bucket(bucket)
        except gex.NotFound:
            report(f"creating bucket {bucket} in {location}")
            target = client.bucket(bucket)
            target.iam_configuration.uniform_bucket_level_access_enabled = True
            target.iam_configuration.public_access_prevention = "enforced"
            target.labels = {"managed-by": "playground"}
            target = client.create_bucket(target, project=project, location=location)
            made = True
        blob = target.blob(name, chunk_size=CHUNK)
        size = path.stat().st_size
        try:
            with open(path, "rb") as fh:
                blob.upload_from_file(_Reading(fh, size, report), size=size, content_type="application/gzip")
        except BaseException:
            if made:  # nothing of this push stays behind; a bucket that was there stays
                _undo(lambda: client.bucket(bucket).delete(force=True))
            raise
    except gex.GoogleAPICallError as exc:
        raise _storage_error(exc, project, bucket) from exc
    except network_errors() as exc:
        raise unreachable("storage", exc) from exc
    return f"{GCS_URL}/{bucket}/{name}", made


def remove_object(project: str, bucket: str, name: str) -> None:
    from google.api_core import exceptions as gex

    try:
        storage_client(project).bucket(bucket).blob(name).delete()
    except gex.NotFound:
        pass


def image_resource(name: str, family: str, source_url: str, manifest: dict):
    from google.cloud import compute_v1

    parts = manifest.get("components", {})
    labels = {"managed-by": "playground", "playground-profile": manifest["profile"], "built-from": "local-disk",
              "airflow": label(parts.get("airflow", "")), "mlflow": label(parts.get("mlflow", "")),
              "postgresql": label(parts.get("postgresql", "").split(".")[0]),
              "source-hash": label(manifest.get("source_hash", ""))}
    description = (f"{manifest['name']}: {manifest.get('os', '?')}, Airflow {parts.get('airflow', '?')}, MLflow "
                   f"{parts.get('mlflow', '?')}; rootfs {manifest.get('checksum', '?')}; pushed by playground")
    return compute_v1.Image(
        name=name, family=family, description=description, labels=labels, architecture="X86_64",
        raw_disk=compute_v1.RawDisk(source=source_url, container_type="TAR"),
        guest_os_features=[compute_v1.GuestOsFeature(type_=f) for f in GUEST_OS_FEATURES])


@reachable("compute")  # Google not reachable at all: one line, not a traceback
def push(gce, profile: str, image_dir: Path, bucket: str, report: Report, keep_archive: bool = False) -> dict:
    """Push the local image in image_dir to the GCE family playground-PROFILE; returns what was made."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    from ..gce import compute
    from ..gce.google import client_kwargs

    check_bucket(bucket)
    manifest = json.loads((image_dir / "manifest.json").read_text())
    disk = image_dir / manifest.get("disk", {}).get("file", "disk.raw")
    if "disk" not in manifest or not disk.is_file():
        raise PlaygroundError(f"the image {image_dir.name} has no bootable disk (built before disk.raw was part of "
                              f"the image): `playground image build --profile {profile}`")
    project = gce.image_project or gce.project
    name, family = manifest["name"], f"playground-{profile}"
    images = compute_v1.ImagesClient(**client_kwargs("compute"))
    ops = compute_v1.GlobalOperationsClient(**client_kwargs("compute"))
    try:
        images.get(project=project, image=name)
        raise PlaygroundError(f"image {name} already exists in project {project}: it was pushed before "
                              f"(`playground image list --gce --profile {profile}`)")
    except gex.NotFound:
        pass
    except gex.GoogleAPICallError as exc:
        raise compute.explain(exc, gce) from exc
    object_name = f"{name}.tar.gz"
    t0 = time.monotonic()
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="push-", dir=paths.cache_dir()) as scratch:
        tarball = Path(scratch) / object_name
        archive_bytes = archive(disk, tarball, report)
        report(f"archive {archive_bytes / 2**20:.0f} MiB in {time.monotonic() - t0:.0f} s")
        url, made_bucket = upload(project, bucket, gce.zone[:-2], object_name, tarball, report)
    try:
        report(f"creating image {name} in family {family} of project {project}")
        op = images.insert(project=project, image_resource=image_resource(name, family, url, manifest))
        compute.wait(ops, compute.GceSettings(project=project, zone=gce.zone), op, report, f"import {name}",
                     timeout=3600, global_op=True)
        made = images.get(project=project, image=name)
        status = made.status if isinstance(made.status, str) else getattr(made.status, "name", str(made.status))
        if status != "READY":
            raise PlaygroundError(f"image {name} is {status} after its import, not READY")
    except BaseException as exc:
        _undo(lambda: remove_object(project, bucket, object_name))
        _undo(lambda: _remove_failed_image(images, ops, project, name, gce.zone))
        if isinstance(exc, gex.GoogleAPICallError):
            raise compute.explain(exc, gce) from exc
        raise
    if not keep_archive:
        remove_object(project, bucket, object_name)
    return {"image": name, "family": family, "project": project, "source": url, "archive_bytes": archive_bytes,
            "disk_bytes": disk.stat().st_size, "bucket_created": made_bucket, "archive_kept": keep_archive,
            "seconds": round(time.monotonic() - t0, 1)}


def _undo(step: Callable[[], None]) -> None:
    """Clean-up after a failure: best effort, the failure itself is what the user reads."""
    try:
        step()
    except Exception:  # an unreachable API must not hide the first error
        pass


def _remove_failed_image(images, ops, project: str, name: str, zone: str) -> None:
    """An import that failed can leave its image FAILED: delete it, so that a new push can take the name."""
    from google.api_core import exceptions as gex

    from ..gce import compute

    try:
        images.get(project=project, image=name)
    except gex.NotFound:
        return
    op = images.delete(project=project, image=name)
    compute.wait(ops, compute.GceSettings(project=project, zone=zone), op, lambda s: None, f"delete {name}",
                 timeout=300, global_op=True)


def newest_pushable(profile: str, given: Optional[str]) -> Path:
    """The local image to push: the one named, else the profile's newest."""
    from . import local_build

    images = local_build.complete_images(profile)
    if given:
        chosen = [p for p in images if p.name == given]
        if not chosen:
            raise PlaygroundError(f"--image: no local {profile} image named {given!r} "
                                  f"(`playground image list --profile {profile}`)")
        return chosen[0]
    if not images:
        raise PlaygroundError(f"no local {profile} image to push: `playground image build --profile {profile}`")
    return images[-1]
