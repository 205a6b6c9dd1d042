"""SSH to a playground machine with fabric: commands, the health report, port forwards.

One way in for both providers: a local instance is reached directly on its
namespace address; a GCE machine has no external IP, so its connection goes
through a ProxyCommand gateway (`gcloud compute start-iap-tunnel ... --listen-on-stdin`),
the way Airflow's Google provider does in its Compute Engine SSH hook.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from typing import Iterator, Optional

from .errors import PlaygroundError
from .forwarder import Forwarder


@dataclass
class Target:
    """Where a machine's SSH server is and how to log in to it."""

    name: str
    host: str
    user: str
    key_file: str
    known_hosts: Optional[str] = None
    proxy_command: Optional[str] = None


def iap_proxy_command(instance: str, zone: str, project: str) -> str:
    if shutil.which("gcloud") is None:
        raise PlaygroundError("SSH to a GCE playground goes through IAP and needs the gcloud CLI: install the "
                              "Google Cloud SDK (https://cloud.google.com/sdk/docs/install), then "
                              "`gcloud auth login`")
    return (f"gcloud compute start-iap-tunnel {instance} 22 --listen-on-stdin "
            f"--zone {zone} --project {project} --verbosity=warning")


def connect(target: Target, timeout: float = 5.0):
    """A fabric Connection; nothing is opened until first use."""
    import logging

    from fabric import Config, Connection

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # failures become one line (explain), not a trace

    kwargs = {"key_filename": target.key_file, "look_for_keys": False, "allow_agent": False,
              "banner_timeout": timeout, "auth_timeout": timeout}
    if target.proxy_command:
        kwargs["sock"] = gateway(target.proxy_command)
    conn = Connection(target.host, user=target.user, connect_timeout=timeout, connect_kwargs=kwargs,
                      config=Config(overrides={"load_ssh_configs": False}))
    if target.known_hosts:
        # paramiko saves a new host key to the file it loaded: it must exist (first contact, accept-new).
        with contextlib.suppress(OSError):
            if not os.path.exists(target.known_hosts):
                os.close(os.open(target.known_hosts, os.O_WRONLY | os.O_CREAT, 0o600))
            conn.client.load_host_keys(target.known_hosts)
    return conn


def gateway(command: str):
    """paramiko's ProxyCommand, except that a gateway that has exited (gcloud refused: no such VM, no IAP
    permission) fails at once with what it said. paramiko's own reads an exited command's stdout as b''
    over and over until its timeout, a CPU busy the whole 20 s banner wait."""
    import select

    import paramiko

    class Gateway(paramiko.ProxyCommand):
        def failure(self) -> paramiko.ProxyCommandFailure:
            said = b""
            with contextlib.suppress(Exception):
                self.process.wait(2)
                said = self.process.stderr.read() or b""
            return paramiko.ProxyCommandFailure(" ".join(self.cmd), said.decode("utf-8", "replace").strip()
                                                or f"exited {self.process.returncode}")

        def send(self, content: bytes) -> int:
            try:
                return super().send(content)
            except paramiko.ProxyCommandFailure:
                raise self.failure() from None

        def recv(self, size: int) -> bytes:
            start = time.monotonic()
            while True:
                left = None if self.timeout is None else self.timeout - (time.monotonic() - start)
                if left is not None and left <= 0:
                    raise socket.timeout()
                ready, _, _ = select.select([self.process.stdout], [], [], left)
                if not ready:
                    continue
                data = os.read(self.process.stdout.fileno(), size)
                if data:
                    return data  # paramiko's packetizer reads on until it has what it asked for
                raise self.failure()

        def close(self) -> None:
            if self.process.poll() is None:  # paramiko's own kills the pid, reaped or not
                super().close()

    return Gateway(command)


def explain(exc: BaseException, target: Target) -> str:
    """One line saying why SSH to target failed and what to do next."""
    import paramiko

    if isinstance(exc, paramiko.AuthenticationException):
        return f"SSH key refused by {target.name}: is {target.key_file} in the instance's ssh-keys attribute?"
    if isinstance(exc, paramiko.ProxyCommandFailure):
        said = (exc.error or "").strip().splitlines() or ["no reason given"]
        return f"the way in to {target.name} closed ({exc.command.split()[0]}): {said[-1]}"
    if isinstance(exc, FileNotFoundError) and exc.filename in (None, target.key_file):
        return f"SSH key missing: {target.key_file}"
    if isinstance(exc, FileNotFoundError):
        return f"SSH to {target.name}: {exc.filename} is missing"
    # paramiko reports a refused connect as NoValidConnectionsError, one errno per address it tried.
    refused = isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors and all(
        isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
    if refused or isinstance(exc, ConnectionRefusedError):
        return f"SSH refused by {target.name} ({target.host}): is sshd up? try `playground start --name {target.name}`"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"{target.name} ({target.host}) did not answer SSH in time: stopped or still booting?"
    if isinstance(exc, OSError):
        return f"cannot reach {target.name} ({target.host}): {exc.strerror or exc}"
    return f"SSH to {target.name} failed: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def one_line_errors(target: Target) -> Iterator[None]:
    """paramiko and socket failures inside the block become one PlaygroundError line (explain)."""
    try:
        yield
    except PlaygroundError:
        raise
    except Exception as exc:
        raise PlaygroundError(explain(exc, target)) from exc


def agent_status(conn, timeout: float = 10.0) -> dict:
    """The agent's health report with its live checks (`playground-agent status --json`)."""
    res = conn.run("sudo -n playground-agent status --json", hide=True, warn=True, timeout=timeout, in_stream=False)
    if res.return_code == 127 or "command not found" in res.stderr:
        raise PlaygroundError("the playground agent is not installed on this machine: was it made from a "
                              "playground image?")
    try:
        return json.loads(res.stdout)
    except ValueError as exc:
        raise PlaygroundError(f"the agent's status is not JSON (old agent? rebuild the image): "
                              f"{(res.stderr or res.stdout).strip()[:200]}") from exc


def run_input(conn, command: str, data: str, timeout: float = 600) -> tuple[int, str, str]:
    """command with data on its stdin, then EOF: (exit code, stdout, stderr). Through paramiko's channel:
    invoke's in_stream sends stdin a byte every 10 ms (a 400-byte document took 4 s)."""
    conn.open()
    stdin, stdout, stderr = conn.client.exec_command(command, timeout=timeout)
    stdin.write(data.encode())
    stdin.channel.shutdown_write()
    out, err = stdout.read().decode("utf-8", "replace"), stderr.read().decode("utf-8", "replace")
    return stdout.channel.recv_exit_status(), out, err


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_local_port(wanted: int, taken: set[int], tries: int = 50) -> int:
    """wanted if free, else the next free port above it."""
    for port in range(wanted, min(wanted + tries, 65536)):
        if port not in taken and port_free(port):
            return port
    raise PlaygroundError(f"--port {wanted}: it and the {tries - 1} ports above it are in use")


@dataclass
class Forward:
    remote_port: int
    local_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"


@contextlib.contextmanager
def open_forwards(conn, remote_ports: list[int]) -> Iterator[tuple[list[Forward], Forwarder]]:
    """Local forwards 127.0.0.1:local -> machine's 127.0.0.1:remote, open while inside the block, and their
    Forwarder (forwarder.py: it outlives a dropped connection; `reopen` gives it a new one)."""
    chosen: list[Forward] = []
    for port in remote_ports:
        chosen.append(Forward(port, pick_local_port(port, {f.local_port for f in chosen})))
    conn.open()
    fwd = Forwarder([(f.local_port, f.remote_port) for f in chosen], lambda: conn.transport)
    fwd.start()
    try:
        yield chosen, fwd
    finally:
        fwd.close()
        conn.close()


@contextlib.contextmanager
def forwards(conn, remote_ports: list[int]) -> Iterator[list[Forward]]:
    with open_forwards(conn, remote_ports) as (chosen, _):
        yield chosen


def reopen(conn, target: Target) -> None:
    """A new SSH connection in place of a dropped one, with a new IAP gateway on GCE (the old one's gcloud
    has exited with its connection); raises what connecting raises when the machine does not answer."""
    with contextlib.suppress(Exception):
        conn.close()
    if target.proxy_command:
        conn.connect_kwargs["sock"] = gateway(target.proxy_command)
    conn.open()
