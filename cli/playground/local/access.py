"""The ways into a running local instance: its SSH key and arguments, fabric's target, the web ports, a
command run over SSH, its health report, and what `status` shows before SSH."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Optional

from .. import paths
from .store import SSH_USER, VM_CPUS, VM_MEMORY_MIB, ZONE, Instance, Report, is_running, main_pid_key


def ssh_key() -> Path:
    """This machine's key for local instances, delivered through the `ssh-keys` attribute."""
    key = paths.state_dir() / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "playground-local", "-f", str(key)],
                       check=True)
    return key


def ssh_args(inst: Instance, timeout: int = 5) -> list[str]:
    return ["ssh", "-i", str(ssh_key()), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={inst.dir / 'known_hosts'}", "-o", f"ConnectTimeout={timeout}",
            "-o", "LogLevel=ERROR", f"{SSH_USER}@{inst.address}"]


def target(inst: Instance):
    """How fabric reaches this instance: directly on its namespace address."""
    from ..remote import Target

    return Target(name=inst.name, host=inst.address, user=SSH_USER, key_file=str(ssh_key()),
                  known_hosts=str(inst.dir / "known_hosts"))


def machine(inst: Instance):
    """What `playground status` needs to know about this instance before SSH."""
    from ..status import Machine

    running = is_running(inst)
    started = None
    if running:
        started = Path(f"/proc/{inst.pids[main_pid_key(inst)]}").stat().st_mtime
    state = "running" if running else ("stopped" if inst.state != "creating" else "incomplete")
    return Machine(name=inst.name, provider="local", project=inst.project, zone=ZONE, state=state,
                   machine_type=runtime_text(inst), image=Path(inst.image).name,
                   profile=inst.profile, address=inst.address, started_at=started,
                   target=target(inst) if running else None, start_command=f"playground start --name {inst.name}",
                   schedule={"next_stop": None, "next_start": None, "note": "no schedule for local instances"})


def web_ports(inst: Instance) -> dict[str, int]:
    """The web UIs' ports on the machine's 127.0.0.1, from the attributes the agent reads."""
    from ..attributes import web_ports as ports

    return ports(inst.attributes)

ACCEL_TEXT = {"kvm": "QEMU with KVM", "tcg": "QEMU software emulation (TCG; KVM does not boot guests here)"}


def runtime_text(inst: Instance) -> str:
    """What runs the instance, for list, status and launch."""
    if inst.runtime != "vm":
        data = f", data volume {inst.data_disk_gb} GiB" if inst.data_disk_gb else ""
        return f"nspawn ({os.cpu_count()} CPUs shared{data})"
    data = f", data disk {inst.data_disk_gb} GiB" if inst.data_disk_gb else ""
    return f"vm: {ACCEL_TEXT.get(inst.accel, inst.accel)}, {VM_CPUS} vCPUs, {VM_MEMORY_MIB // 1024} GiB{data}"


def remote(inst: Instance, command: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_args(inst) + [command], capture_output=True, text=True, timeout=timeout)


def health(inst: Instance) -> Optional[dict]:
    try:
        proc = remote(inst, "cat /run/playground/status.json", timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def wait_healthy(inst: Instance, timeout: float, report: Report) -> dict:
    from ..providers.waiting import wait_healthy as wait

    return wait(inst.name, lambda left: health(inst), lambda: is_running(inst), timeout, report,
                gone=str(inst.dir / "console.log"))
