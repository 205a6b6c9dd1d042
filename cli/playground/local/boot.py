"""Booting and halting a local instance: the overlay and data mounts, its network namespace, its metadata
server, the nspawn container or the QEMU VM, and the reaper that cleans up after a container or VM that
ends by itself (a guest power-off)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import paths
from ..errors import PlaygroundError
from . import netns, store
from .store import (
    DATA_MOUNT,
    METADATA_FAULT_ENV,
    METADATA_PORT,
    VM_CPUS,
    VM_MEMORY_MIB,
    VM_SSH_LOOPBACK_PORT,
    Instance,
    alive,
    is_running,
    kill,
)


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def _mount_overlay(inst: Instance) -> None:
    rootfs = inst.dir / "rootfs"
    if mounted(rootfs):
        return
    for sub in ("upper", "work", "rootfs"):
        (inst.dir / sub).mkdir(exist_ok=True)
    lower = Path(inst.image) / "rootfs"
    if not lower.is_dir():
        raise PlaygroundError(f"the image of instance {inst.name} is gone: {lower}")
    opts = f"lowerdir={lower},upperdir={inst.dir / 'upper'},workdir={inst.dir / 'work'}"
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(rootfs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlaygroundError(f"overlay mount for {inst.name} failed: {proc.stderr.strip()}")


def _unmount(path: Path) -> bool:
    """Unmount path if mounted: retried while busy for 10 s, then lazily. True if it was mounted."""
    if not mounted(path):
        return False
    for _ in range(20):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return True
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)
    return True


def _umount(inst: Instance) -> bool:
    return _unmount(inst.dir / "rootfs")


def metadata_fault() -> list[str]:
    """The metadata server's --fail-for from the environment's fault drill, if one is asked for."""
    value = os.environ.get(METADATA_FAULT_ENV, "").strip()
    if not value:
        return []
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise PlaygroundError(f"{METADATA_FAULT_ENV}: expected seconds from 0 to 3600, got {value!r}")
    return ["--fail-for", str(seconds)]


def boot(inst: Instance) -> None:
    """Overlay (nspawn), network, metadata server, container or VM: each only if not already there."""
    fault = metadata_fault()
    if inst.runtime != "vm":
        _mount_overlay(inst)
    if not netns.exists(inst.slot):
        netns.create(inst.slot, store.HOST_PORTS)  # store's, read at boot: a test may give it more
    if inst.private_net:
        netns.attach_private(inst.slot, inst.private_net, inst.private_host)
    doc = inst.dir / "metadata.json"
    tmp = doc.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(store.metadata_document(inst), indent=2))
    os.replace(tmp, doc)
    _start_metadata(inst, doc, fault)
    if is_running(inst):
        return
    if inst.runtime == "vm":
        _start_vm(inst)
    else:
        _start_container(inst)
    start_reaper(inst)


def _reaper_marker(inst: Instance) -> str:
    return f"playground.local.reaper {inst.dir}/"


def let_reaper_finish(inst: Instance, timeout: float = 60) -> None:
    """A container or VM that powered itself off is being torn down by its reaper: wait until that is done,
    so a start or stop right after never works on the same namespace and mount at once."""
    deadline = time.monotonic() + timeout
    while (alive(inst.pids.get("reaper"), _reaper_marker(inst)) and not is_running(inst)
           and time.monotonic() < deadline):
        time.sleep(0.2)


def start_reaper(inst: Instance) -> None:
    """local/reaper.py: tears down the rest when the container or VM powers itself off."""
    if alive(inst.pids.get("reaper"), _reaper_marker(inst)):
        return
    with open(inst.dir / "reaper.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "playground.local.reaper", f"{inst.dir}/"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    inst.pids["reaper"] = proc.pid
    inst.save()


def _start_container(inst: Instance) -> None:
    net = inst.net
    with open(inst.dir / "console.log", "ab") as log:
        proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(inst.dir / "rootfs"), "--boot", "--register=no", "--keep-unit",
             "--machine", f"playground-{inst.name}", "--hostname", inst.name,
             f"--network-namespace-path={netns.NETNS_DIR / net['netns']}", "--console=read-only",
             "--resolv-conf=off",
             *([f"--bind={data_folder(inst)}:{DATA_MOUNT}"] if inst.data_volume in ("folder", "file") else []),
             *_shared_from_main(inst),
             # systemd in a container reads its arguments like a kernel command line:
             # this points every unit at the local metadata server without changing the image.
             # google-auth reads both: HOST for its requests, IP for the ping that tells it it is
             # on GCE (169.254.169.254 there), so Google's libraries find their credentials as on GCE.
             "--", f"systemd.setenv=GCE_METADATA_HOST={net['host_ip']}:{METADATA_PORT}",
             f"systemd.setenv=GCE_METADATA_IP={net['host_ip']}:{METADATA_PORT}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    inst.pids["nspawn"] = proc.pid
    inst.state = "running"
    inst.save()
    wait_exec(proc, str(inst.dir), "systemd-nspawn")

# What a worker shares with its main, bound over its own data volume's folders (the agent's data.py then
# binds them where Airflow reads): the DAGs, as GCE's workers read the same bucket, and the task logs, so
# the main's webserver reads a task's log wherever it ran.
SHARED_WITH_MAIN = ("dags", "airflow-logs")


def _shared_from_main(inst: Instance) -> list[str]:
    if not inst.main:
        return []
    main_data = paths.instances_dir() / inst.main / "data"
    binds = []
    for sub in SHARED_WITH_MAIN:
        (data_folder(inst) / sub).mkdir(exist_ok=True)
        binds.append(f"--bind={main_data / sub}:{DATA_MOUNT}/{sub}")
    return binds


def data_folder(inst: Instance) -> Path:
    folder = inst.dir / "data"
    folder.mkdir(mode=0o755, exist_ok=True)
    if inst.data_volume == "file" and not mounted(folder):
        image = inst.dir / "data.img"
        if not image.exists():  # sparse until written, as a blank GCE disk costs its size but holds nothing
            with open(image, "wb") as fh:
                fh.truncate(inst.data_disk_gb * 2**30)
            # -m 0: no blocks held back for root, as Google's guide formats a data disk; the agent then
            # sees a volume of its own size, which can fill.
            proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "playground-data", str(image)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                image.unlink(missing_ok=True)
                raise PlaygroundError(f"mkfs.ext4 of the data volume {image} failed: {proc.stderr.strip()}")
        proc = subprocess.run(["mount", "-o", "loop", str(image), str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PlaygroundError(f"mounting the data volume {image} failed: {proc.stderr.strip()}")
    return folder


def _umount_data(inst: Instance) -> bool:
    return inst.data_volume == "file" and _unmount(inst.dir / "data")


def _start_metadata(inst: Instance, doc: Path, fault: list[str]) -> None:
    """The instance's metadata server on this machine's end of its veth, unless it runs already."""
    if not alive(inst.pids.get("metadata"), str(doc)):
        with open(inst.dir / "metadata.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "playground.local.metadata_server", "--doc", str(doc),
                 "--bind", inst.net["host_ip"], "--port", str(METADATA_PORT), *fault],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        inst.pids["metadata"] = proc.pid
        inst.save()


def _start_vm(inst: Instance) -> None:
    """QEMU in the instance's namespace: sshd forwarded from the namespace's address (where `ssh`, `tunnel`
    and `status` reach any instance; socat to QEMU's loopback forward), 169.254.169.254 forwarded to the
    metadata server on this machine's end of the veth, and nothing else (restricted user-mode network; the
    namespace's filter besides)."""
    from . import vm

    net = inst.net
    boot_disk, efi_vars = vm.prepare(Path(inst.image) / "disk.raw", inst.dir, inst.firmware)
    data = inst.dir / "data.qcow2" if inst.data_disk_gb else None
    if data is not None and not data.exists():
        vm.blank_disk(data, inst.data_disk_gb)
    qmp = inst.dir / "qmp.sock"
    qmp.unlink(missing_ok=True)
    # A guest reboot reboots, as on GCE; a power-off ends QEMU.
    cmd = vm.command(boot_disk, inst.dir / "console.log", inst.accel, ("127.0.0.1", VM_SSH_LOOPBACK_PORT),
                     (net["host_ip"], METADATA_PORT), memory_mib=VM_MEMORY_MIB, cpus=VM_CPUS, data_disk=data,
                     efi_vars=efi_vars, qmp=qmp, reboot=True)
    with open(inst.dir / "qemu.log", "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", net["netns"], *cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        if not alive(inst.pids.get("ssh-forward"), _ssh_forward_marker(inst)):
            # Measured: QEMU's restricted network forwards a connection to the guest's sshd when it comes
            # from a loopback address, but one from this machine's end of the veth gets no answer; so the
            # namespace's address is bridged to a forward on the namespace's loopback.
            fwd = subprocess.Popen(["ip", "netns", "exec", net["netns"], "socat",
                                    f"TCP-LISTEN:22,{_ssh_forward_marker(inst)},fork,reuseaddr",
                                    f"TCP:127.0.0.1:{VM_SSH_LOOPBACK_PORT}"],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
            inst.pids["ssh-forward"] = fwd.pid
    inst.pids["vm"] = proc.pid
    inst.state = "running"
    inst.save()
    wait_exec(proc, str(inst.dir), "qemu-system-x86_64")


def execs(pid: int, program: str) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == program
    except OSError:
        return False


def wait_exec(proc: subprocess.Popen, marker: str, program: str, timeout: float = 10) -> None:
    """Until the child runs program (nspawn; QEMU, after `ip netns exec` has entered the namespace and
    exec'd it): before that its command line is still ours or ip's, and an is_running() inside that exec
    could call a booting instance stopped (a CI run's VM start did, at once)."""
    deadline = time.monotonic() + timeout
    while (proc.poll() is None and not (alive(proc.pid, marker) and execs(proc.pid, program))
           and time.monotonic() < deadline):
        time.sleep(0.02)


def halt(inst: Instance, timeout: float = 90) -> list[str]:
    """Stop the container cleanly (SIGTERM = poweroff inside), then what surrounds it."""
    done = []
    # The reaper first: it would tear down the same things once the container ends (or is doing so).
    let_reaper_finish(inst)
    kill(inst.pids.get("reaper"), _reaper_marker(inst), signal.SIGTERM, 5)
    if kill(inst.pids.get("nspawn"), str(inst.dir), signal.SIGTERM, timeout):
        done.append(f"container (pid {inst.pids['nspawn']})")
    if _power_off_vm(inst, timeout):
        done.append(f"VM (pid {inst.pids['vm']})")
    if kill(inst.pids.get("ssh-forward"), _ssh_forward_marker(inst), signal.SIGTERM, 5):
        done.append(f"SSH forward (pid {inst.pids['ssh-forward']})")
    if kill(inst.pids.get("metadata"), str(inst.dir), signal.SIGTERM, 5):
        done.append(f"metadata server (pid {inst.pids['metadata']})")
    done += netns.remove(inst.slot)
    if _umount(inst):
        done.append("overlay mount " + str(inst.dir / "rootfs"))
    if _umount_data(inst):
        done.append("data volume mount " + str(inst.dir / "data"))
    inst.pids = {}
    return done


def _ssh_forward_marker(inst: Instance) -> str:
    return f"bind={inst.net['inst_ip']}"


def _power_off_vm(inst: Instance, timeout: float) -> bool:
    """ACPI power button, as GCE's stop presses it; QEMU killed only if the guest has not powered off by then."""
    from . import vm

    pid = inst.pids.get("vm")
    if not alive(pid, str(inst.dir)):
        return False
    if vm.powerdown(inst.dir / "qmp.sock"):
        deadline = time.monotonic() + timeout
        while alive(pid, str(inst.dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
    kill(pid, str(inst.dir), signal.SIGTERM, 10)
    return True


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
