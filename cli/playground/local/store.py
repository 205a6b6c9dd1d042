"""The local instances' store: each one's record (instance.json in PLAYGROUND_HOME/instances/NAME/, see
instance.py for the folder), the names and address slots claimed at launch, and whether its container or VM
runs."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from .. import paths
from ..errors import PlaygroundError
from ..prereqs import require_root
from . import netns

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

ZONE = "local-host1-a"

SSH_USER = "playground"

METADATA_PORT = 80

# What an instance may reach on this machine (netns.isolate): its own metadata server.
HOST_PORTS = (METADATA_PORT,)

RUNTIMES = ("nspawn", "vm")

# A VM's size here: what a 2-core test machine spares beside its nspawn instances (a playground on GCE is an
# e2-standard-2 unless --machine-type says otherwise).
VM_CPUS, VM_MEMORY_MIB = 2, 4096

DATA_MOUNT = "/mnt/disks/playground-data"  # the agent's data.MOUNT

VM_SSH_LOOPBACK_PORT = 2222  # QEMU's forward to the guest's sshd, on the namespace's own loopback

# Fault drills (tests/image/test_agent_boot.py, bench/faults.py): the metadata server of the next boot
# answers HTTP 500 for this many seconds, as a failing metadata server would.
METADATA_FAULT_ENV = "PLAYGROUND_LOCAL_METADATA_FAIL_S"

Report = Callable[[str], None]


@dataclass
class Instance:
    name: str
    project: str
    profile: str
    image: str
    slot: int
    instance_id: str
    created_at: float
    attributes: dict = field(default_factory=dict)
    pids: dict = field(default_factory=dict)
    state: str = "creating"
    runtime: str = "nspawn"  # records written before the vm runtime have none
    accel: str = ""  # vm: kvm or tcg, chosen at launch
    # vm: how the disk boots: "uefi" (OVMF with Secure Boot, as a GCE Shielded VM) or "bios" (SeaBIOS, as GCE
    # boots an image without the UEFI_COMPATIBLE feature). Read at each boot.
    firmware: str = "uefi"
    data_disk_gb: int = 0  # vm: the data disk's size, 0 for none
    # Where the team's data lives (the agent's data.py): "folder" (nspawn: data/ bound into the container),
    # "file" (nspawn with --data-disk: data.img, an ext4 of that size loop-mounted at data/, so it can fill),
    # "disk" (vm: data.qcow2), "" (on the boot disk: a vm without a data disk, records from before volumes).
    data_volume: str = ""
    # A playground with workers (issue 17): its private network (netns.private_names(net)), this machine's
    # host number on it, and for a worker the main it works for.
    private_net: int = 0
    private_host: int = 0
    main: str = ""
    # A main whose airflow-parallelism the launcher keeps at its workers' slots (the user set none at launch).
    slots_follow_workers: bool = False

    @property
    def dir(self) -> Path:
        return paths.instances_dir() / self.name

    @property
    def net(self) -> dict[str, str]:
        return netns.names(self.slot)

    @property
    def address(self) -> str:
        return self.net["inst_ip"]

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "instance.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.dir / "instance.json")


def load(name: str) -> Instance:
    path = paths.instances_dir() / name / "instance.json"
    if not path.is_file():
        raise PlaygroundError(f"no local instance named {name!r} (see `playground list`)")
    return Instance(**json.loads(path.read_text()))


def all_instances() -> list[Instance]:
    root = paths.instances_dir()
    found = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if (d / "instance.json").is_file():
            found.append(Instance(**json.loads((d / "instance.json").read_text())))
    return found


def resolve(name: Optional[str], project: Optional[str]) -> Instance:
    """The instance a command means: by name, else the one for the project, else the only one."""
    if name:
        return load(name)
    found = [i for i in all_instances() if project is None or i.project == project]
    if len(found) == 1:
        return found[0]
    if not found:
        raise PlaygroundError(f"no local instance{' for project ' + repr(project) if project else ''}: "
                              "`playground launch --project X`")
    raise PlaygroundError("several instances match: pass --name (" + ", ".join(i.name for i in found) + ")")


def alive(pid: Optional[int], marker: str) -> bool:
    """True if pid runs and its command line mentions marker (guards against pid reuse)."""
    if not pid:
        return False
    for _ in range(2):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        # Empty for a zombie, and for a moment inside execve (the new program's arguments are not yet
        # in place): read again once, so a process exec'ing is not taken for one gone.
        if cmdline:
            return marker in cmdline.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.05)
    return False


def main_pid_key(inst: Instance) -> str:
    return "vm" if inst.runtime == "vm" else "nspawn"


def is_running(inst: Instance) -> bool:
    """The container, or the VM (a guest power-off ends QEMU: the VM is stopped then, as on GCE)."""
    return alive(inst.pids.get(main_pid_key(inst)), str(inst.dir))


def kill(pid: Optional[int], marker: str, sig: int = signal.SIGTERM, timeout: float = 10) -> bool:
    if not alive(pid, marker):
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid, marker):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return True


def metadata_document(inst: Instance) -> dict:
    return {
        "instance": {
            "id": inst.instance_id,
            "name": inst.name,
            "hostname": f"{inst.name}.local",
            "zone": f"projects/0/zones/{ZONE}",
            "machineType": "projects/0/machineTypes/local",
            "attributes": inst.attributes,
            "networkInterfaces": [{"ip": inst.address}],
            "serviceAccounts": {},
        },
        "project": {"projectId": inst.project, "numericProjectId": 0, "attributes": {}},
    }


def set_attributes(name: str, attributes: dict[str, str]) -> None:
    """New attribute values in the record and, running or not, in the document its metadata server serves
    (re-read at every request, so the machine sees them at once, as GCE's setMetadata makes it)."""
    require_root("a local instance")
    inst = load(name)
    inst.attributes = {**inst.attributes, **attributes}
    inst.save()
    doc = inst.dir / "metadata.json"
    tmp = doc.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(metadata_document(inst), indent=2))
    os.replace(tmp, doc)  # a request never reads half a document


@contextlib.contextmanager
def claiming() -> Iterator[None]:
    """One launch at a time chooses a name and an address slot: two at once (two terminals, two test runs)
    would otherwise both find the same slot free."""
    paths.instances_dir().mkdir(parents=True, exist_ok=True)
    with open(paths.instances_dir() / ".claim.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def free_slot() -> int:
    used = {i.slot for i in all_instances()}
    for slot in range(1, 250):
        if slot not in used and not netns.exists(slot) and not netns.address_in_use(netns.names(slot)["host_ip"]):
            return slot
    raise PlaygroundError("no free address slot for another local instance (249 in use)")


def validate_name(name: str, project: str) -> None:
    from ..attributes import check_project

    check_project(project)
    if not NAME_RE.match(name):
        raise PlaygroundError(f"--name: expected 1-31 of a-z 0-9 -, starting with a letter, got {name!r}")


def check_runtime(runtime: str, data_disk_gb: int) -> None:
    if runtime not in RUNTIMES:
        raise PlaygroundError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not 0 <= data_disk_gb <= 1024:
        raise PlaygroundError(f"--data-disk: expected 1-1024 (GiB), got {data_disk_gb}")


def workers_of(name: str) -> list[Instance]:
    return [i for i in all_instances() if i.main == name]


