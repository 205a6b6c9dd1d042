"""Build a local image: a Debian rootfs provisioned by Packer over SSH.

1. the debootstrap base of the profile's Debian release (its `debian_suite`: bookworm
   for local, bullseye for seed-local), cached under the cache folder;
2. a copy of it, booted with `systemd-nspawn --boot` sharing this machine's
   network (so apt and pip reach the registries with the host's settings), an
   sshd on 127.0.0.1 with a key made for this build only;
3. `packer build -only=null.local` runs the same provisioning scripts as GCE;
4. the container is shut down cleanly, the build's SSH access removed, the
   manifest written, and the folder renamed into place. A failure removes the
   half-built folder: only complete images ever carry an image name.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from .. import paths
from ..errors import PlaygroundError
from ..prereqs import require_root, require_tools
from . import disk, hostinputs, packer, profiles

# What the base rootfs needs before Packer can reach it over SSH.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "ca-certificates", "sudo", "iproute2"]
BUILD_PIP_CACHE = "/var/cache/playground-build/pip"
BUILD_CA = "/run/playground-build/ca.crt"

Report = Callable[[str], None]


def _run(cmd: list[str], log, what: str, **kw) -> None:
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
    if proc.returncode != 0:
        raise PlaygroundError(f"{what} failed (exit {proc.returncode}); see {log.name}")


def base_rootfs(suite: str, report: Report, log) -> Path:
    """The cached debootstrap of the Debian release's minbase (about 45 s the first time)."""
    key = hashlib.sha256(" ".join([suite, "minbase", *BASE_PACKAGES]).encode()).hexdigest()[:12]
    base = paths.cache_dir() / "base" / f"debian-{suite}-{key}"
    if (base / "etc" / "os-release").exists():
        report(f"base rootfs from cache ({base})")
        return base
    mirror = hostinputs.debian_mirror()
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    report(f"debootstrap Debian {suite} minbase (cached afterwards)")
    _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), suite,
          str(tmp), mirror], log, "debootstrap")
    os.replace(tmp, base)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PlaygroundError(f"the build container exited early (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise PlaygroundError(f"the build container's sshd did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


def build_key(folder: Path, log) -> Path:
    """A key made for this build only: Packer's way into the build container."""
    key = folder / "build_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], log, "ssh-keygen")
    return key


def prepare_build_access(rootfs: Path, port: int, key: Path, log, suite: str) -> None:
    """SSH access for Packer, for the build only (removed by remove_build_access)."""
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    conf = rootfs / "etc" / "ssh" / "sshd_config.d" / "99-playground-build.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n")
    _run(["ssh-keygen", "-A", "-f", str(rootfs)], log, "ssh-keygen -A")
    # Debian's standard way to keep package scripts from starting daemons in a
    # build (PostgreSQL would otherwise bind this machine's 127.0.0.1:5432).
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    # The host's apt sources, for the profile's release: the build's only way to the archive.
    sources_d = rootfs / "etc" / "apt" / "sources.list.d"
    (rootfs / "etc" / "apt" / "sources.list").write_text("")
    for name, text in hostinputs.apt_sources_for(suite):
        (sources_d / name if name != "sources.list" else rootfs / "etc/apt/sources.list").write_text(text)


def remove_build_access(rootfs: Path) -> None:
    for rel in ("root/.ssh/authorized_keys", "etc/ssh/sshd_config.d/99-playground-build.conf", "usr/sbin/policy-rc.d"):
        (rootfs / rel).unlink(missing_ok=True)
    for hostkey in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        hostkey.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    (rootfs / "etc" / "hostname").unlink(missing_ok=True)
    for leftover in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        leftover.unlink()
    # The build container's poweroff logs itself in wtmp after 90-hygiene.sh emptied it.
    wtmp = rootfs / "var" / "log" / "wtmp"
    if wtmp.exists():
        wtmp.write_bytes(b"")


def stop_container(proc: subprocess.Popen, timeout: float = 90) -> None:
    """SIGTERM makes systemd-nspawn ask the container's systemd for a clean poweroff."""
    packer.end_process(proc, signal.SIGTERM, timeout)


def tree_checksum(root: Path) -> str:
    """sha256 over every path, mode and file content, in a fixed order."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                with open(path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
    return digest.hexdigest()


def dir_size(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def packer_variables(port: int, key: Path, version: str) -> dict[str, str]:
    """The local build's inputs beside the profile's var-file."""
    variables = {"ssh_port": str(port), "ssh_private_key_file": str(key), "image_version": version,
                 "pip_cache_dir": BUILD_PIP_CACHE, "build_ca_bundle": BUILD_CA}
    index = hostinputs.pip_index_url()
    if index:
        variables["pip_index_url"] = index
    return variables


@contextlib.contextmanager
def build_lock(out_dir: Path):
    """One build of a profile at a time: a second one would sweep the first one's folder."""
    with open(out_dir / ".build.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise PlaygroundError(f"another image build is running here (pid {lock.read().strip() or '?'}): "
                                  "wait for it to finish") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def sweep_unfinished(out_dir: Path, report: Report) -> list[str]:
    """Remove what a killed build left (SIGKILL skips every clean-up): its `.building` folder and the
    build container still running on it. Called under build_lock, so no live build owns one."""
    swept = []
    for building in sorted(out_dir.glob("*.building")):
        for pid in pids_naming(building):
            _terminate(pid)
        shutil.rmtree(building, ignore_errors=True)
        swept.append(building.name)
    if swept:
        report(f"removed what an interrupted build left: {', '.join(swept)}")
    return swept


def pids_naming(folder: Path) -> list[int]:
    """Processes whose command line names the folder (systemd-nspawn -D FOLDER/rootfs)."""
    pids = []
    needle = str(folder).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper (the orphans of a killed build are not ours to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pid: int, timeout: float = 30) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def build_local(profile: str = "local", report: Report = print, notice: Optional[Report] = None) -> Path:
    """Build the local image; return its folder (which holds rootfs/ and manifest.json).
    `report` gets the progress; `notice` (default: report) what a user should read afterwards."""
    notice = notice or report
    profiles.check(profile)
    suite = profiles.debian_suite(profile)
    if not suite:
        raise PlaygroundError(f"profile {profile!r} builds on GCE only; locally use --profile "
                              f"{' or '.join(profiles.local_profiles())}, "
                              f"or `playground image build --gce --profile {profile}`")
    require_root("building the local image")
    require_tools("packer", "debootstrap", "systemd-nspawn", "ssh-keygen", "mkfs.ext4", "mkfs.vfat", "mcopy")
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = f"playground-{profile}-{version}"
    out_dir = paths.images_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    building = out_dir / (name + ".building")
    (paths.cache_dir() / "pip").mkdir(parents=True, exist_ok=True)
    log_path = out_dir / (name + ".log")
    t0 = time.monotonic()
    inputs = source_hash()
    container: Optional[subprocess.Popen] = None
    with build_lock(out_dir), packer.signals_raise(), open(log_path, "w") as log:
        try:
            sweep_unfinished(out_dir, notice)
            # The build's key sits in the build folder, beside the rootfs (never in it), so Packer's
            # command line names the folder too and a sweep after a SIGKILL finds it.
            building.mkdir()
            port = _free_port()
            key = build_key(building, log)
            variables = packer_variables(port, key, version)
            # The template and profile are checked before anything is made.
            packer.validate("local", profile, variables)
            base = base_rootfs(suite, report, log)
            report("copying the base rootfs")
            rootfs = building / "rootfs"
            _run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], log, "copy of the base rootfs")
            prepare_build_access(rootfs, port, key, log, suite)
            report("booting the build container")
            container = subprocess.Popen(
                ["systemd-nspawn", "-D", str(rootfs), "--boot", "--register=no", "--keep-unit",
                 "--machine", f"pg-build-{profile}-" + version.replace("-", ""), "--resolv-conf=copy-host",
                 f"--bind={paths.cache_dir() / 'pip'}:{BUILD_PIP_CACHE}",
                 f"--bind-ro={hostinputs.ca_bundle()}:{BUILD_CA}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _wait_port(port, container, 90)
            packer.build("local", profile, variables, report, log)
            report("shutting the build container down")
            stop_container(container)
            remove_build_access(rootfs)
            for leftover in building.glob("build_key*"):
                leftover.unlink()
            size = dir_size(rootfs)
            report("writing the bootable disk (disk.raw) from the rootfs")
            t_disk = time.monotonic()
            disk_info = disk.make_disk(rootfs, building / "disk.raw", size, log)
            disk_info["seconds"] = round(time.monotonic() - t_disk, 1)
            report("writing the manifest (checksum of the image)")
            manifest = json.loads((rootfs / "etc/playground/image-manifest.json").read_text())
            manifest.update({
                "name": name,
                "source_image": f"debian {suite} minbase ({base.name})",
                "build_seconds": round(time.monotonic() - t0, 1),
                "size_bytes": size,
                "disk": disk_info,
                "checksum": "sha256:" + tree_checksum(rootfs),
                "source_hash": inputs,
            })
            (building / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            final = out_dir / name
            os.replace(building, final)
            removed = prune_images(profile)
            if removed:
                notice(f"removed {len(removed)} older image(s) no instance uses: {', '.join(removed)}")
            return final
        except BaseException:
            if container is not None:
                stop_container(container, timeout=30)
            shutil.rmtree(building, ignore_errors=True)
            if log.tell() == 0:  # failed before it did anything worth reading
                log_path.unlink(missing_ok=True)
            raise


def prune_images(profile: str, keep: Optional[int] = None) -> list[str]:
    """Remove all but the newest `keep` images (PLAYGROUND_KEEP_IMAGES, default 3), and never one that a
    local instance runs on (its copy-on-write root sits over the image's rootfs)."""
    from ..local import instance

    keep = int(os.environ.get("PLAYGROUND_KEEP_IMAGES", "3")) if keep is None else keep
    images = complete_images(profile)
    used = {str(Path(i.image).resolve()) for i in instance.all_instances()}
    removed = []
    for image in images[:max(0, len(images) - keep)]:
        if str(image.resolve()) in used:
            continue
        shutil.rmtree(image, ignore_errors=True)
        image.with_suffix(".log").unlink(missing_ok=True)
        removed.append(image.name)
    return removed


def source_hash() -> str:
    """sha256 of everything that goes into an image (template, scripts, locks, agent, units, DAGs, lineage)."""
    digest = hashlib.sha256()
    for top in ("packer", "agent/playground_agent", "units", "dags", "lineage"):
        for path in sorted((paths.REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(paths.REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def complete_images(profile: str) -> list[Path]:
    """The profile's image folders with a manifest (a build only renames a finished one into place), oldest
    first: names sort by build time."""
    root = paths.images_dir(profile)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "manifest.json").is_file())


def local_images(profile: str) -> list[dict]:
    """The profile's complete images, oldest first, as `image list` shows them."""
    rows = []
    for image in complete_images(profile):
        m = json.loads((image / "manifest.json").read_text())
        parts = m.get("components", {})
        rows.append({"name": m.get("name", image.name), "created": m.get("built_at", "?"),
                     "airflow": parts.get("airflow", "?"), "mlflow": parts.get("mlflow", "?"),
                     "size": f"{m.get('size_bytes', 0) / 2**30:.2f} GiB", "checksum": m.get("checksum", "?"),
                     "path": str(image)})
    return rows


def newest_image(profile: str, matching_source: bool = False) -> Optional[Path]:
    """The newest complete image; with matching_source, only one built from this tree."""
    images = complete_images(profile)
    if matching_source:
        want = source_hash()
        images = [p for p in images if json.loads((p / "manifest.json").read_text()).get("source_hash") == want]
    return images[-1] if images else None
