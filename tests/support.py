"""Helpers shared by the tests (conftest modules are not importable by name)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def metadata_doc(**attributes: str) -> dict:
    """A GCE metadata document (recursive form) with these instance attributes."""
    return {
        "instance": {"id": "4242424242424242424", "name": "demo", "zone": "projects/1/zones/europe-west2-b",
                     "attributes": dict(attributes)},
        "project": {"projectId": "playground-demo", "numericProjectId": 1, "attributes": {}},
    }


def agent_config(**attributes: str):
    """The agent's Config of a machine with these attributes (checked by the schema)."""
    from playground_agent import schema
    from playground_agent.config import Config

    cfg = Config(instance_id="1", instance_name="n", project_id="p", zone="z", region="r")
    for key, value in schema.parse_attributes(attributes, schema.Context(known_zone=lambda z: True)).items():
        setattr(cfg, key, value)
    return cfg


SERVICE_ACCOUNT_EMAIL = "123456789-compute@developer.gserviceaccount.com"


def service_accounts(token: str, scopes: tuple[str, ...] = ("https://www.googleapis.com/auth/cloud-platform",)) -> dict:
    """What GCE serves under instance/service-accounts/: the default account, also under its email (Google's
    own clients ask for the token by email), its token as JSON text and its scopes one a line."""
    account = {
        "aliases": "default\n", "email": SERVICE_ACCOUNT_EMAIL, "scopes": "".join(s + "\n" for s in scopes),
        "token": json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
    }
    return {"default": account, SERVICE_ACCOUNT_EMAIL: account}


def run_ok(host, cmd: str) -> str:
    """Run cmd through a testinfra host; fail the test with its stderr if it fails."""
    out = host.run(cmd)
    assert out.rc == 0, f"{cmd}: {out.stderr}"
    return out.stdout


def airflow_api(machine, method: str, path: str, body: dict | None = None, timeout: float = 120) -> dict:
    """Airflow's REST API on the machine as its admin, through `playground-agent airflow-api` (v1 with basic
    auth or v2 with a token, by the image's Airflow; the password never leaves the machine nor reaches a
    command line). machine: a testinfra host or a local instance. The answer's JSON ({} if none); on an
    HTTP error also "http_status" (e.g. 404 while a DAG is not parsed yet) and the agent's line in "error"."""
    cmd = f"sudo -n playground-agent airflow-api {method} {shlex.quote(path)}"
    if body is not None:
        cmd += " " + shlex.quote(json.dumps(body))
    if hasattr(machine, "run"):
        out = machine.run(cmd)
        rc, stdout, stderr = out.rc, out.stdout, out.stderr
    else:
        from playground.local import instance

        proc = instance.remote(machine, cmd, timeout=timeout)
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    try:
        answer = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        answer = {"raw": stdout[-500:]}
    if not isinstance(answer, dict):
        answer = {"items": answer}
    if rc != 0:
        code = re.search(r"HTTP (\d+)", stderr)
        answer.update(http_status=int(code.group(1)) if code else 0, error=stderr.strip()[-500:])
    return answer


def remote_json(host, path: str) -> dict:
    return json.loads(run_ok(host, f"cat {path}"))


def need_local() -> None:
    """Skip, saying why, where local instances and builds cannot run: they need root and the tools."""
    if os.geteuid() != 0:
        pytest.skip("local instances need root (systemd-nspawn, network namespaces)")
    for tool in ("systemd-nspawn", "packer", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (see .ci/run for the packages)")


def hold_port(port: int, host: str = "127.0.0.1"):
    """A listening socket on host:port, or None when something else holds it already: either way the
    port is taken while the caller keeps the result."""
    import socket

    sock = socket.socket()
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def instance_ssh(inst, command: list[str], stdin: str = "", timeout: float = 60) -> str:
    """Run command on a local instance over SSH (stdin fed to it); fail the test with its stderr if it fails."""
    import subprocess

    from playground.local import instance

    proc = subprocess.run(instance.ssh_args(inst) + command, input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(command)}: {proc.stderr[-2000:]}"
    return proc.stdout


def remove_instance(name: str) -> None:
    """Destroy a local instance left by an earlier run, or the layer a test placed before a launch that
    did not start (a folder with no instance.json)."""
    from playground.local import instance

    folder = instance.paths.instances_dir() / name
    if (folder / "instance.json").exists():
        instance.destroy(name)
    elif folder.exists():
        shutil.rmtree(folder)


def stop_process(proc, timeout: float) -> None:
    """SIGTERM a process a test started, SIGKILL if it has not exited within timeout; None or ended: nothing."""
    import subprocess

    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def eventually(fn, timeout: float, every: float = 2.0):
    """fn() until it returns something true or timeout seconds pass: its last answer. Every 2 s by default: a
    wait ends soon after its event, and each poll (an SSH round, often a Python process on the instance)
    costs the CPUs that the machine being waited for needs."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


STORAGE_EMULATOR = [sys.executable, str(Path(__file__).parent / "image" / "standin_storage_emulator.py")]


@contextlib.contextmanager
def storage_emulator(workdir: Path, project: str):
    """gcp-storage-emulator (in memory) on a free loopback port: its endpoint, stopped after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(workdir / "emulator.log", "wb") as log:
        proc = subprocess.Popen([*STORAGE_EMULATOR, "start", "--host", "127.0.0.1", "--port", str(port),
                                 "--in-memory"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b?project={project}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the storage emulator did not start: " + (workdir / "emulator.log").read_text()[-2000:])
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
