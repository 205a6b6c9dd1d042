"""Bad input and faults the issues name, each one clear line: an unknown image profile (issue 2), and
for `status` an SSH server that refuses and a machine without the agent (issue 6)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from playground import remote
from playground.errors import PlaygroundError

CLI = str(Path(sys.executable).with_name("playground"))


def test_unknown_profile_is_one_line_naming_the_flag_and_the_choices():
    proc = subprocess.run([CLI, "image", "build", "--profile", "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: --profile: unknown profile 'nope'; expected one of current, local, seed, seed-local"]


def test_ssh_refused_says_so_and_what_to_do(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = remote.Target(name="pgx", host="127.0.0.1", user="playground", key_file=str(tmp_path / "key"))
    conn = remote.connect(target, timeout=2)
    conn.port = port
    with pytest.raises(PlaygroundError, match=r"SSH refused by pgx \(127.0.0.1\): is sshd up\? try "
                                              r"`playground start --name pgx`"):
        with remote.one_line_errors(target):
            conn.open()


def test_a_gateway_that_exits_fails_at_once_with_what_it_said(tmp_path):
    """gcloud's IAP tunnel refusing (no such VM, no permission) ends the attempt when gcloud exits, with its
    words: not the 20 s banner wait (paramiko reads an exited ProxyCommand as empty, over and over)."""
    import time

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    said = "ERROR: (gcloud.compute.start-iap-tunnel) instance pgx not found"
    target = remote.Target(name="pgx", host="pgx", user="playground", key_file=str(key),
                           proxy_command=f"sh -c 'echo \"{said}\" >&2; exit 1'")
    t0 = time.monotonic()
    with pytest.raises(PlaygroundError) as caught:
        with remote.one_line_errors(target):
            remote.connect(target, timeout=20).open()
    assert time.monotonic() - t0 < 10
    assert str(caught.value) == f"the way in to pgx closed (sh): {said}"


def test_a_machine_without_the_agent_is_named_as_such():
    ran = SimpleNamespace(return_code=127, stdout="", stderr="sudo: playground-agent: command not found")
    conn = SimpleNamespace(run=lambda *a, **k: ran)
    with pytest.raises(PlaygroundError, match="the playground agent is not installed on this machine"):
        remote.agent_status(conn)


def test_an_old_agent_without_json_is_named_as_such():
    ran = SimpleNamespace(return_code=2, stdout="usage: playground-agent {apply,watch}", stderr="")
    conn = SimpleNamespace(run=lambda *a, **k: ran)
    with pytest.raises(PlaygroundError, match=r"the agent's status is not JSON \(old agent\? rebuild the image\)"):
        remote.agent_status(conn)
