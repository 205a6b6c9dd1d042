"""The VM runtime's pieces that need no VM (cli/playground/local/vm.py): QEMU's arguments, the ACPI stop
through QMP, the choice of acceleration. Booting is tests/image/test_vm_boot.py's."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from playground.errors import PlaygroundError
from playground.local import vm


def test_the_network_reaches_only_the_metadata_server_and_forwards_sshd_from_the_given_address(tmp_path):
    cmd = vm.command(tmp_path / "boot.qcow2", tmp_path / "console.log", "tcg", ("10.213.7.2", 22),
                     ("10.213.7.1", 80), efi_vars=tmp_path / "efivars.fd", qmp=tmp_path / "qmp.sock", reboot=True,
                     data_disk=tmp_path / "data.qcow2")
    net = cmd[cmd.index("-netdev") + 1].split(",")
    assert "restrict=on" in net, "the guest reaches nothing but what is forwarded"
    assert "hostfwd=tcp:10.213.7.2:22-:22" in net
    assert "guestfwd=tcp:169.254.169.254:80-cmd:socat - TCP:10.213.7.1:80" in net
    assert [c for c in cmd if c.startswith("if=pflash")] == [
        f"if=pflash,format=raw,unit=0,readonly=on,file={vm.OVMF_CODE}",
        f"if=pflash,format=raw,unit=1,file={tmp_path / 'efivars.fd'}"]
    assert cmd[cmd.index("-machine") + 1] == "q35,smm=on", "Secure Boot's OVMF needs SMM"
    assert "-no-reboot" not in cmd, "a local instance's guest reboot reboots, as on GCE"
    assert f"file={tmp_path / 'data.qcow2'},if=none,id=data0,format=qcow2" in cmd
    # The serial is what the agent finds the data volume by (/dev/disk/by-id/virtio-playground-data).
    assert "virtio-blk-pci,drive=data0,serial=playground-data,bootindex=1" in cmd
    # SeaBIOS boots the first bootable index: the boot disk, never the blank data disk.
    assert "virtio-blk-pci,drive=boot0,bootindex=0" in cmd
    assert f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off" in cmd
    bios = vm.command(tmp_path / "b.qcow2", tmp_path / "c.log", "kvm", ("127.0.0.1", 2222), ("127.0.0.1", 8080))
    assert "-no-reboot" in bios and not any("pflash" in c for c in bios)
    assert bios[bios.index("-accel") + 1] == "kvm" and bios[bios.index("-cpu") + 1] == "host"


def fake_qmp(path: Path, answers: dict) -> list[str]:
    """A QMP server for one connection: greeting, then an answer per command (events in between)."""
    seen: list[str] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            f.flush()
            for line in f:
                name = json.loads(line)["execute"]
                seen.append(name)
                f.write(b'{"event": "SOMETHING", "timestamp": {}}\n')
                f.write(json.dumps(answers.get(name, {"return": {}})).encode() + b"\n")
                f.flush()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return seen


def test_stop_presses_the_acpi_power_button_through_qmp(tmp_path):
    seen = fake_qmp(tmp_path / "qmp.sock", {})
    assert vm.powerdown(tmp_path / "qmp.sock")
    assert seen == ["qmp_capabilities", "system_powerdown"]


def test_a_qemu_that_refuses_or_is_gone_is_reported(tmp_path):
    fake_qmp(tmp_path / "qmp.sock", {"system_powerdown": {"error": {"class": "GenericError", "desc": "no"}}})
    assert not vm.powerdown(tmp_path / "qmp.sock")
    assert not vm.powerdown(tmp_path / "absent.sock")


def test_acceleration_is_the_environments_else_kvm_only_where_a_kvm_guest_boots(tmp_path, monkeypatch):
    monkeypatch.setenv(vm.ACCEL_ENV, "kvm")
    assert vm.choose_accel(tmp_path / "vmlinuz", tmp_path) == "kvm"
    monkeypatch.setenv(vm.ACCEL_ENV, "hvf")
    with pytest.raises(PlaygroundError, match="PLAYGROUND_VM_ACCEL: expected one of tcg, kvm, got 'hvf'"):
        vm.choose_accel(tmp_path / "vmlinuz", tmp_path)
    monkeypatch.delenv(vm.ACCEL_ENV)
    assert vm.choose_accel(tmp_path / "no-kernel", tmp_path) == "tcg", "nothing to probe with: emulation"


def test_the_probes_answer_is_kept_for_this_boot_of_the_machine(tmp_path, monkeypatch):
    monkeypatch.delenv(vm.ACCEL_ENV, raising=False)
    probes = []
    monkeypatch.setattr(vm, "kvm_boots", lambda kernel, workdir: probes.append(kernel) or True)
    cache = tmp_path / "state" / "vm-accel"
    assert vm.choose_accel(tmp_path / "vmlinuz", tmp_path, cache) == "kvm"
    assert vm.choose_accel(tmp_path / "vmlinuz", tmp_path, cache) == "kvm"
    assert len(probes) == 1, "probed once"
    cache.write_text("another-boot-id tcg\n")
    assert vm.choose_accel(tmp_path / "vmlinuz", tmp_path, cache) == "kvm" and len(probes) == 2
