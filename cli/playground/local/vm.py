"""The image's disk booted as a virtual machine with QEMU (issue 20): the disk GCE runs, on this machine.

The VM boots `disk.raw` copy-on-write (a qcow2 overlay; the image stays as built) the way `launch` boots it
on GCE, as a Shielded VM: UEFI firmware with Secure Boot on and Microsoft's keys enrolled (OVMF), through
the disk's signed shim, GRUB and kernel; or, with firmware="bios", through SeaBIOS and GRUB's BIOS code.
Its network is QEMU's user-mode one, restricted: the guest gets its address by DHCP and reaches
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
FIRMWARES = ("uefi", "bios")
# Debian's ovmf: the Secure Boot build (needs SMM) and variables with Microsoft's UEFI CA enrolled and
# Secure Boot enabled, which is what a GCE Shielded VM's firmware trusts.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")


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
    firmware: str


def overlay(disk: Path, path: Path) -> Path:
    """A copy-on-write qcow2 over the image's raw disk: the VM's writes land here, the image stays."""
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlaygroundError(f"qemu-img create of {path.name} over {disk} failed: {proc.stderr.strip()}")
    return path


def command(boot_disk: Path, ssh_port: int, metadata_port: int, console: Path, mode: str, memory_mib: int = 4096,
            cpus: int = 2, data_disk: Optional[Path] = None, efi_vars: Optional[Path] = None) -> list[str]:
    """QEMU's arguments; efi_vars (the VM's own copy of OVMF's variables) boots UEFI with Secure Boot."""
    net = ",".join([
        "user", "id=net0", "restrict=on", f"net={SLIRP_NET}", "host=169.254.169.1", "dhcpstart=169.254.169.15",
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        # A command per guest connection (a chardev would be one connection for the VM's life).
        f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:socat - TCP:127.0.0.1:{metadata_port}",
    ])
    accel_arg = "kvm" if mode == "kvm" else "tcg,thread=multi"
    machine = "q35,smm=on" if efi_vars else "q35"
    cmd = ["qemu-system-x86_64", "-machine", machine, "-accel", accel_arg, "-cpu", "host" if mode == "kvm" else "max",
           "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-display", "none", "-no-reboot",
           "-drive", f"file={boot_disk},if=virtio,format=qcow2",
           "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
           "-serial", f"file:{console}"]
    if efi_vars is not None:
        cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={efi_vars}"]
    if data_disk is not None:
        cmd += ["-drive", f"file={data_disk},if=virtio,format=qcow2"]
    return cmd


def boot(disk: Path, workdir: Path, metadata_port: int, data_disk: Optional[Path] = None,
         firmware: str = "uefi") -> VM:
    """Boot disk (copy-on-write) with its metadata server on 127.0.0.1:metadata_port."""
    mode = accel()
    if firmware not in FIRMWARES:
        raise PlaygroundError(f"firmware: expected one of {', '.join(FIRMWARES)}, got {firmware!r}")
    require_tools("qemu-system-x86_64", "qemu-img", "socat")
    efi_vars = None
    if firmware == "uefi":
        for part in (OVMF_CODE, OVMF_VARS):
            if not part.exists():
                raise PlaygroundError(f"UEFI firmware {part} is missing: apt-get install ovmf")
        efi_vars = workdir / "efivars.fd"  # the VM's NVRAM, kept across its boots as GCE keeps it
    workdir.mkdir(parents=True, exist_ok=True)
    boot_disk = workdir / "boot.qcow2"
    if not boot_disk.exists():
        overlay(disk, boot_disk)
    if efi_vars is not None and not efi_vars.exists():
        efi_vars.write_bytes(OVMF_VARS.read_bytes())
    ssh_port = free_port()
    console = workdir / "console.log"
    with open(workdir / "qemu.log", "ab") as log:
        proc = subprocess.Popen(command(boot_disk, ssh_port, metadata_port, console, mode, data_disk=data_disk,
                                        efi_vars=efi_vars),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return VM(proc=proc, ssh_port=ssh_port, console=console, accel=mode, firmware=firmware)
