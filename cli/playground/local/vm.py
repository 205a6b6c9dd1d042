"""The image's disk booted as a virtual machine with QEMU (issue 20): the disk GCE runs, on this machine.

The VM boots `disk.raw` through its BIOS and GRUB, copy-on-write (a qcow2 overlay; the image stays as
built). Its network is QEMU's user-mode one, restricted: the guest gets its address by DHCP and reaches
nothing but its metadata server, forwarded to 169.254.169.254:80 as on GCE (the slirp network is
169.254.169.0/24 so that address is inside it), and this machine reaches its sshd on a loopback port. A
guest power-off ends QEMU: the VM is stopped, as on GCE. KVM where it boots guests; here a KVM guest hangs
after the BIOS (nested virtualization), so software emulation (TCG) is the default: PLAYGROUND_VM_ACCEL.
"""
from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import PlaygroundError
from ..prereqs import require_tools

METADATA_ADDRESS = "169.254.169.254"
SLIRP_NET = "169.254.169.0/24"
ACCELS = ("tcg", "kvm")


def accel() -> str:
    value = os.environ.get("PLAYGROUND_VM_ACCEL", "tcg").strip() or "tcg"
    if value not in ACCELS:
        raise PlaygroundError(f"PLAYGROUND_VM_ACCEL: expected one of {', '.join(ACCELS)}, got {value!r}")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VM:
    proc: subprocess.Popen
    ssh_port: int
    console: Path
    accel: str


def overlay(disk: Path, path: Path) -> Path:
    """A copy-on-write qcow2 over the image's raw disk: the VM's writes land here, the image stays."""
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlaygroundError(f"qemu-img create of {path.name} over {disk} failed: {proc.stderr.strip()}")
    return path


def command(boot_disk: Path, ssh_port: int, metadata_port: int, console: Path, mode: str, memory_mib: int = 4096,
            cpus: int = 2, data_disk: Optional[Path] = None) -> list[str]:
    net = ",".join([
        "user", "id=net0", "restrict=on", f"net={SLIRP_NET}", "host=169.254.169.1", "dhcpstart=169.254.169.15",
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        # A command per guest connection (a chardev would be one connection for the VM's life).
        f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:socat - TCP:127.0.0.1:{metadata_port}",
    ])
    accel_arg = "kvm" if mode == "kvm" else "tcg,thread=multi"
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", accel_arg, "-cpu", "host" if mode == "kvm" else "max",
           "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-display", "none", "-no-reboot",
           "-drive", f"file={boot_disk},if=virtio,format=qcow2",
           "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
           "-serial", f"file:{console}"]
    if data_disk is not None:
        cmd += ["-drive", f"file={data_disk},if=virtio,format=qcow2"]
    return cmd


def boot(disk: Path, workdir: Path, metadata_port: int, data_disk: Optional[Path] = None) -> VM:
    """Boot disk (copy-on-write) with its metadata server on 127.0.0.1:metadata_port."""
    mode = accel()
    require_tools("qemu-system-x86_64", "qemu-img", "socat")
    workdir.mkdir(parents=True, exist_ok=True)
    boot_disk = workdir / "boot.qcow2"
    if not boot_disk.exists():
        overlay(disk, boot_disk)
    ssh_port = free_port()
    console = workdir / "console.log"
    with open(workdir / "qemu.log", "ab") as log:
        proc = subprocess.Popen(command(boot_disk, ssh_port, metadata_port, console, mode, data_disk=data_disk),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return VM(proc=proc, ssh_port=ssh_port, console=console, accel=mode)
