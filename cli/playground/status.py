"""`playground status`: one model of each machine's health, rendered or printed as JSON.

The model is built from the agent's health report (live checks, over one fabric
SSH connection per machine), checked in parallel. Levels: green usable, amber
usable but something needs a look, red broken. Exit code: 0 all green,
1 degraded (amber or red services), 2 down or unreachable.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SCHEMA = 1
LEVELS = ("green", "amber", "red")
HEARTBEAT_AMBER_S = 30  # Airflow's own scheduler_health_check_threshold
DISK_AMBER_PCT, DISK_RED_PCT = 80, 95  # the agent's, health.py
RESTART_AMBER_S = 600  # a restart within 10 minutes shows amber; after that the service is just running
DOWN_STATES = ("stopped", "unreachable", "incomplete", "absent")


@dataclass
class Machine:
    """What the provider knows about a machine, before SSH."""

    name: str
    provider: str
    project: str
    zone: str
    state: str
    machine_type: str
    image: str
    profile: str
    address: str
    started_at: Optional[float]
    target: Any = None  # remote.Target when reachable
    schedule: Optional[dict] = None
    error: Optional[str] = None  # why it cannot be reached, known before SSH
    start_command: str = ""  # how the user starts it again (the provider says)


def worst(levels) -> str:
    levels = list(levels)
    return max(levels, key=LEVELS.index) if levels else "green"


def services_from_report(rep: dict) -> list[dict]:
    """The agent's report -> one row per service with a level and a reason."""
    units = rep.get("units", {})
    rows = []

    def unit_row(label: str, unit: str, extra_ok: bool = True, reason: str = "") -> dict:
        st = units.get(unit, {"active": "unknown"})
        if st.get("active") != "active":
            return {"name": label, "unit": unit, "level": "red",
                    "reason": f"{unit} is {st.get('active')}" + (f" ({st['result']})" if st.get("result") not in
                                                                  (None, "", "success") else "")}
        if not extra_ok:
            return {"name": label, "unit": unit, "level": "amber", "reason": reason}
        restarts = int(st.get("restarts") or 0)
        active_for = st.get("active_for_s")
        # A restart is news for a while, then history: amber until the service has run RESTART_AMBER_S
        # since (an agent that does not say how long it has run keeps it amber).
        if restarts and (active_for is None or active_for < RESTART_AMBER_S):
            ago = f", {active_for:.0f} s ago" if active_for is not None else ""
            return {"name": label, "unit": unit, "level": "amber", "reason": f"restarted {restarts} time(s){ago}"}
        return {"name": label, "unit": unit, "level": "green", "reason": reason or "active"}

    cfg = rep.get("config", {})
    rows.append({"name": "agent config", "unit": "playground-agent.service",
                 "level": "green" if cfg.get("state") == "ok" else "red",
                 "reason": f"generation {cfg.get('generation')}" if cfg.get("state") == "ok"
                 else (cfg.get("error") or "not applied")})
    if rep.get("role") == "worker":
        rows += worker_rows(rep, unit_row) + lineage_rows(rep, unit_row)
    else:
        rows += main_rows(rep, unit_row)
    if rep.get("disk"):
        rows.append(disk_row(rep["disk"]))
    return rows


def lineage_rows(rep: dict, unit_row) -> list[dict]:
    lineage = rep.get("lineage")
    if lineage is None:  # agents before the lineage row report none
        return []
    return [unit_row("lineage delivery", "playground-lineage.service", lineage.get("ok", False),
                     lineage.get("state", ""))]


def main_rows(rep: dict, unit_row) -> list[dict]:
    """A main machine (or the one machine): its database, Airflow's parts, MLflow, lineage, deploys, mounts,
    the broker when it has workers, the nightly backup."""
    units, rows = rep.get("units", {}), []
    # The cluster unit where the agent reports it (Debian's postgresql.service stays active without it).
    cluster = next((u for u in sorted(units) if u.startswith("postgresql@")), "postgresql.service")
    pg = rep.get("postgresql", {})
    rows.append(unit_row("postgresql", cluster, pg.get("ok", True), pg.get("state", "")))
    af = rep.get("airflow", {})
    meta = af.get("metadatabase")
    rows.append(unit_row("airflow webserver", "airflow-webserver.service", af.get("ok", False) or meta == "healthy",
                         f"/health metadatabase {meta or 'not answering'}"))
    age = af.get("heartbeat_age_s")
    for unit in sorted(u for u in units if u.startswith("airflow-scheduler@")):
        fresh = age is not None and age < HEARTBEAT_AMBER_S
        reason = f"heartbeat {age:.0f} s ago" if age is not None else "no heartbeat yet"
        number = unit.split("@")[1].removesuffix(".service")
        rows.append(unit_row(f"airflow scheduler {number}", unit, fresh, reason))
    if "airflow-triggerer.service" in units:
        # /health has the triggerer's heartbeat from Airflow 2.6; before, the unit's state is all there is.
        beat = af.get("triggerer_heartbeat_age_s")
        fresh = af.get("triggerer") in (None, "healthy")
        reason = f"heartbeat {beat:.0f} s ago" if beat is not None else "runs deferred tasks' triggers"
        rows.append(unit_row("airflow triggerer", "airflow-triggerer.service", fresh,
                             reason if fresh else f"/health triggerer {af.get('triggerer')}"))
    ml = rep.get("mlflow", {})
    rows.append(unit_row("mlflow", "mlflow-server.service", ml.get("ok", False),
                         ml.get("reason") or "/health OK"))
    rows += lineage_rows(rep, unit_row)
    for part in ("dags", "packages"):  # agents before deploy report neither
        info = rep.get(part)
        if info is not None:
            rows.append({"name": part, "unit": None, "level": "green" if info.get("ok", True) else "amber",
                         "reason": info.get("state", "")})
    for part, label, unit in (("mount", "bucket mount", "playground-bucket-mount.service"),
                              ("proxy", "cloud sql proxy", "cloud-sql-proxy.service")):
        info = rep.get(part)
        if info is None:
            continue
        rows.append({"name": label, "unit": unit, "level": "green" if info.get("ok") else "red",
                     "reason": info.get("state") or info.get("reason", "")})
    if "playground-redis.service" in units:  # a main with workers: the broker and MLflow's port for them
        rows.append(unit_row("celery broker", "playground-redis.service", True, "redis on the private network"))
        rows.append(unit_row("mlflow for workers", "playground-mlflow-forward.service", True,
                             "MLflow's port on the private network"))
    if rep.get("backup"):
        rows.append(backup_row(rep["backup"]))
    return rows


def worker_rows(rep: dict, unit_row) -> list[dict]:
    """A worker machine (role worker): its Celery worker, the main's broker and database, MLflow through the
    forward."""
    broker, ml, running = rep.get("broker", {}), rep.get("mlflow", {}), rep.get("running", {})
    tasks = running.get("tasks", [])
    doing = f"runs {len(tasks)}: " + ", ".join(tasks[:3]) + (f" and {len(tasks) - 3} more" if len(tasks) > 3 else "") \
        if tasks else "runs no task"
    queue = f"queue {broker['queue']} ({broker.get('waiting')} waiting)" if broker.get("queue") else ""
    rows = [unit_row("celery worker", "airflow-worker.service", True,
                     "; ".join(p for p in (f"works for {rep.get('main_address')}", queue,
                                           doing if running.get("ok") else "") if p)),
            {"name": "broker", "unit": None, "level": "green" if broker.get("ok") else "red",
             "reason": broker.get("state") if broker.get("ok") else broker.get("reason", "not checked")},
            unit_row("mlflow (main's)", "playground-mlflow-forward.service", ml.get("ok", False),
                     ml.get("reason") or "/health OK through the forward")]
    if running and not running.get("ok"):  # the worker's tasks cannot record their state
        rows.insert(2, {"name": "database (main's)", "unit": None, "level": "red", "reason": running.get("reason")})
    return rows


def backup_row(info: dict) -> dict:
    """The nightly backup: amber when the last one failed (or could not delete old ones), else green."""
    reason = f"to {info.get('to')} at {info.get('when')}"
    if info.get("last_state") == "ok":
        size = f", {_size(info['bytes'])}" if info.get("bytes") is not None else ""
        reason += f"; last {info.get('last_at')}{size}"
    elif not info.get("last_state"):
        reason += "; none yet"
    if info.get("error"):
        reason += f"; failing: {info['error']}"
    return {"name": "nightly backup", "unit": "playground-backup.service",
            "level": "green" if info.get("ok", True) else "amber", "reason": reason}


def _size(n: float) -> str:
    """Bytes as the disk row says them: whole B and KB, MB and GB to one decimal."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit != "MB" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def disk_row(disk: dict) -> dict:
    """The data disk: amber from DISK_AMBER_PCT used, red from DISK_RED_PCT, with what uses the space (the
    agent's own thresholds, health.py; an agent that reports no level gets them here)."""
    pct = float(disk.get("used_pct") or 0)
    level = disk.get("level") or ("red" if pct >= DISK_RED_PCT else "amber" if pct >= DISK_AMBER_PCT else "green")
    reason = f"{pct:.0f}% of {disk.get('total_gb', '-')} GB used"
    if disk.get("volume") is True:
        reason = "data volume: " + reason
    elif disk.get("volume") is False:  # an agent from before data volumes says neither
        reason = "boot disk (no data volume): " + reason
    if disk.get("free_gb") is not None:
        reason += f", {disk['free_gb']:.1f} GB free"
    uses = [u for u in disk.get("uses") or [] if u.get("bytes")]
    if uses:
        reason += "; " + ", ".join(f"{u['label']} {_size(u['bytes'])}" for u in uses[:4])
    level = level if level in LEVELS else "amber"
    failed = (disk.get("retention") or {}).get("error")
    if failed:  # old logs and rows stay until it works again
        reason += f"; retention failing: {failed}"
        level = worst([level, "amber"])
    return {"name": "disk", "unit": None, "level": level, "reason": reason}


def check(machine: Machine, timeout: float = 8.0) -> dict:
    """Everything status shows about one machine; never raises, never hangs past timeout."""
    from . import remote

    row: dict[str, Any] = {
        "name": machine.name, "provider": machine.provider, "project": machine.project, "zone": machine.zone,
        "state": machine.state, "machine_type": machine.machine_type, "image": machine.image,
        "profile": machine.profile, "address": machine.address,
        "uptime_s": round(time.time() - machine.started_at) if machine.started_at and machine.state == "running"
        else None,
        "schedule": machine.schedule or {"next_stop": None, "next_start": None},
        "services": [], "disk": None, "memory": None, "autostop": None, "error": None, "next_step": None,
    }
    if machine.state != "running" or machine.target is None:
        row["level"] = "down"
        row["error"] = machine.error or f"instance is {machine.state}"
        row["next_step"] = None if machine.error else (machine.start_command or None)
        return row
    conn = remote.connect(machine.target, timeout=timeout)
    try:
        rep = remote.agent_status(conn, timeout=timeout)
        row["services"] = services_from_report(rep)
        row["disk"] = rep.get("disk")
        row["memory"] = rep.get("memory")
        row["autostop"] = rep.get("autostop")  # agents before autostop report none
        red = [s for s in row["services"] if s["level"] == "red" and s.get("unit")]
        if red:
            cmd = " ; ".join(f"echo '>>> {s['unit']}'; sudo -n journalctl -u {s['unit']} -n 5 --no-pager -o cat"
                             for s in red)
            out = conn.run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False).stdout
            journals: dict[str, list[str]] = {}
            current = None
            for line in out.splitlines():
                if line.startswith(">>> "):
                    current = line[4:]
                    journals[current] = []
                elif current:
                    journals[current].append(line)
            for s in red:
                s["journal"] = journals.get(s["unit"], [])[-5:]
        row["level"] = worst(s["level"] for s in row["services"])
        if row["level"] != "green":
            row["next_step"] = f"playground ssh --name {machine.name} -- sudo journalctl -u UNIT"
    except Exception as exc:  # one line per machine, never a traceback
        from .errors import PlaygroundError

        row["level"] = "down"
        row["state"] = "unreachable" if not isinstance(exc, PlaygroundError) else row["state"]
        row["error"] = str(exc) if isinstance(exc, PlaygroundError) else remote.explain(exc, machine.target)
        row["next_step"] = f"playground start --name {machine.name}" if row["state"] == "unreachable" else None
    finally:
        conn.close()
    return row


def collect(machines: list[Machine], timeout: float = 8.0,
            checker: Callable[[Machine, float], dict] = check) -> dict:
    """Check machines in parallel; the model `--json` prints."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(machines), 16))) as pool:
        rows = list(pool.map(lambda m: checker(m, timeout), machines))
    return {"schema": SCHEMA, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "instances": rows}


def exit_code(model: dict) -> int:
    rows = model["instances"]
    if not rows or any(r["level"] == "down" for r in rows):
        return 2
    return 0 if all(r["level"] == "green" for r in rows) else 1


STYLE = {"green": "green", "amber": "yellow", "red": "red", "down": "red"}
MARK = {"green": "●", "amber": "▲", "red": "✖", "down": "✖"}


def autostop_text(autostop: Optional[dict]) -> str:
    """The header's autostop cell: off, the minutes left, or what holds the machine up."""
    if not autostop:
        return "-"
    state = autostop.get("state")
    if state == "off":
        return "off"
    setting = f"after {autostop.get('minutes')} min idle"
    if state == "idle" and autostop.get("stops_in_s") is not None:
        left = -(-int(autostop["stops_in_s"]) // 60)  # whole minutes, rounded up
        return f"in {left} min ({setting})"
    if state == "stopping":
        return "powering off now"
    if state == "held":
        return f"held: {'; '.join(autostop.get('held_by') or [])} ({setting})"
    return f"{state}: {autostop.get('reason', '')}".rstrip(": ")


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def render(model: dict):
    """A rich renderable: one panel per machine, like `sky status` but per service."""
    panels = []
    for r in model["instances"]:
        level = r["level"]
        head = Table.grid(padding=(0, 2))
        head.add_row("provider", r["provider"], "zone", r["zone"], "state", r["state"])
        head.add_row("image", f"{r['image']} ({r['profile']})", "type", r["machine_type"],
                     "uptime", _age(r["uptime_s"]))
        sched = r.get("schedule") or {}
        head.add_row("address", r["address"], "next stop", sched.get("next_stop") or "-",
                     "next start", sched.get("next_start") or "-")
        parts: list[Any] = [head]
        if r.get("autostop"):  # a line of its own: "held: ..." is longer than the grid's cells
            parts.append(Text(f"autostop  {autostop_text(r['autostop'])}"))
        if r["services"]:
            svc = Table("", "service", "reason", box=None, pad_edge=False, show_header=False)
            for s in r["services"]:
                svc.add_row(Text(MARK[s["level"]], style=STYLE[s["level"]]), s["name"], s["reason"])
                for line in s.get("journal") or []:
                    svc.add_row("", "", Text("│ " + line, style="dim"))
            parts.append(svc)
        if r.get("memory"):  # the disk has a row of its own, with a level
            parts.append(Text(f"memory {r['memory'].get('used_pct', '-')}% of "
                              f"{r['memory'].get('total_mb', '-')} MB used"))
        if r.get("error"):
            parts.append(Text(r["error"], style="red"))
        if r.get("next_step"):
            parts.append(Text("next: " + r["next_step"], style="bold"))
        title = Text.assemble((MARK[level] + " ", STYLE[level]), (r["name"], "bold"), f"  {r['project']}  ",
                              (level, STYLE[level]))
        panels.append(Panel(Group(*parts), title=title, title_align="left", border_style=STYLE[level]))
    if not panels:
        return Text("no instances: `playground launch --project X`")
    return Group(*panels)
