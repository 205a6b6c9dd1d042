"""The image's bootable disk as a local instance on the VM runtime (issue 20): `--runtime vm` boots `disk.raw`
in QEMU as GCE boots a Shielded VM (UEFI, Secure Boot on, Microsoft's keys: shim, GRUB and kernel must all
be signed), copy-on-write, in the instance's own network namespace with only its metadata server reachable
at 169.254.169.254. Checked in order on one instance, in two boots (software emulation here: Python runs
about 11x slower, so each wait for services costs minutes). Boot 1, UEFI with Secure Boot: sshd answers with
the `ssh-keys` key; Google's guest environment stays off away from GCE; nothing but the metadata server is
reachable; the agent applies its config from the metadata server (first boot: the image's database,
admin user); its data disk takes a warehouse table; a guest power-off leaves the instance stopped. Then a
boot-disk swap, and boot 2 goes through SeaBIOS and GRUB's BIOS code (as GCE boots an image without
UEFI_COMPATIBLE): the data disk kept the table, the services turn healthy, and kill -9 of a unit's whole
process tree comes back on a real kernel's cgroups. What nspawn proves already (the services healthy after a
plain restart, each unit's recovery) is not waited for twice."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playground.local import instance, vm
from support import eventually

pytestmark = pytest.mark.image

CLI = str(Path(sys.executable).with_name("playground"))
BOOT_TIMEOUT_S = 900
NAME = "pgvm"
DATA_GB = 2


@pytest.fixture(scope="module")
def booted(request, image, image_profile):
    if request.config.getoption("hosts"):
        pytest.skip("boots the local image's disk")
    if image_profile != "local":
        pytest.skip("the VM runtime's checks run on the local profile")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed (scripts/install.sh test installs it)")
    if (instance.paths.instances_dir() / NAME).exists():
        instance.destroy(NAME)
    # The emulated guest runs on this machine's CPUs, about 11x slower than they: other instances (the
    # session's shared one) are stopped while it runs, and started again after.
    others = [i.name for i in instance.all_instances() if i.name != NAME and instance.is_running(i)]
    for name in others:
        instance.stop(name)
    reports: list[str] = []
    try:
        inst, _ = instance.launch(NAME, "playground-test", {}, image, "local", reports.append, wait=False,
                                  runtime="vm", data_disk_gb=DATA_GB)
        yield {"inst": inst, "t0": time.monotonic(), "reports": reports}
        instance.destroy(NAME)
    finally:
        for name in others:
            instance.start(name, report=lambda s: None)


def run(inst, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return instance.remote(inst, command, timeout=timeout)


def console(inst) -> str:
    path = inst.dir / "console.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def diagnosis(inst) -> str:
    """For a failure message: what QEMU and the reaper said, and what else uses this machine's CPUs (the
    emulated guest shares them: a busy host slows it many times over)."""
    parts = []
    for name in ("qemu.log", "reaper.log"):
        path = inst.dir / name
        parts.append(f"--- {name}:\n" + (path.read_text(errors="replace")[-1500:] if path.exists() else "(none)"))
    top = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    parts.append("--- host, busiest first:\n" + "\n".join(line[:160] for line in top.stdout.splitlines()[:12]))
    return "\n".join(parts)


def ssh_up(inst, timeout: float = BOOT_TIMEOUT_S) -> bool:
    def answered():
        try:
            return run(inst, "true", timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            return False
    return bool(eventually(lambda: not instance.is_running(inst) or answered(), timeout, every=5)) \
        and instance.is_running(inst)


def healthy(inst) -> bool:
    # The report is rewritten every 30 s (playground-health.timer), and an SSH login costs an emulated guest
    # about a second of its CPUs: no faster than that.
    return bool(eventually(lambda: (instance.health(inst) or {}).get("healthy"), BOOT_TIMEOUT_S, every=10))


def test_launch_names_the_acceleration_and_list_shows_the_vm_runtime(booted):
    inst = instance.load(NAME)
    assert inst.runtime == "vm" and inst.accel in vm.ACCELS
    assert any(instance.ACCEL_TEXT[inst.accel] in r for r in booted["reports"]), booted["reports"]
    rows = json.loads(subprocess.run([CLI, "list", "--json", "--provider", "local"], capture_output=True,
                                     text=True, check=True).stdout)
    row = next(r for r in rows if r["name"] == NAME)
    assert (row["runtime"], row["accel"], row["data_disk_gb"], row["state"]) == ("vm", inst.accel, DATA_GB, "running")
    assert "vm: QEMU" in instance.machine(inst).machine_type


def test_the_disk_boots_with_secure_boot_and_the_agent_applies_metadata(booted):
    inst = booted["inst"]
    assert ssh_up(inst), "no SSH with the ssh-keys key within the boot timeout: " + console(inst)
    assert "Linux version" in (inst.dir / "console.log").read_text(errors="replace"), "the kernel's serial console"
    out = run(inst, "cat /proc/cmdline; systemd-detect-virt; mokutil --sb-state; "
                    "test -d /sys/firmware/efi && echo uefi").stdout
    assert "root=LABEL=playground-root" in out and ("qemu" in out or "kvm" in out), out
    assert "SecureBoot enabled" in out and "uefi" in out, out


def test_googles_guest_environment_is_installed_and_stays_off_away_from_gce(booted):
    """On GCE it installs ssh-keys and runs startup scripts; here (no Google SMBIOS) its ExecCondition holds
    it back and the playground agent installed the key this test logs in with."""
    out = run(booted["inst"], "for u in google-guest-agent google-oslogin-cache; do systemctl show $u -p Result "
                              "-p UnitFileState --value | tr '\\n' ' '; echo; done; "
                              "test -x /usr/bin/google_guest_agent && echo installed").stdout.splitlines()
    assert out[0].split() == ["exec-condition", "enabled"], out
    assert out[-1] == "installed"


def test_the_vm_reaches_its_metadata_server_and_nothing_else(booted):
    inst = booted["inst"]

    def reaches(address: str, port: int) -> bool:
        probe = f"timeout 8 bash -c '</dev/tcp/{address}/{port}' 2>/dev/null && echo open || echo closed"
        return run(inst, probe).stdout.strip() == "open"

    assert reaches(vm.METADATA_ADDRESS, 80)
    # The user-mode network's gateway and this machine's end of the veth: neither its sshd nor the metadata
    # server's real port may answer, nor any address beyond.
    for address, port in (("169.254.169.1", 22), ("169.254.169.1", 80), (inst.net["host_ip"], 22),
                          (inst.net["host_ip"], 80), ("192.0.2.1", 80)):
        assert not reaches(address, port), f"{address}:{port} answered"


def test_the_agent_applies_its_config_from_the_metadata_server(booted):
    """The first boot's apply, read from 169.254.169.254 (databases, migration, admin user): done and ok
    before the power-off below, so the next boot has no first-boot work left."""
    inst = booted["inst"]

    def state() -> dict:
        out = run(inst, "sudo -n cat /var/lib/playground/config-state.json 2>/dev/null || echo '{}'", timeout=60)
        return json.loads(out.stdout or "{}")
    got = eventually(lambda: state().get("state") in ("ok", "error") and state(), BOOT_TIMEOUT_S, every=10)
    assert got and got["state"] == "ok" and got["generation"] >= 1, f"{got}\n" + diagnosis(inst)


def test_a_guest_power_off_stops_the_instance(booted):
    inst = booted["inst"]
    # The agent formatted the blank data disk (found by its serial) and keeps PostgreSQL on it.
    out = run(inst, "findmnt -n -o SOURCE /mnt/disks/playground-data; findmnt -n -o SOURCE /var/lib/postgresql")
    got = out.stdout.split()
    assert len(got) == 2 and got[0].startswith("/dev/vd") and got[1] == got[0] + "[/postgresql]", out.stdout + \
        out.stderr + diagnosis(inst)
    out = run(inst, "sudo -n setpriv --reuid=airflow --regid=airflow --init-groups psql -qtAX -d warehouse -c "
                    "\"CREATE TABLE witness AS SELECT 'kept' AS v\" && echo written")
    assert out.stdout.strip().endswith("written"), out.stderr
    run(inst, "sudo -n systemctl poweroff", timeout=30)
    assert eventually(lambda: not instance.is_running(inst), 300, every=2), "QEMU still runs after the poweroff"
    rows = json.loads(subprocess.run([CLI, "list", "--json", "--provider", "local"], capture_output=True,
                                     text=True, check=True).stdout)
    assert next(r for r in rows if r["name"] == NAME)["state"] == "stopped"


def test_the_data_disk_survives_a_boot_disk_swap_and_the_disk_boots_through_a_bios(booted):
    """A stopped VM's boot disk replaced by a fresh copy of the image's (what an image upgrade does), booted
    through SeaBIOS this time: no EFI firmware, and the data disk keeps the warehouse table written on the
    old boot disk (healthy: the next check)."""
    instance.let_reaper_finish(instance.load(NAME))  # it saves the record as it ends: not over ours
    inst = instance.load(NAME)
    (inst.dir / "boot.qcow2").unlink()
    inst.firmware = "bios"
    inst.save()
    inst, _ = instance.start(NAME, report=lambda s: None, wait=False)
    assert ssh_up(inst), console(inst) + "\n" + diagnosis(inst)
    out = run(inst, "test -d /sys/firmware/efi && echo uefi || echo bios; "
                    "sudo -n setpriv --reuid=airflow --regid=airflow --init-groups psql -qtAX -d warehouse -c "
                    "'SELECT v FROM witness'")
    assert out.stdout.split() == ["bios", "kept"], out.stdout + out.stderr


def test_the_services_become_healthy_on_the_vm(booted):
    """After the swap: every service up on the new boot disk with the data disk's databases."""
    inst = instance.load(NAME)
    if not healthy(inst):
        guest = run(inst, "sudo -n playground-agent status; uptime; systemctl show airflow-webserver mlflow-server "
                          "-p NRestarts; top -b -n1 | head -15", timeout=120).stdout
        pytest.fail(guest + "\n" + diagnosis(inst))


@pytest.mark.parametrize("unit", ["playground-lineage", "postgresql-cluster"])
def test_kill_9_of_the_whole_tree_comes_back_on_the_vms_kernel(booted, unit):
    """The bench's kill script (bench/faults.py), every process of the unit's cgroup at once, on the VM's
    own kernel and systemd (cgroup v2 alone, as on GCE): back and healthy within the script's 120 s."""
    from faults import KILL_AND_WAIT

    inst = instance.load(NAME)
    if unit == "postgresql-cluster":
        unit = run(inst, "systemctl list-units 'postgresql@*' --plain --no-legend --all").stdout.split()[0]
    script = KILL_AND_WAIT.replace("'", "'\\''")
    out = run(inst, f"sudo -n bash -c '{script}' kill-and-wait {unit} tree", timeout=200)
    assert out.returncode == 0, f"{unit}: {out.stdout} {out.stderr}\n" + diagnosis(inst)
