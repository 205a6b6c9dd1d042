"""A worker machine's checks of its main, for the health report: the broker (Redis's own protocol), and the
tasks the main's database says run here."""
from __future__ import annotations

import os
import socket
import subprocess
from typing import Any, Dict, Optional

from . import paths
from .files import read_env

# Airflow's [operators] default_queue: every task's, and the one each worker consumes (we set no other).
QUEUE = "default"


def _redis_command(*args: str) -> str:
    return "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)


def cluster_secrets() -> Optional[Dict[str, str]]:
    """The worker's copy of its main's passwords (cluster.env, root-only); None when it has none."""
    try:
        return read_env(paths.SECRETS_DIR + "/cluster.env")
    except OSError:
        return None


def broker_state(host: str, password: str, port: int = 6379, timeout: float = 3.0) -> Dict[str, Any]:
    """Can this worker use the main's Redis: AUTH with its password and PING, in Redis's own protocol; and
    how many tasks wait in the queue (kombu keeps a queue as a Redis list of that name)."""
    where = "%s:%d" % (host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall((_redis_command("AUTH", password) + _redis_command("PING")
                          + _redis_command("LLEN", QUEUE)).encode())
            said = b""
            while said.count(b"\r\n") < 3 and len(said) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                said += chunk
    except OSError as exc:
        return {"ok": False, "reason": "broker %s not reachable: %s" % (where, exc), "state": "unreachable"}
    replies = said.split(b"\r\n")
    if replies[:2] != [b"+OK", b"+PONG"]:
        first = replies[0].decode(errors="replace")[:80]
        return {"ok": False, "reason": "broker %s refused: %s" % (where, first), "state": "refused"}
    waiting = int(replies[2][1:]) if len(replies) > 2 and replies[2][:1] == b":" else None
    return {"ok": True, "reason": "", "state": "connected to %s" % where, "queue": QUEUE, "waiting": waiting}


def running_here(cfg: Dict[str, Any], password: str, timeout: float = 5.0) -> Dict[str, Any]:
    """The task instances running on this worker, from the main's database: Airflow records each one's
    hostname (socket.getfqdn(), its default hostname_callable). The password goes to psql in its
    environment, never in argv."""
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT=str(int(timeout)))
    sql = ("SELECT dag_id || '.' || task_id FROM task_instance WHERE state = 'running' AND hostname = :'here' "
           "ORDER BY start_date;\n")
    try:
        proc = subprocess.run(["psql", "-h", str(cfg.get("main_address")), "-U", "airflow", "-d", "airflow",
                               "-X", "-At", "-v", "here=" + socket.getfqdn(), "-v", "ON_ERROR_STOP=1"],
                              input=sql, env=env, capture_output=True, text=True, timeout=timeout + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "reason": "the main's database: %s" % exc, "tasks": []}
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        return {"ok": False, "reason": "the main's database: %s" % said[:160], "tasks": []}
    return {"ok": True, "reason": "", "tasks": [t for t in proc.stdout.splitlines() if t]}
