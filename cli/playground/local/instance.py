"""Local instances: the golden image booted on this machine, by one of two runtimes. This module is their
lifecycle (launch, start, stop, destroy, upgrade, a worker's hand-over); store.py keeps their records,
names and slots, access.py the ways in (SSH, health), boot.py the mounts, namespace, metadata server,
container or VM and reaper. The CLI, tests and bench use them all through this module.

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

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Optional

from .. import paths
from ..errors import PlaygroundError
from ..prereqs import require_root, require_tools
from . import netns

# The CLI, the tests and the bench reach a local instance through this module: the store, the ways in and
# the boot are re-exported here, each defined once in its own module.
from .access import (  # noqa: F401
    ACCEL_TEXT,
    health,
    machine,
    remote,
    runtime_text,
    ssh_args,
    ssh_key,
    target,
    wait_healthy,
    web_ports,
)
from .boot import boot, data_folder, halt, let_reaper_finish, metadata_fault, mounted, remove_path  # noqa: F401
from .store import (  # noqa: F401
    METADATA_FAULT_ENV,
    METADATA_PORT,
    NAME_RE,
    RUNTIMES,
    SSH_USER,
    ZONE,
    Instance,
    Report,
    alive,
    all_instances,
    check_runtime,
    claiming,
    free_slot,
    is_running,
    load,
    main_pid_key,
    metadata_document,
    resolve,
    set_attributes,
    validate_name,
    workers_of,
)

MAIN_HOST = 1  # the main's host number on its private network; workers count from WORKER_HOST_0
WORKER_HOST_0 = 10


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
    with claiming():  # the name and the address slot, until the record below says they are taken
        existing = paths.instances_dir() / name / "instance.json"
        if existing.exists():
            inst = load(name)
            state = "running" if is_running(inst) else "stopped"
            raise PlaygroundError(f"instance {name!r} already exists ({state}): `playground start --name {name}` "
                                  f"or `playground destroy --name {name}`")
        inst = Instance(name=name, project=project, profile=profile, image=str(image), slot=free_slot(),
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
        boot(inst)
        rep = wait_healthy(inst, timeout, report) if wait else None
    except BaseException as exc:
        report("launch failed: removing what it made")
        kept = _keep_logs(inst)
        destroy(name)
        if isinstance(exc, PlaygroundError) and kept:
            raise PlaygroundError(f"{exc} (console log kept at {kept})") from exc
        raise
    return inst, rep


def _hand_over(main: Instance, worker: Instance) -> None:
    """Before the worker's first boot: the main's passwords and keys into the worker's secrets (root only, on
    its data volume, never in its metadata), and the record of the image's DAG files, so the worker's agent
    takes the shared DAG folder as the main left it."""
    proc = remote(main, "sudo -n playground-agent cluster-secrets", timeout=30)
    if proc.returncode != 0:
        raise PlaygroundError(f"the secrets of {main.name} for its workers: "
                              f"{(proc.stderr.strip().splitlines() or ['ssh exit %d' % proc.returncode])[-1]}")
    secrets = data_folder(worker) / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    os.chmod(secrets, 0o700)
    fd = os.open(secrets / "cluster.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(proc.stdout)
    record = paths.instances_dir() / main.name / "data" / "image-dags.json"
    if record.is_file():
        shutil.copy(record, data_folder(worker) / "image-dags.json")


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
    let_reaper_finish(inst)
    inst = load(name)  # as the reaper left it
    try:
        boot(inst)
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
        if mount.exists() and mounted(mount):
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
        remove_path(layer)
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
    remove_path(previous)
    return inst, rep, what
