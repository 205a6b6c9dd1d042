"""Idle autostop (issue 16; the model is SkyPilot's `autostop`): with the attribute `autostop` set to N
minutes, the machine powers itself off once it has been idle for N minutes. On GCE a power-off from the
guest stops the VM: it goes to TERMINATED, where no vCPU or memory is billed, only its disks (Google,
"Instance life cycle", cloud.google.com/compute/docs/instances/instance-life-cycle; "Suspend, stop, or
reset Compute Engine instances", .../instances/suspend-stop-reset-instances-overview). Locally the
instance's container or VM ends, and `playground list` shows it stopped.

Idle means, at every check for N minutes:
- no work in Airflow: no task instance queued, scheduled, running, up for retry or reschedule, deferred
  or restarting, and no DAG run queued or running (Airflow's own tables, over the socket);
- no SSH connection that has lasted a check interval: a shell, `playground tunnel` (the web UIs listen on
  127.0.0.1 only, so every web request comes through one), `playground ssh -- CMD` still running. A
  connection seen at one check only (`playground status`, a launch's health polls) does not count.
A check that cannot tell (Airflow's database does not answer) holds the machine up: it never powers off
on a guess. Changing the setting restarts the idle clock, as SkyPilot's does; so does every boot (the
clock lives in /run).

Runs as playground-autostop.service, a check every CHECK_S seconds; the last check is in
/run/playground/autostop.json (root only: it holds the SSH peers' addresses), which the health report
summarises for `status` ("autostop in 23 min", health.autostop_summary).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, Optional, Set

from . import paths
from .commands import PSQL_AS_AIRFLOW
from .files import read_json, write_atomic
from .metadata import MetadataClient, MetadataError
from .schema import ConfigError, Context, parse_value

CHECK_S = 10
LAST_STOP_FILE = paths.p("/var/lib/playground/autostop-last.json")  # kept across boots: when and why
SSH_PORT = 22
TCP_TABLES = (paths.p("/proc/net/tcp"), paths.p("/proc/net/tcp6"))
ESTABLISHED = "01"  # include/net/tcp_states.h
# Work the scheduler has taken on: powering off would kill it or leave it waiting (Airflow 2.0+ names).
BUSY_TASK_STATES = ("queued", "scheduled", "running", "restarting", "up_for_retry", "up_for_reschedule",
                    "deferred")
BUSY_RUN_STATES = ("queued", "running")


def _in(states: Iterable[str]) -> str:
    return ", ".join("'%s'" % s for s in states)


BUSY_SQL = ("SELECT json_build_object('tasks', (SELECT count(*) FROM task_instance WHERE state IN (%s)), "
            "'runs', (SELECT count(*) FROM dag_run WHERE state IN (%s)))"
            % (_in(BUSY_TASK_STATES), _in(BUSY_RUN_STATES)))


def ssh_peers(tables: Iterable[str] = TCP_TABLES, port: int = SSH_PORT) -> Set[str]:
    """The remote ends of established TCP connections to local port 22, from the kernel's tables
    (each line: sl, local HEXIP:HEXPORT, remote HEXIP:HEXPORT, state, ...)."""
    peers: Set[str] = set()
    for table in tables:
        try:
            with open(table, encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != ESTABLISHED:
                continue
            try:
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if local_port == port:
                peers.add(fields[2])
    return peers


def airflow_work() -> Optional[Dict[str, int]]:
    """Task instances and DAG runs in flight, or None when Airflow's database does not answer."""
    try:
        proc = subprocess.run(PSQL_AS_AIRFLOW + [BUSY_SQL],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
        doc = json.loads(proc.stdout.strip()) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not isinstance(doc, dict):
        return None
    return {"tasks": int(doc.get("tasks") or 0), "runs": int(doc.get("runs") or 0)}


def decide(minutes: int, now: float, work: Optional[Dict[str, int]], peers: Set[str],
           previous: Dict[str, Any]) -> Dict[str, Any]:
    """One check: what holds the machine up, since when it is idle, and whether to power off now."""
    held = []
    if minutes:
        if work is None:
            held.append("Airflow's database did not answer")
        else:
            if work["tasks"]:
                held.append("%d task(s) running or queued" % work["tasks"])
            if work["runs"]:
                held.append("%d DAG run(s) running" % work["runs"])
        lasting = peers & set(previous.get("peers") or [])
        if lasting:
            held.append("%d SSH session(s) or tunnel(s) open" % len(lasting))
    same_setting = previous.get("minutes") == minutes
    idle_since = None
    if minutes and not held:
        idle_since = previous.get("idle_since") if same_setting and previous.get("idle_since") else now
    stops_at = idle_since + minutes * 60 if idle_since is not None else None
    if not minutes:
        state = "off"
    elif held:
        state = "held"
    else:
        state = "stopping" if now >= stops_at else "idle"
    return {"minutes": minutes, "checked_at": now, "state": state, "held_by": held, "idle_since": idle_since,
            "stops_at": stops_at, "peers": sorted(peers)}


def log(msg: str) -> None:
    print("playground-agent: autostop: " + msg, file=sys.stderr, flush=True)


def _saved_minutes() -> int:
    cfg = read_json(paths.GOOD_CONFIG) or {}
    try:
        return int(cfg.get("autostop_minutes") or 0)
    except (TypeError, ValueError):
        return 0


def current_minutes(client: Any) -> int:
    """The setting as metadata has it now (`playground autostop` changes it on a running machine, and the
    agent's full re-apply is not needed for it); the last applied config's when metadata can't be read
    or holds a value the schema refuses (said once in the journal)."""
    try:
        attrs: Dict[str, Any] = {}
        for tree in ("project/attributes/", "instance/attributes/"):  # the instance's win, as in config.py
            found, _ = client.get(tree, recursive=True)
            attrs.update(found if isinstance(found, dict) else {})
    except MetadataError:
        return _saved_minutes()
    value = attrs.get("autostop")
    if value is None:
        return 0
    try:
        return int(parse_value("autostop", value, Context(known_zone=lambda z: False)))
    except ConfigError as exc:
        if str(exc) != _refused.get("last"):
            log("%s: keeping the applied setting" % exc)
            _refused["last"] = str(exc)
        return _saved_minutes()


_refused: Dict[str, str] = {}


def check_once(previous: Dict[str, Any], client: Any) -> Dict[str, Any]:
    minutes = current_minutes(client)
    work, peers = (airflow_work(), ssh_peers()) if minutes else ({"tasks": 0, "runs": 0}, set())
    state = dict(decide(minutes, time.time(), work, peers, previous), every_s=CHECK_S)
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    write_atomic(paths.AUTOSTOP_STATE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600, 0)
    if state["held_by"] != previous.get("held_by") and state["state"] != "off":
        log("held up by " + "; ".join(state["held_by"]) if state["held_by"]
            else "idle: powering off in %d min unless used" % state["minutes"])
    return state


def main() -> int:
    """The service's loop; powers the machine off and returns when it has been idle long enough."""
    client = MetadataClient(retries=2)
    state = read_json(paths.AUTOSTOP_STATE) or {}  # the same boot's clock, if the service restarted
    while True:
        state = check_once(state, client)
        if state["state"] == "stopping":
            idle_min = (state["checked_at"] - state["idle_since"]) / 60
            log("idle for %.1f min (autostop %d min): powering off" % (idle_min, state["minutes"]))
            record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state["checked_at"])),
                      "decided_at": state["checked_at"], "minutes": state["minutes"], "idle_since": state["idle_since"]}
            write_atomic(LAST_STOP_FILE, json.dumps(record, sort_keys=True) + "\n", 0o644, 0)
            return subprocess.run(["systemctl", "poweroff"]).returncode
        time.sleep(CHECK_S)
