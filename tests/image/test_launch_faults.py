"""Launch faults on real boots: an instance that never turns healthy, and a CLI killed mid-launch."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playground import paths
from playground.local import instance, netns

pytestmark = pytest.mark.image
CLI = str(Path(sys.executable).with_name("playground"))


def gone(name: str, slot: int) -> None:
    assert not (paths.instances_dir() / name).exists()
    assert not netns.exists(slot)
    assert str(paths.instances_dir() / name) not in Path("/proc/mounts").read_text()


def test_never_healthy_cleans_up_and_keeps_the_console_log(image):
    name = "pgfault-slow"
    if (paths.instances_dir() / name).exists():
        instance.destroy(name)
    slot = instance.free_slot()
    proc = subprocess.run([CLI, "launch", "--project", "playground-fault", "--name", name, "--timeout", "3"],
                          capture_output=True, text=True, timeout=120)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 1
    assert f"instance {name} did not turn healthy within 3 s" in err and "console log kept at" in err
    kept = Path(err.split("console log kept at ")[1].split(")")[0])
    assert kept.is_file()
    kept.unlink()
    gone(name, slot)


def test_cli_killed_mid_launch_leaves_what_list_shows_and_destroy_removes(image):
    name = "pgfault-killed"
    if (paths.instances_dir() / name).exists():
        instance.destroy(name)
    proc = subprocess.Popen([CLI, "launch", "--project", "playground-fault", "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = paths.instances_dir() / name / "instance.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not json.loads(record.read_text() if record.exists() else "{}") \
            .get("pids", {}).get("nspawn"):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    slot = instance.load(name).slot
    rows = {r["name"]: r for r in json.loads(subprocess.run([CLI, "list", "--json"], capture_output=True,
                                                            text=True, check=True).stdout)}
    assert rows[name]["state"] in ("running", "incomplete")
    again = subprocess.run([CLI, "launch", "--project", "playground-fault", "--name", name], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 1 and f"instance '{name}' already exists" in " ".join(again.stderr.split())
    out = subprocess.run([CLI, "destroy", "--name", name, "--yes"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "removed container" in out.stderr
    gone(name, slot)
