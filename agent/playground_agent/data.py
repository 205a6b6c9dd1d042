"""The data volume: the team's data apart from the image, so a new image (`playground upgrade`) keeps it.

Run by playground-data.service at every boot, before PostgreSQL and the agent's apply. The volume is
  - a folder of this instance's own that the host binds at MOUNT (local nspawn: outside the copy-on-write
    layer), or
  - a disk with the device name DEVICE: /dev/disk/by-id/google-DEVICE on GCE (Google names a non-boot disk
    after the deviceName it was attached with), /dev/disk/by-id/virtio-DEVICE in the local VM (its serial).
    A blank one is formatted as Google's "Format and mount a non-boot disk on a Linux VM" does
    (cloud.google.com/compute/docs/disks/format-mount-disk-linux: mkfs.ext4 -m 0 -E
    lazy_itable_init=0,lazy_journal_init=0,discard; mount -o discard,defaults), and mounted at MOUNT.
  - Neither: the data stays on the boot disk (instances made before volumes, a VM without a data disk);
    STATE says so and `upgrade` refuses such a machine.
Each folder of FOLDERS is then bound from the volume over the image's path. The first time, the volume's
copy is made from the image's (its empty PostgreSQL cluster, the folders' owners), under a temporary name
renamed at the end, so a boot cut short copies again. A volume whose PostgreSQL cluster is of another major
version than this image's is refused before PostgreSQL starts: the cluster would not start, and this image
has no binaries of the old version to upgrade it with.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from . import paths
from .files import read_json, write_atomic

MOUNT = paths.p("/mnt/disks/playground-data")
DEVICE = "playground-data"
DEVICE_LINKS = ("/dev/disk/by-id/google-" + DEVICE, "/dev/disk/by-id/virtio-" + DEVICE)
STATE = paths.p("/run/playground/data.json")
IMAGE_DAGS = "image-dags.json"  # on the volume: the DAG files the image last shipped (sync_image_dags)
MKFS = ["mkfs.ext4", "-q", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0,discard", "-L", DEVICE]
# (folder on the volume, the image's path it is bound over (under paths.ROOT), its owner)
FOLDERS: Tuple[Tuple[str, str, str], ...] = (
    ("postgresql", "/var/lib/postgresql", "postgres"),  # Airflow's, MLflow's and the warehouse database
    ("secrets", "/var/lib/playground/secrets", "root"),  # the Fernet key and the admin password: old rows stay readable
    ("mlflow-artifacts", "/var/lib/playground/mlflow-artifacts", "mlflow"),
    ("project", "/var/lib/playground/project", "root"),  # the team's settings (connections, variables, pools)
    ("dags", "/var/lib/airflow/dags", "airflow"),  # a local deploy's DAG files
    ("airflow-logs", "/var/log/airflow", "airflow"),  # task logs
    ("lineage-spool", "/var/lib/airflow/lineage-spool", "airflow"),  # lineage events MLflow has not taken yet
)


class DataError(Exception):
    pass


def _mount_points() -> Dict[str, str]:
    """Mount point -> source (device or root within its filesystem), from /proc/self/mountinfo: a bind
    mount from the same filesystem is invisible to os.path.ismount."""
    found: Dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                found[fields[4].replace("\\040", " ")] = fields[3]
    except OSError:
        pass
    return found


def _run(cmd: List[str], what: str) -> str:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        raise DataError("%s failed (exit %d): %s" % (what, proc.returncode, (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def find_device() -> Optional[str]:
    for link in DEVICE_LINKS:
        if os.path.exists(link):
            return os.path.realpath(link)
    return None


def mount_volume(log) -> Optional[str]:
    """MOUNT, with the volume on it; None when this machine has none."""
    if MOUNT in _mount_points():
        return MOUNT  # bound by the host (nspawn), or mounted at an earlier run of this boot
    if not os.path.exists("/run/systemd/container"):
        # Until udev has made the disks' by-id links (no udev runs in a container).
        subprocess.run(["udevadm", "settle", "--timeout=30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    device = find_device()
    if device is None:
        return None
    kind = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", device], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    if not kind:
        log("formatting the blank data disk %s (ext4)" % device)
        _run(MKFS + [device], "mkfs.ext4 " + device)
    elif kind != "ext4":
        raise DataError("the data disk %s holds a %s filesystem, not ext4: not this tool's; refused" % (device, kind))
    os.makedirs(MOUNT, exist_ok=True)
    _run(["mount", "-o", "discard,defaults", device, MOUNT], "mount " + device)
    return MOUNT


def image_pg_major() -> str:
    version = str((read_json(paths.MANIFEST) or {}).get("components", {}).get("postgresql", ""))
    return version.split(".")[0]


def volume_pg_majors(volume: str) -> List[str]:
    return sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
                  for p in glob.glob(os.path.join(volume, "postgresql", "*", "main", "PG_VERSION")))


def check_postgres(volume: str) -> None:
    """Refuse a cluster this image cannot run, before PostgreSQL sees it."""
    image, majors = image_pg_major(), volume_pg_majors(volume)
    if majors and image and image not in majors:
        raise DataError("the data volume holds a PostgreSQL %s cluster and this image has PostgreSQL %s, with no "
                        "%s binaries to upgrade it: boot the image it came from, back it up and restore it onto a "
                        "new playground" % (", ".join(majors), image, majors[-1]))


def _seed(src: str, dest: str, owner: str) -> None:
    """The volume's copy of an image folder, made once: copied under a temporary name, renamed at the end."""
    partial = dest + ".seeding"
    shutil.rmtree(partial, ignore_errors=True)
    if os.path.isdir(src):
        _run(["cp", "-a", src, partial], "copy %s to the data volume" % src)
    else:
        os.makedirs(partial)
        user = pwd.getpwnam(owner)
        os.chown(partial, user.pw_uid, user.pw_gid)
    os.rename(partial, dest)


def _owned(path: str, owner: str) -> None:
    """A volume from another build of the image may have other user ids: its folder's owner follows the name."""
    user = pwd.getpwnam(owner)
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (user.pw_uid, user.pw_gid):
        _run(["chown", "-R", "%s:%s" % (user.pw_uid, user.pw_gid), path], "chown " + path)


def bind_folders(volume: str, log) -> List[str]:
    mounted = _mount_points()
    bound = []
    for sub, target, owner in FOLDERS:
        src = os.path.join(volume, sub)
        if not os.path.isdir(src):
            log("data volume: first use of %s (from the image's %s)" % (sub, target))
            _seed(paths.p(target), src, owner)
            if sub == "dags":
                sync_image_dags(paths.p(target), src, os.path.join(volume, IMAGE_DAGS), log)
        elif sub == "dags" and paths.p(target) not in mounted:  # the image's own folder is still visible
            sync_image_dags(paths.p(target), src, os.path.join(volume, IMAGE_DAGS), log)
        _owned(src, owner)
        if paths.p(target) not in mounted:
            os.makedirs(paths.p(target), exist_ok=True)
            _run(["mount", "--bind", src, paths.p(target)], "bind %s over %s" % (src, target))
        bound.append(target)
    return bound


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def sync_image_dags(image_dags: str, volume_dags: str, record: str, log) -> List[str]:
    """The DAG files the image ships (its examples) follow the image, on the volume's copy of the folder:
    one the team has not changed since the image it came from is replaced by this image's, a new one is
    added; one the team changed or removed (a deploy) stays as the team left it. RECORD holds what the last
    image shipped, by sha256, so the volume knows which files are still the image's."""
    shipped = read_json(record) or {}
    now: Dict[str, str] = {}
    changed = []
    for name in sorted(os.listdir(image_dags)) if os.path.isdir(image_dags) else []:
        src = os.path.join(image_dags, name)
        if not os.path.isfile(src) or os.path.islink(src):
            continue
        now[name] = _sha256(src)
        dest = os.path.join(volume_dags, name)
        if os.path.exists(dest):
            ours = _sha256(dest) == shipped.get(name)
            if not ours or now[name] == shipped.get(name):
                continue  # the team's own version, or the same file
        elif name in shipped:
            continue  # the team removed it
        _run(["cp", "-p", src, dest + ".new"], "copy " + src)
        os.replace(dest + ".new", dest)
        changed.append(name)
    write_atomic(record, json.dumps(now, indent=2, sort_keys=True) + "\n", 0o644, 0)
    if changed:
        log("the image's DAG files updated on the data volume: %s" % ", ".join(changed))
    return changed


def _save(state: Dict[str, object]) -> None:
    write_atomic(STATE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644, 0)


def read_state() -> Dict[str, object]:
    return read_json(STATE) or {}


def main() -> int:
    def log(msg: str) -> None:
        print("playground-agent: data: %s" % msg, file=sys.stderr, flush=True)

    try:
        volume = mount_volume(log)
        if volume is None:
            _save({"volume": None, "state": "ok", "error": "",
                   "note": "no data volume: the data is on the boot disk (an upgrade would lose it)"})
            log("no data volume: the data stays on the boot disk")
            return 0
        check_postgres(volume)
        bound = bind_folders(volume, log)
    except (DataError, OSError, KeyError) as exc:
        _save({"volume": MOUNT, "state": "error", "error": str(exc)})
        log(str(exc))
        return 1
    _save({"volume": volume, "state": "ok", "error": "", "bound": bound})
    log("%s bound from the data volume at %s" % (", ".join(bound), volume))
    return 0
