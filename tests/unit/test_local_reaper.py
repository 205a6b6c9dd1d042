"""A local instance that powers itself off (autostop, `poweroff` inside) leaves nothing running: the reaper
sees its container end and removes the metadata server and the rest, as `playground stop` does; a `stop`
ends the reaper first, so the two never tear down at once. The container and metadata server are stand-in
processes here (tests/image/test_autostop.py has the real ones)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from playground.local import boot, instance
from support import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the reaper removes namespaces and mounts: root only")


def stand_in(marker: str) -> subprocess.Popen:
    """A process whose command line names the instance's folder, as nspawn's and the metadata server's do."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])


@pytest.fixture
def booted(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOME", str(tmp_path / "home"))
    inst = instance.Instance(name="reaped", project="playground-test", profile="local", image=str(tmp_path),
                             slot=247, instance_id="1", created_at=time.time(), state="running")
    inst.save()
    procs = {"nspawn": stand_in(str(inst.dir)), "metadata": stand_in(str(inst.dir / "metadata.json"))}
    inst.pids = {key: p.pid for key, p in procs.items()}
    inst.save()
    boot.start_reaper(inst)
    yield inst, procs
    for p in procs.values():
        p.kill()
        p.wait()
    instance.halt(instance.load("reaped"))


def test_a_container_that_ends_by_itself_leaves_no_process_and_shows_stopped(booted):
    inst, procs = booted
    reaper = instance.load("reaped").pids["reaper"]
    procs["nspawn"].terminate()  # the guest's power-off: nspawn exits
    procs["nspawn"].wait()
    assert procs["metadata"].wait(timeout=15) is not None  # ended by the reaper
    done = eventually(lambda: instance.load("reaped").state == "stopped", 15, every=0.5)
    assert done, (inst.dir / "reaper.log").read_text()
    assert instance.load("reaped").pids == {}
    assert eventually(lambda: not instance.alive(reaper, "playground.local.reaper"), 10, every=0.5)
    assert "powered off by itself" in (inst.dir / "reaper.log").read_text()


def test_stop_ends_the_reaper_first(booted):
    inst, procs = booted
    reaper = instance.load("reaped").pids["reaper"]
    instance.stop("reaped")
    assert not instance.alive(reaper, "playground.local.reaper")
    assert procs["metadata"].poll() is not None and procs["nspawn"].poll() is not None
    assert json.loads((inst.dir / "instance.json").read_text())["state"] == "stopped"


def test_a_start_returns_once_the_runtime_itself_runs_not_the_wrapper_that_execs_it():
    """QEMU is started through `ip netns exec`, which execs it: until QEMU's own command line is in place,
    /proc may show ip's, or none at all inside the exec, and is_running() would call the booting VM stopped
    (a CI run's boot-disk swap test failed so). The wait is for the program itself, here `sleep` behind
    `env` doing the same exec."""
    marker = "29.4242"  # sleep's own argument: its command line is all a marker can be found in
    proc = subprocess.Popen(["env", "sh", "-c", "sleep 0.3; exec sleep " + marker])
    try:
        boot.wait_exec(proc, marker, "sleep")
        assert boot.execs(proc.pid, "sleep") and instance.alive(proc.pid, marker)
    finally:
        proc.kill()
        proc.wait()
    assert not instance.alive(proc.pid, marker)
