"""A local image build that fails or is stopped part way leaves no image, no build container and no
half-written folder where a good image is expected: a Packer error in a provisioning script, SIGTERM,
and SIGKILL (whose leftovers the next build removes). Real builds, each in a home of its own."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
from playground.image import local_build
from support import need_local

pytestmark = pytest.mark.image
CLI = str(Path(sys.executable).with_name("playground"))


def closed_port() -> int:
    """A loopback port nothing listens on: a package index that refuses every connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(request, tmp_path):
    """A PLAYGROUND_HOME of the test's own (the base rootfs cache is shared: debootstrapped once).
    Every process still naming the home at the end is stopped: a test starts nothing it leaves running."""
    if request.config.getoption("hosts"):
        pytest.skip("checking given --hosts, not building here")
    need_local()
    yield tmp_path / "home"
    for pid in local_build.pids_naming(tmp_path / "home"):
        os.kill(pid, signal.SIGKILL)


def build_env(home: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, PLAYGROUND_HOME=str(home), COLUMNS="200", **extra)


def start_build(home: Path, sweeping: Optional[Path] = None) -> tuple[subprocess.Popen, Path]:
    """A build started and waited for until Packer provisions inside the booted container (the build's
    own log: not the one of the interrupted build it sweeps)."""
    proc = subprocess.Popen([CLI, "image", "build"], env=build_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    images = home / "images" / "local"
    old = sweeping.with_suffix(".log") if sweeping else None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        logs = [p for p in images.glob("*.log") if p != old] if images.is_dir() else []
        if logs and "Provisioning with shell script" in logs[0].read_text(errors="replace"):
            return proc, logs[0]
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the build never reached provisioning")


def no_image_left(home: Path) -> None:
    images = home / "images" / "local"
    assert sorted(p.name for p in images.iterdir() if p.is_dir()) == []
    assert local_build.pids_naming(home) == []


def test_packer_error_mid_build_is_one_line_and_leaves_no_image(home):
    env = build_env(home, PIP_INDEX_URL=f"http://127.0.0.1:{closed_port()}/simple")
    proc = subprocess.run([CLI, "image", "build"], env=env, capture_output=True, text=True, timeout=900)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1, proc.stderr
    # The script, its status, and its last line on stderr: here pip's word that the index gave it nothing.
    assert errors[0].startswith("error: packer build failed: 30-airflow.sh exited with status 1: ERROR: "), errors[0]
    # The log is kept for reading, and the line says where.
    log = Path(errors[0].split("the build log is ")[1])
    assert log.is_file() and "Connection refused" in log.read_text(errors="replace")
    no_image_left(home)


def test_sigterm_mid_build_stops_packer_and_the_container(home):
    proc, _ = start_build(home)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "image build interrupted (SIGTERM): nothing was kept" in " ".join(err.split())
    no_image_left(home)


def test_sigkill_mid_build_is_swept_by_the_next_build(home):
    """The next build sweeps first, then goes on to its own provisioning (where this test stops it with
    SIGTERM, already proven above, rather than wait for a second failing build's apt phase)."""
    proc, _ = start_build(home)
    proc.kill()
    proc.wait(timeout=30)
    images = home / "images" / "local"
    (left,) = images.glob("*.building")
    running = local_build.pids_naming(left)
    assert running, "a SIGKILLed build leaves its container running (what the sweep is for)"
    again, _ = start_build(home, sweeping=left)
    assert not left.exists()
    assert [pid for pid in running if local_build.alive(pid)] == []
    again.send_signal(signal.SIGTERM)
    _, err = again.communicate(timeout=180)
    out = " ".join(err.split())
    assert f"removed what an interrupted build left: {left.name}" in out
    assert again.returncode == 128 + signal.SIGTERM, err
    no_image_left(home)
