"""Local instances: the golden image booted on this machine, by one of two runtimes.

- nspawn (the default): the image's rootfs in a systemd-nspawn container, on this machine's kernel;
- vm: the image's disk.raw in a QEMU virtual machine (local/vm.py), as GCE boots it (UEFI, Secure Boot,
  its own kernel, DHCP, a guest power-off that stops it), optionally with a data disk. Slow where only
  software emulation is available, as here.
Either way the instance has a network namespace of its own, where it reaches only its metadata server.

Each instance lives in one folder, PLAYGROUND_HOME/instances/NAME/:
  instance.json   what it is (record below), kept across stop/start and CLI exits
  metadata.json   the document its metadata server serves (the GCE protocol)
  upper/ work/    nspawn: its copy-on-write layer over the pristine image
  data/           nspawn: its data volume (databases, artifacts, secrets, DAGs, task logs), outside that
                  layer: bound at /mnt/disks/playground-data, where the agent binds it over the image's folders;
                  with --data-disk, data.img (an ext4 of that size) is loop-mounted there
  rootfs/         nspawn: the overlay mount point while it runs
  boot.qcow2      vm: its copy-on-write boot disk over the image's disk.raw; efivars.fd its UEFI NVRAM;
                  data.qcow2 its data disk, if it has one; qmp.sock QEMU's control socket
  *.log           the console and the metadata server's log
The record is written before anything is created, so a CLI killed mid-launch
leaves an instance that `list` shows and `destroy` removes.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from .. import paths
from ..errors import PlaygroundError
from ..prereqs import require_root, require_tools
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


ACCEL_TEXT = {"kvm": "QEMU with KVM", "tcg": "QEMU software emulation (TCG; KVM does not boot guests here)"}


def runtime_text(inst: Instance) -> str:
    """What runs the instance, for list, status and launch."""
    if inst.runtime != "vm":
        data = f", data volume {inst.data_disk_gb} GiB" if inst.data_disk_gb else ""
        return f"nspawn ({os.cpu_count()} CPUs shared{data})"
    data = f", data disk {inst.data_disk_gb} GiB" if inst.data_disk_gb else ""
    return f"vm: {ACCEL_TEXT.get(inst.accel, inst.accel)}, {VM_CPUS} vCPUs, {VM_MEMORY_MIB // 1024} GiB{data}"


def _kill(pid: Optional[int], marker: str, sig: int = signal.SIGTERM, timeout: float = 10) -> bool:
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


def _mounted(path: Path) -> bool:
    return os.path.ismount(path)


def _mount_overlay(inst: Instance) -> None:
    rootfs = inst.dir / "rootfs"
    if _mounted(rootfs):
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
    if not _mounted(path):
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


def _boot(inst: Instance) -> None:
    """Overlay (nspawn), network, metadata server, container or VM: each only if not already there."""
    fault = metadata_fault()
    if inst.runtime != "vm":
        _mount_overlay(inst)
    if not netns.exists(inst.slot):
        netns.create(inst.slot, HOST_PORTS)
    if inst.private_net:
        netns.attach_private(inst.slot, inst.private_net, inst.private_host)
    doc = inst.dir / "metadata.json"
    tmp = doc.with_name("metadata.json.tmp")
    tmp.write_text(json.dumps(metadata_document(inst), indent=2))
    os.replace(tmp, doc)
    _start_metadata(inst, doc, fault)
    if is_running(inst):
        return
    if inst.runtime == "vm":
        _start_vm(inst)
    else:
        _start_container(inst)
    _start_reaper(inst)


def _reaper_marker(inst: Instance) -> str:
    return f"playground.local.reaper {inst.dir}/"


def _let_reaper_finish(inst: Instance, timeout: float = 60) -> None:
    """A container or VM that powered itself off is being torn down by its reaper: wait until that is done,
    so a start or stop right after never works on the same namespace and mount at once."""
    deadline = time.monotonic() + timeout
    while (alive(inst.pids.get("reaper"), _reaper_marker(inst)) and not is_running(inst)
           and time.monotonic() < deadline):
        time.sleep(0.2)


def _start_reaper(inst: Instance) -> None:
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
             *([f"--bind={_data_folder(inst)}:{DATA_MOUNT}"] if inst.data_volume in ("folder", "file") else []),
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
    _wait_exec(proc, str(inst.dir), "systemd-nspawn")


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
        (_data_folder(inst) / sub).mkdir(exist_ok=True)
        binds.append(f"--bind={main_data / sub}:{DATA_MOUNT}/{sub}")
    return binds


def _data_folder(inst: Instance) -> Path:
    folder = inst.dir / "data"
    folder.mkdir(mode=0o755, exist_ok=True)
    if inst.data_volume == "file" and not _mounted(folder):
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
    boot_disk, efi_vars = vm.prepare(Path(inst.image) / "disk.raw", inst.dir, "uefi")
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
    _wait_exec(proc, str(inst.dir), "qemu-system-x86_64")


def _execs(pid: int, program: str) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == program
    except OSError:
        return False


def _wait_exec(proc: subprocess.Popen, marker: str, program: str, timeout: float = 10) -> None:
    """Until the child runs program (nspawn; QEMU, after `ip netns exec` has entered the namespace and
    exec'd it): before that its command line is still ours or ip's, and an is_running() inside that exec
    could call a booting instance stopped (a CI run's VM start did, at once)."""
    deadline = time.monotonic() + timeout
    while (proc.poll() is None and not (alive(proc.pid, marker) and _execs(proc.pid, program))
           and time.monotonic() < deadline):
        time.sleep(0.02)


def halt(inst: Instance, timeout: float = 90) -> list[str]:
    """Stop the container cleanly (SIGTERM = poweroff inside), then what surrounds it."""
    done = []
    # The reaper first: it would tear down the same things once the container ends (or is doing so).
    _let_reaper_finish(inst)
    _kill(inst.pids.get("reaper"), _reaper_marker(inst), signal.SIGTERM, 5)
    if _kill(inst.pids.get("nspawn"), str(inst.dir), signal.SIGTERM, timeout):
        done.append(f"container (pid {inst.pids['nspawn']})")
    if _power_off_vm(inst, timeout):
        done.append(f"VM (pid {inst.pids['vm']})")
    if _kill(inst.pids.get("ssh-forward"), _ssh_forward_marker(inst), signal.SIGTERM, 5):
        done.append(f"SSH forward (pid {inst.pids['ssh-forward']})")
    if _kill(inst.pids.get("metadata"), str(inst.dir), signal.SIGTERM, 5):
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
    _kill(pid, str(inst.dir), signal.SIGTERM, 10)
    return True


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


@contextlib.contextmanager
def _claiming() -> Iterator[None]:
    """One launch at a time chooses a name and an address slot: two at once (two terminals, two test runs)
    would otherwise both find the same slot free."""
    paths.instances_dir().mkdir(parents=True, exist_ok=True)
    with open(paths.instances_dir() / ".claim.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _free_slot() -> int:
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


def launch(name: str, project: str, attributes: dict[str, str], image: Path, profile: str,
           report: Report, timeout: float = 300, wait: bool = True, runtime: str = "nspawn",
           data_disk_gb: int = 0, with_workers: bool = False, worker_of: Optional[Instance] = None,
           worker_host: int = 0) -> tuple[Instance, Optional[dict]]:
    """Boot a new instance and (unless wait is False) wait until it is healthy; on failure remove it.
    with_workers: a main on a private network of its own, CeleryExecutor; worker_of: a worker of that main
    (its host number worker_host on the main's network)."""
    validate_name(name, project)
    check_runtime(runtime, data_disk_gb)
    require_root("a local instance")
    require_tools("systemd-nspawn" if runtime == "nspawn" else "qemu-system-x86_64", "ip", "nft", "ssh", "ssh-keygen")
    if runtime == "vm" and not (image / "disk.raw").is_file():
        raise PlaygroundError(f"the image {image.name} has no bootable disk (built before disk.raw was part of the "
                              "image): `playground image build`, or --runtime nspawn")
    if (with_workers or worker_of) and runtime != "nspawn":
        raise PlaygroundError("--workers: nspawn instances only for now (the VM runtime has no private network)")
    key = ssh_key()
    attrs = {"gcp-project": project, **attributes,
             "ssh-keys": f"{SSH_USER}:{(key.with_suffix('.pub')).read_text().strip()}"}
    with _claiming():  # the name and the address slot, until the record below says they are taken
        existing = paths.instances_dir() / name / "instance.json"
        if existing.exists():
            inst = load(name)
            state = "running" if is_running(inst) else "stopped"
            raise PlaygroundError(f"instance {name!r} already exists ({state}): `playground start --name {name}` "
                                  f"or `playground destroy --name {name}`")
        inst = Instance(name=name, project=project, profile=profile, image=str(image), slot=_free_slot(),
                        instance_id=str(random.randrange(10**18, 10**19)), created_at=time.time(), attributes=attrs,
                        runtime=runtime, data_disk_gb=data_disk_gb,
                        data_volume=("file" if data_disk_gb else "folder") if runtime == "nspawn"
                        else "disk" if data_disk_gb else "")
        if with_workers:
            inst.private_net, inst.private_host = inst.slot, MAIN_HOST
            inst.attributes.update({"airflow-executor": "CeleryExecutor",
                                    "private-subnet": netns.private_names(inst.slot)["subnet"]})
        if worker_of is not None:
            inst.private_net, inst.private_host, inst.main = worker_of.private_net, worker_host, worker_of.name
            inst.attributes.update({"role": "worker", "airflow-executor": "CeleryExecutor",
                                    "private-subnet": netns.private_names(worker_of.private_net)["subnet"],
                                    "main-address": netns.private_ip(worker_of.private_net, worker_of.private_host)})
        inst.save()
    try:
        if worker_of is not None:
            _hand_over(worker_of, inst)
        if runtime == "vm":
            from . import vm

            report("vm: can KVM boot a guest here?")
            inst.accel = vm.choose_accel(image / "rootfs" / "vmlinuz", inst.dir, paths.state_dir() / "vm-accel")
            inst.save()
            report(f"vm: {ACCEL_TEXT[inst.accel]}")
        report(f"booting {name} at {inst.address} ({runtime_text(inst)})")
        _boot(inst)
        rep = wait_healthy(inst, timeout, report) if wait else None
    except BaseException as exc:
        report("launch failed: removing what it made")
        kept = _keep_logs(inst)
        destroy(name)
        if isinstance(exc, PlaygroundError) and kept:
            raise PlaygroundError(f"{exc} (console log kept at {kept})") from exc
        raise
    return inst, rep


MAIN_HOST = 1  # the main's host number on its private network; workers count from WORKER_HOST_0
WORKER_HOST_0 = 10


def _hand_over(main: Instance, worker: Instance) -> None:
    """Before the worker's first boot: the main's passwords and keys into the worker's secrets (root only, on
    its data volume, never in its metadata), and the record of the image's DAG files, so the worker's agent
    takes the shared DAG folder as the main left it."""
    proc = remote(main, "sudo -n playground-agent cluster-secrets", timeout=30)
    if proc.returncode != 0:
        raise PlaygroundError(f"the secrets of {main.name} for its workers: "
                              f"{(proc.stderr.strip().splitlines() or ['ssh exit %d' % proc.returncode])[-1]}")
    secrets = _data_folder(worker) / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    os.chmod(secrets, 0o700)
    fd = os.open(secrets / "cluster.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(proc.stdout)
    record = paths.instances_dir() / main.name / "data" / "image-dags.json"
    if record.is_file():
        shutil.copy(record, _data_folder(worker) / "image-dags.json")


def workers_of(name: str) -> list[Instance]:
    return [i for i in all_instances() if i.main == name]


def _keep_logs(inst: Instance) -> Optional[Path]:
    """Keep a failed instance's console log where destroy does not remove it."""
    src = inst.dir / "console.log"
    if not src.is_file():
        return None
    dest_dir = paths.state_dir() / "logs"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{inst.name}-{time.strftime('%Y%m%d-%H%M%S')}-console.log"
    shutil.copy(src, dest)
    return dest


def start(name: str, report: Report, timeout: float = 300, wait: bool = True) -> tuple[Instance, Optional[dict]]:
    require_root("a local instance")
    inst = load(name)
    require_tools("systemd-nspawn" if inst.runtime == "nspawn" else "qemu-system-x86_64", "ip", "nft")
    if is_running(inst):
        raise PlaygroundError(f"instance {name!r} is already running")
    _let_reaper_finish(inst)
    inst = load(name)  # as the reaper left it
    try:
        _boot(inst)
    except PlaygroundError as exc:
        halt(inst)  # undo what this boot made (overlay, metadata server, network); the instance's data stays
        inst.state = "stopped"
        inst.save()
        raise PlaygroundError(f"{exc}; {name} stays stopped, its data kept: free that, then "
                              f"`playground start --name {name}`") from exc
    return inst, (wait_healthy(inst, timeout, report) if wait else None)


def stop(name: str) -> list[str]:
    require_root("a local instance")
    inst = load(name)
    done = halt(inst)
    inst.state = "stopped"
    inst.save()
    return done


def destroy(name: str) -> list[str]:
    require_root("a local instance")
    inst = load(name)
    removed = []
    for worker in workers_of(name):  # a playground's workers go with it
        removed += [f"{worker.name}: {what}" for what in destroy(worker.name)]
    removed += halt(inst, timeout=60)
    if inst.private_net and not inst.main:
        removed += netns.remove_private(inst.private_net)
    for mount in (inst.dir / "rootfs", inst.dir / "data"):
        if mount.exists() and _mounted(mount):
            raise PlaygroundError(f"{mount} is still mounted; nothing deleted")
    shutil.rmtree(inst.dir)
    removed.append("folder " + str(inst.dir))
    return removed


def upgrade(name: str, image: Path, report: Report, timeout: float = 300) -> tuple[Instance, Optional[dict], str]:
    """Move the instance to another image, keeping its data volume: checked from both manifests first (a
    refusal changes nothing), then stopped, given a fresh boot layer over the new image (nspawn: upper/;
    vm: boot.qcow2), and started; the new image's agent migrates at that first boot. The previous layer is
    kept beside until the machine is healthy on the new image, then removed."""
    from .. import upgrade as rules

    require_root("a local instance")
    inst = load(name)
    if not inst.data_volume:
        why = "a VM launched without --data-disk" if inst.runtime == "vm" else "launched before data volumes"
        raise PlaygroundError(f"{name} keeps its data on its boot disk ({why}): a new image would lose it; "
                              "`playground backup`, launch a new playground and `playground restore` onto it")
    if not (image / "manifest.json").is_file() or not (image / "rootfs").is_dir():
        raise PlaygroundError(f"--image: {image} is not a complete local image (see `playground image list`)")
    if inst.runtime == "vm" and not (image / "disk.raw").is_file():
        raise PlaygroundError(f"--image: {image.name} has no bootable disk (disk.raw) for this VM")
    new = json.loads((image / "manifest.json").read_text())
    old_manifest = Path(inst.image) / "manifest.json"
    if not old_manifest.is_file():
        raise PlaygroundError(f"the image {name} runs is gone ({inst.image}): what it runs cannot be compared")
    current = json.loads(old_manifest.read_text())
    if Path(inst.image).resolve() == image.resolve():
        return inst, None, f"{name} already runs {image.name}"
    changes = rules.check(name, current, new)
    what = rules.summary(current, new, changes)
    report(f"upgrade {what}: stopping {name}")
    halt(inst)
    inst.state = "stopped"
    inst.save()
    layer = inst.dir / ("boot.qcow2" if inst.runtime == "vm" else "upper")
    previous = layer.with_name(layer.name + ".previous")
    if previous.exists():  # an earlier upgrade that did not end healthy: its layer is the last good one
        _remove(layer)
    elif layer.exists():
        os.rename(layer, previous)
    if inst.runtime != "vm":
        shutil.rmtree(inst.dir / "work", ignore_errors=True)
    # A new boot disk has new SSH host keys (as on GCE): the ones this instance had are forgotten.
    (inst.dir / "known_hosts").unlink(missing_ok=True)
    inst.image = str(image)
    inst.save()
    report(f"booting {name} on {image.name}")
    try:
        inst, rep = start(name, report, timeout, wait=True)
    except PlaygroundError as exc:
        raise PlaygroundError(f"upgrade {what}: {exc}; the data volume is as the new image's agent left it, the "
                              f"previous boot layer is kept at {previous}") from exc
    _remove(previous)
    return inst, rep, what


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
