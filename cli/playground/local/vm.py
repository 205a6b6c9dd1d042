"""The image's disk booted as a virtual machine with QEMU (issue 20): the disk GCE runs, on this machine.

The VM boots `disk.raw` copy-on-write (a qcow2 overlay; the image stays as built) the way `launch` boots it
on GCE, as a Shielded VM: UEFI firmware with Secure Boot on and Microsoft's keys enrolled (OVMF), through
the disk's signed shim, GRUB and kernel; or, with firmware="bios", through SeaBIOS and GRUB's BIOS code.
Its network is QEMU's user-mode one, restricted: the guest gets its address by DHCP and reaches
nothing but its metadata server, forwarded to 169.254.169.254:80 as on GCE (the slirp network is
169.254.169.0/24 so that address is inside it), and its sshd is forwarded from one address and port of
the machine QEMU runs on. A local instance's QEMU runs in the instance's own network namespace
(instance.py): there sshd is forwarded from the namespace's address, the metadata server is the one on
this machine's end of its veth, and the namespace's filter lets nothing else out. A guest power-off ends
QEMU: the VM is stopped, as on GCE. A stop asks the guest to power off (ACPI, through QEMU's QMP socket),
as GCE's stop does.

Acceleration: KVM where it boots a guest, software emulation (TCG) where it does not. Here /dev/kvm exists
but a KVM guest hangs right after the BIOS (nested virtualization), so `choose_accel` boots the image's
kernel once under KVM and takes KVM only if the kernel speaks within seconds; PLAYGROUND_VM_ACCEL=tcg|kvm
decides instead.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import PlaygroundError
from ..prereqs import require_tools

METADATA_ADDRESS = "169.254.169.254"
SLIRP_NET = "169.254.169.0/24"
GUEST_ADDRESS = "169.254.169.15"
ACCELS = ("tcg", "kvm")
FIRMWARES = ("uefi", "bios")
# Debian's ovmf: the Secure Boot build (needs SMM) and variables with Microsoft's UEFI CA enrolled and
# Secure Boot enabled, which is what a GCE Shielded VM's firmware trusts.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
ACCEL_ENV = "PLAYGROUND_VM_ACCEL"
KVM_PROBE_S = 15


def accel_from_env() -> Optional[str]:
    value = os.environ.get(ACCEL_ENV, "").strip()
    if not value:
        return None
    if value not in ACCELS:
        raise PlaygroundError(f"{ACCEL_ENV}: expected one of {', '.join(ACCELS)}, got {value!r}")
    return value


def kvm_boots(kernel: Path, workdir: Path) -> bool:
    """Whether a KVM guest gets as far as its kernel's first words: the image's kernel, booted directly with
    no root (it panics and, with panic=-1 and -no-reboot, QEMU ends), within KVM_PROBE_S seconds."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not kernel.is_file():
        return False
    out = workdir / "kvm-probe.log"
    out.unlink(missing_ok=True)
    proc = subprocess.Popen(["qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256",
                             "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{out}",
                             "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + KVM_PROBE_S
    try:
        while time.monotonic() < deadline:
            if out.exists() and b"Linux version" in out.read_bytes():
                return True
            if proc.poll() is not None:
                break
            time.sleep(0.3)
        return out.exists() and b"Linux version" in out.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        out.unlink(missing_ok=True)


def choose_accel(kernel: Path, workdir: Path, cache: Optional[Path] = None) -> str:
    """PLAYGROUND_VM_ACCEL, else KVM if a KVM guest boots here, else TCG. The probe's answer is kept in cache
    for this boot of this machine (its boot id): a later launch does not wait for it again."""
    given = accel_from_env()
    if given:
        return given
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if cache is not None and cache.is_file():
        kept = cache.read_text().split()
        if len(kept) == 2 and kept[0] == boot_id and kept[1] in ACCELS:
            return kept[1]
    chosen = "kvm" if kvm_boots(kernel, workdir) else "tcg"
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(f"{boot_id} {chosen}\n")
    return chosen


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


def blank_disk(path: Path, size_gb: int) -> Path:
    """A data disk: an empty qcow2 of size_gb GiB (sparse until the guest writes), as GCE's blank disk."""
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_gb}G"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlaygroundError(f"qemu-img create of the data disk {path} failed: {proc.stderr.strip()}")
    return path


def command(boot_disk: Path, console: Path, mode: str, ssh_forward: tuple[str, int], metadata: tuple[str, int],
            memory_mib: int = 4096, cpus: int = 2, data_disk: Optional[Path] = None,
            efi_vars: Optional[Path] = None, qmp: Optional[Path] = None, reboot: bool = False) -> list[str]:
    """QEMU's arguments. efi_vars (the VM's own copy of OVMF's variables) boots UEFI with Secure Boot; qmp is
    the control socket stop uses; reboot=False ends QEMU on a guest reboot too (a boot that loops stops)."""
    net = ",".join([
        "user", "id=net0", "restrict=on", f"net={SLIRP_NET}", "host=169.254.169.1", f"dhcpstart={GUEST_ADDRESS}",
        f"hostfwd=tcp:{ssh_forward[0]}:{ssh_forward[1]}-:22",
        # A command per guest connection (a chardev would be one connection for the VM's life).
        f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:socat - TCP:{metadata[0]}:{metadata[1]}",
    ])
    accel_arg = "kvm" if mode == "kvm" else "tcg,thread=multi"
    machine = "q35,smm=on" if efi_vars else "q35"
    cmd = ["qemu-system-x86_64", "-machine", machine, "-accel", accel_arg, "-cpu", "host" if mode == "kvm" else "max",
           "-smp", str(cpus), "-m", str(memory_mib), "-nodefaults", "-display", "none",
           # bootindex: SeaBIOS would otherwise try the blank data disk first and stop at "no bootable device".
           "-drive", f"file={boot_disk},if=none,id=boot0,format=qcow2",
           "-device", "virtio-blk-pci,drive=boot0,bootindex=0",
           "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
           "-serial", f"file:{console}"]
    if not reboot:
        cmd.append("-no-reboot")
    if efi_vars is not None:
        cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={efi_vars}"]
    if data_disk is not None:
        # serial: the guest's udev names it /dev/disk/by-id/virtio-playground-data, where the agent's data.py
        # finds its data volume (on GCE, /dev/disk/by-id/google-playground-data from the deviceName).
        cmd += ["-drive", f"file={data_disk},if=none,id=data0,format=qcow2",
                "-device", "virtio-blk-pci,drive=data0,serial=playground-data,bootindex=1"]
    if qmp is not None:
        cmd += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    return cmd


def prepare(disk: Path, workdir: Path, firmware: str) -> tuple[Path, Optional[Path]]:
    """The VM's boot overlay and (UEFI) its NVRAM, made once and kept across its boots as GCE keeps them."""
    if firmware not in FIRMWARES:
        raise PlaygroundError(f"firmware: expected one of {', '.join(FIRMWARES)}, got {firmware!r}")
    require_tools("qemu-system-x86_64", "qemu-img", "socat")
    if not disk.is_file():
        raise PlaygroundError(f"the image's disk is gone: {disk}")
    efi_vars = None
    if firmware == "uefi":
        for part in (OVMF_CODE, OVMF_VARS):
            if not part.exists():
                raise PlaygroundError(f"UEFI firmware {part} is missing: apt-get install ovmf")
        efi_vars = workdir / "efivars.fd"
    workdir.mkdir(parents=True, exist_ok=True)
    boot_disk = workdir / "boot.qcow2"
    if not boot_disk.exists():
        overlay(disk, boot_disk)
    if efi_vars is not None and not efi_vars.exists():
        efi_vars.write_bytes(OVMF_VARS.read_bytes())
    return boot_disk, efi_vars


def boot(disk: Path, workdir: Path, metadata_port: int, data_disk: Optional[Path] = None,
         firmware: str = "uefi") -> VM:
    """Boot disk (copy-on-write) with its metadata server on 127.0.0.1:metadata_port and sshd on a free
    loopback port (the tests' VM; a local instance's runs in its namespace, instance.py)."""
    mode = accel_from_env() or "tcg"
    boot_disk, efi_vars = prepare(disk, workdir, firmware)
    ssh_port = free_port()
    console = workdir / "console.log"
    with open(workdir / "qemu.log", "ab") as log:
        proc = subprocess.Popen(command(boot_disk, console, mode, ("127.0.0.1", ssh_port), ("127.0.0.1", metadata_port),
                                        data_disk=data_disk, efi_vars=efi_vars),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return VM(proc=proc, ssh_port=ssh_port, console=console, accel=mode, firmware=firmware)


def powerdown(qmp: Path, timeout: float = 5) -> bool:
    """Press the VM's power button (ACPI) through its QMP socket; False if QEMU does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(qmp))
            reader = s.makefile("rb")
            reader.readline()  # the greeting
            for command_name in ("qmp_capabilities", "system_powerdown"):
                s.sendall(json.dumps({"execute": command_name}).encode() + b"\n")
                while True:  # skip events until the command's answer
                    answer = json.loads(reader.readline() or b"{}")
                    if "return" in answer or "error" in answer or not answer:
                        break
                if "return" not in answer:
                    return False
        return True
    except (OSError, ValueError):
        return False
