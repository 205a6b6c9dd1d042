"""The image's bootable disk in a virtual machine (issue 20): QEMU boots `disk.raw` as GCE boots a
Shielded VM (UEFI, Secure Boot on, Microsoft's keys: shim, GRUB and kernel must all be signed),
copy-on-write, with the metadata server at 169.254.169.254 as on GCE and nothing else reachable; the
agent reaches metadata and applies it, sshd answers with the key from `ssh-keys`, the services come up, and
a guest power-off stops the VM; then the same disk boots through a BIOS. Software emulation here (Python
runs about 11x slower), hence the long waits: one boot serves every check."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from playground.local import instance, vm
from support import eventually

pytestmark = pytest.mark.image

BOOT_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def booted(request, image, tmp_path_factory):
    if request.config.getoption("hosts"):
        pytest.skip("boots the local image's disk")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed (scripts/install.sh test installs it)")
    work = tmp_path_factory.mktemp("vm")
    key = instance.ssh_key()
    doc = work / "metadata.json"
    doc.write_text(json.dumps({
        "instance": {"id": "5555555555555555555", "name": "pgvm", "hostname": "pgvm.local",
                     "zone": f"projects/0/zones/{instance.ZONE}", "machineType": "projects/0/machineTypes/vm",
                     "attributes": {"ssh-keys": f"{instance.SSH_USER}:{key.with_suffix('.pub').read_text().strip()}"},
                     "networkInterfaces": [{"ip": "169.254.169.15"}], "serviceAccounts": {}},
        "project": {"projectId": "playground-test", "numericProjectId": 0, "attributes": {}},
    }))
    metadata_port = vm.free_port()
    server = subprocess.Popen([sys.executable, "-m", "playground.local.metadata_server",
                               "--doc", str(doc), "--bind", "127.0.0.1", "--port", str(metadata_port)],
                              stdin=subprocess.DEVNULL)
    machine = vm.boot(image / "disk.raw", work, metadata_port)
    ssh = ["ssh", "-i", str(key), "-p", str(machine.ssh_port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", f"UserKnownHostsFile={work / 'known_hosts'}", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
           f"{instance.SSH_USER}@127.0.0.1"]

    def run(command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(ssh + [command], capture_output=True, text=True, timeout=timeout)

    t0 = time.monotonic()
    yield {"vm": machine, "run": run, "t0": t0, "work": work, "metadata_port": metadata_port, "ssh": ssh}
    if machine.proc.poll() is None:
        machine.proc.kill()
        machine.proc.wait(30)
    server.terminate()
    server.wait(10)


def console(booted) -> str:
    return booted["vm"].console.read_text(errors="replace") if booted["vm"].console.exists() else ""


def test_the_disk_boots_through_grub_and_the_agent_applies_metadata(booted):
    def answered():
        try:
            return booted["run"]("sudo -n playground-agent status --json", timeout=60).stdout or None
        except subprocess.TimeoutExpired:
            return None

    ssh_up = eventually(lambda: booted["vm"].proc.poll() is not None or answered(), BOOT_TIMEOUT_S, every=10)
    assert booted["vm"].proc.poll() is None, "QEMU ended: " + console(booted)[-3000:]
    assert ssh_up, "no SSH with the ssh-keys key within the boot timeout: " + console(booted)[-3000:]
    text = console(booted)
    assert "playground" in text.lower() and "Linux version" in text, "the kernel's serial console"
    kernel = booted["run"]("cat /proc/cmdline; systemd-detect-virt").stdout
    assert "root=LABEL=playground-root" in kernel and kernel.split()[-1] in ("qemu", "kvm"), kernel
    secure = booted["run"]("mokutil --sb-state; test -d /sys/firmware/efi && echo uefi").stdout
    assert "SecureBoot enabled" in secure and "uefi" in secure, secure


def test_googles_guest_environment_is_installed_and_stays_off_away_from_gce(booted):
    """On GCE it installs ssh-keys and runs startup scripts; here (no Google SMBIOS) its ExecCondition holds
    it back and the playground agent installed the key this test logs in with."""
    out = booted["run"]("for u in google-guest-agent google-oslogin-cache; do systemctl show $u -p Result "
                        "-p UnitFileState --value | tr '\\n' ' '; echo; done; test -x /usr/bin/google_guest_agent "
                        "&& echo installed").stdout.splitlines()
    assert out[0].split() == ["exec-condition", "enabled"], out
    assert out[-1] == "installed"


def test_the_vm_reaches_its_metadata_server_and_nothing_else(booted):
    def reaches(address: str, port: int) -> bool:
        probe = f"timeout 8 bash -c '</dev/tcp/{address}/{port}' 2>/dev/null && echo open || echo closed"
        return booted["run"](probe).stdout.strip() == "open"

    assert reaches(vm.METADATA_ADDRESS, 80)
    # The user-mode network's gateway stands for this machine: its sshd and the metadata server's real port
    # must not answer, nor any address beyond.
    assert not reaches("169.254.169.1", 22)
    assert not reaches("169.254.169.1", 80)
    assert not reaches("192.0.2.1", 80)


def test_the_services_become_healthy_on_the_vm(booted):
    def healthy():
        try:
            return booted["run"]("sudo -n playground-agent status", timeout=90).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    ok = eventually(healthy, BOOT_TIMEOUT_S, every=15)
    assert ok, booted["run"]("sudo -n playground-agent status").stdout


def test_a_guest_power_off_stops_the_vm(booted):
    booted["run"]("sudo -n systemctl poweroff", timeout=30)
    try:
        booted["vm"].proc.wait(300)
    except subprocess.TimeoutExpired:
        pytest.fail("QEMU still running 300 s after the guest's poweroff")
    assert booted["vm"].proc.returncode == 0


def test_the_disk_also_boots_through_a_bios(image, booted, tmp_path):
    """A VM without Shielded VM boots the same disk through SeaBIOS and GRUB's BIOS code (the boot check
    only: SSH with the key and no EFI firmware)."""
    work = tmp_path / "bios"
    machine = vm.boot(image / "disk.raw", work, booted["metadata_port"], firmware="bios")
    ssh = booted["ssh"][:-1] + ["-p", str(machine.ssh_port), booted["ssh"][-1]]
    try:
        def answered():
            try:
                return subprocess.run(ssh + ["test -d /sys/firmware/efi && echo uefi || echo bios"],
                                      capture_output=True, text=True, timeout=60).stdout.strip() or None
            except subprocess.TimeoutExpired:
                return None

        got = eventually(lambda: machine.proc.poll() is not None or answered(), 300, every=5)
        console_text = machine.console.read_text(errors="replace") if machine.console.exists() else ""
        assert got == "bios", f"{got!r}: " + console_text[-3000:]
    finally:
        machine.proc.kill()
        machine.proc.wait(30)
