"""The health report: unit states, Airflow and MLflow /health, mount, proxy, lineage, DAGs; the machine's disk and
memory (resources.py) and a worker's checks of its main (worker_probes.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Dict, List, Optional

from . import bucket_sync, packages, paths
from .commands import PSQL_AS_AIRFLOW
from .files import read_json, write_atomic
from .resources import disk, memory
from .versions import installed
from .worker_probes import broker_state, cluster_secrets, running_here

BASE_UNITS = ["postgresql.service", "airflow-webserver.service", "mlflow-server.service",
              "playground-lineage.service", "playground-autostop.service"]
# Lineage is delivered once a burst of tasks is quiet, at most 60 s late: an event older than this
# waits on something (MLflow down, the delivery service stopped).
LINEAGE_LATE_S = 120


PROPS = "ActiveState,SubState,Result,NRestarts,ActiveEnterTimestamp,ActiveEnterTimestampMonotonic"
PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"


def unit_states(units: List[str]) -> Dict[str, Dict[str, str]]:
    """Every unit's state from one `systemctl show` (one block per unit, named by its Id)."""
    try:
        out = subprocess.run(["systemctl", "show", "--property=Id," + PROPS] + units, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.strip().split("\n\n") if block.strip()]
    by_id = {block.get("Id"): block for block in blocks}
    states = {}
    for unit in units:
        props = by_id.get(unit, {})
        states[unit] = {"active": props.get("ActiveState", "unknown"), "sub": props.get("SubState", ""),
                        "result": props.get("Result", ""), "restarts": props.get("NRestarts", "0"),
                        "since": props.get("ActiveEnterTimestamp", ""),
                        "active_for_s": _active_for(props.get("ActiveEnterTimestampMonotonic", ""))}
    return states


def _active_for(monotonic_us: str) -> Optional[float]:
    """Seconds since the unit became active (systemd's and Python's monotonic clock are the same one), so
    a restart can be shown as recent and then stop being news."""
    try:
        since = int(monotonic_us)
    except ValueError:
        return None
    return round(time.monotonic() - since / 1e6, 1) if since > 0 else None


def postgres_clusters() -> List[str]:
    """The cluster units (postgresql@VERSION-main): Debian's postgresql.service is a wrapper that stays
    active when the postmaster dies, so the cluster is what is supervised and checked."""
    root = paths.p("/etc/postgresql")
    try:
        versions = sorted(v for v in os.listdir(root) if os.path.isfile(os.path.join(root, v, "main",
                                                                                      "postgresql.conf")))
    except OSError:
        versions = []
    return ["postgresql@%s-main.service" % v for v in versions]


def postgres_state(st: Optional[Dict[str, str]]) -> Dict[str, Any]:
    """The cluster unit active and the postmaster accepting on its socket (what Airflow connects to)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(paths.p(PG_SOCKET))
        answering = True
    except OSError:
        answering = False
    finally:
        sock.close()
    active = st is None or st.get("active") == "active"
    ok = active and answering
    state = "accepting on %s" % PG_SOCKET if ok else (
        "postmaster not accepting on %s" % PG_SOCKET if active else "cluster unit %s" % (st or {}).get("active"))
    return {"ok": ok, "state": state, "reason": "" if ok else "postgresql: " + state}


def unit_state(unit: str) -> Dict[str, str]:
    return unit_states([unit])[unit]


def http_json(url: str, timeout: float = 3.0) -> Optional[Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read().decode("utf-8", "replace")
        try:
            return json.loads(body)
        except ValueError:
            return body.strip()
    except Exception:  # any failure is "not answering" for a health check
        return None


def _age(beat: Optional[str]) -> Optional[float]:
    """Seconds since an ISO heartbeat time of /health (None when there is none)."""
    if not beat:
        return None
    try:
        return round(time.time() - datetime.fromisoformat(beat).timestamp(), 1)
    except ValueError:
        return None


def airflow_health(port: int) -> Dict[str, Any]:
    doc = http_json("http://127.0.0.1:%d/health" % port)
    if not isinstance(doc, dict):
        return {"ok": False, "reason": "webserver /health not answering on 127.0.0.1:%d" % port}
    meta = (doc.get("metadatabase") or {}).get("status")
    sched = doc.get("scheduler") or {}
    age = _age(sched.get("latest_scheduler_heartbeat"))
    ok = meta == "healthy" and sched.get("status") == "healthy"
    reason = "" if ok else "metadatabase %s, scheduler %s" % (meta, sched.get("status"))
    # The triggerer's part of /health (2.6+; before, the unit's state is all there is).
    trig = doc.get("triggerer") or {}
    return {"ok": ok, "metadatabase": meta, "scheduler": sched.get("status"),
            "heartbeat_age_s": age, "reason": reason, "triggerer": trig.get("status"),
            "triggerer_heartbeat_age_s": _age(trig.get("latest_triggerer_heartbeat"))}


def mlflow_health(port: int) -> Dict[str, Any]:
    doc = http_json("http://127.0.0.1:%d/health" % port)
    ok = doc == "OK"
    return {"ok": ok, "reason": "" if ok else "MLflow /health not answering on 127.0.0.1:%d" % port}


def mount_state(cfg: Optional[Dict[str, Any]], now: Optional[float] = None) -> Dict[str, Any]:
    """The dags bucket: the gcsfuse mount where the image has gcsfuse, else the bucket sync's last round."""
    if not cfg or not cfg.get("dags_bucket"):
        return {"ok": True, "state": "not configured (local DAG folder)"}
    if os.path.exists(paths.GCSFUSE):
        mounted = os.path.ismount(paths.BUCKET_MOUNT)
        return {"ok": mounted, "state": "mounted" if mounted else "not mounted", "bucket": cfg["dags_bucket"]}
    state = bucket_sync.read_state(paths.BUCKET_MOUNT)
    synced_at = state.get("synced_at")
    age = round((now or time.time()) - synced_at, 1) if synced_at else None
    fresh = age is not None and age < 3 * bucket_sync.INTERVAL_S + 30
    if state.get("error"):
        text = "sync failing: %s" % state["error"]
    elif age is None:
        text = "not synced yet"
    else:
        text = "synced %d object(s) %.0f s ago" % (len(state.get("objects") or {}), age)
    if state.get("refused"):
        text += "; refused (outside the DAG folder): %s" % ", ".join(state["refused"])
    return {"ok": fresh and not state.get("error"), "state": text, "bucket": cfg["dags_bucket"], "synced_age_s": age}


def proxy_state(cfg: Optional[Dict[str, Any]], st: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    if not cfg or not cfg.get("cloudsql_instance"):
        return {"ok": True, "state": "not configured (MLflow on the local PostgreSQL)"}
    st = st or unit_state("cloud-sql-proxy.service")
    return {"ok": st["active"] == "active", "state": st["active"], "instance": cfg["cloudsql_instance"]}


def lineage_state(cfg: Optional[Dict[str, Any]], st: Dict[str, str], now: Optional[float] = None) -> Dict[str, Any]:
    """The lineage spool: events waiting for MLflow (and for how long), and events set aside for good."""
    try:
        names = os.listdir(paths.LINEAGE_SPOOL)
    except OSError:
        names = []
    waiting = sorted(n for n in names if n.endswith(".json") and not n.startswith("."))
    set_aside = [n for n in names if n.endswith((".failed", ".bad"))]
    oldest = None
    if waiting:
        try:  # spooled as "<time_ns, 20 digits>-<id>.json"
            oldest = round((now or time.time()) - int(waiting[0][:20]) / 1e9, 1)
        except ValueError:
            oldest = None
    parts = []
    if waiting:
        age = ", oldest %.0f s" % oldest if oldest is not None else ""
        parts.append("%d waiting for MLflow%s" % (len(waiting), age))
    if set_aside:
        # NAME.failed: MLflow refused it for good (NAME.reason says why); NAME.bad: unreadable.
        parts.append("%d set aside in %s (never delivered: *.failed with a .reason, *.bad unreadable)"
                     % (len(set_aside), paths.LINEAGE_SPOOL))
    off = bool(cfg) and cfg.get("lineage") == "off"
    state = "; ".join(parts) or ("off (attribute lineage)" if off else "all delivered")
    ok = st.get("active") == "active" and not set_aside and (oldest is None or oldest < LINEAGE_LATE_S)
    return {"ok": ok, "state": state, "waiting": len(waiting), "oldest_s": oldest, "set_aside": len(set_aside)}


# What the scheduler found in the DAG folder, from Airflow's own tables (every 2.x has dag.is_active and
# import_error): one JSON line from psql, as airflow over the socket (peer authentication).
DAGS_SQL = ("SELECT json_build_object('dags', (SELECT count(*) FROM dag WHERE is_active), 'errors', "
            "coalesce((SELECT json_agg(json_build_object('file', filename, 'error', stacktrace) ORDER BY filename) "
            "FROM import_error), '[]'::json))")


def dags_state() -> Dict[str, Any]:
    """Active DAGs and import errors; ok is False (amber in status: the rest still runs) when a file fails."""
    try:
        proc = subprocess.run(PSQL_AS_AIRFLOW + [DAGS_SQL],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
        doc = json.loads(proc.stdout.strip()) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        doc = None
    if not isinstance(doc, dict):
        return {"ok": True, "state": "not known (Airflow's database did not answer)", "dags": None, "errors": []}
    folder_of = os.path.commonpath([e["file"] for e in doc["errors"]]) if len(doc["errors"]) > 1 else ""
    errors = []
    for entry in doc["errors"]:
        lines = [line.strip() for line in (entry.get("error") or "").strip().splitlines() if line.strip()]
        name = os.path.basename(entry["file"]) if not folder_of else os.path.relpath(entry["file"], folder_of)
        errors.append({"file": name, "path": entry["file"], "error": lines[-1] if lines else "import error"})
    state = "%d active DAG(s)" % doc["dags"]
    if errors:
        state = "%d import error(s): %s" % (len(errors), "; ".join("%s: %s" % (e["file"], e["error"]) for e in errors))
    return {"ok": not errors, "state": state, "dags": doc["dags"], "errors": errors}


def packages_state() -> Dict[str, Any]:
    """The project's packages (packages.py): how many requirements are installed, or why the last set failed
    (amber: Airflow runs with the set it had)."""
    st = packages.state()
    if st.get("error"):
        return {"ok": False, "state": st["error"], "requirements": st.get("requirements") or []}
    names = st.get("requirements") or []
    return {"ok": True, "state": "%d requirement(s) installed" % len(names) if names else "none (the image's)",
            "requirements": names}


WORKER_UNITS = ["airflow-worker.service", "playground-mlflow-forward.service", "playground-lineage.service"]


def collect_worker(cfg: Dict[str, Any], config_state: Dict[str, Any]) -> Dict[str, Any]:
    """A worker machine's report: its Celery worker, the broker and MLflow through the forward, lineage."""
    states = unit_states(WORKER_UNITS)
    secrets = cluster_secrets()
    missing = {"ok": False, "reason": "no cluster.env: the main's secrets were never handed over"}
    report: Dict[str, Any] = {
        "schema": 1, "role": "worker", "main_address": cfg.get("main_address"),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config_state, "units": states, "disk": disk(), "memory": memory(),
        "broker": broker_state(str(cfg.get("main_address")), secrets["BROKER_PASSWORD"])
        if secrets and secrets.get("BROKER_PASSWORD") else dict(missing, state="no password"),
        "running": running_here(cfg, secrets.get("DB_PASSWORD", "")) if secrets else dict(missing, tasks=[]),
        "mlflow": mlflow_health(int(cfg.get("mlflow_port", 5000))),
        "lineage": lineage_state(cfg, states["playground-lineage.service"]),
    }
    problems = [u + " is " + st["active"] for u, st in states.items() if st["active"] != "active"]
    problems += [report[p]["reason"] for p in ("broker", "running", "mlflow") if not report[p]["ok"]]
    if config_state.get("state") != "ok":
        problems.insert(0, "config: %s" % config_state.get("error", "not applied"))
    report.update(problems=problems, healthy=not problems,
                  last_error=config_state.get("error") or (problems[0] if problems else ""))
    return report


def collect(cfg: Optional[Dict[str, Any]], config_state: Dict[str, Any]) -> Dict[str, Any]:
    """Build the report from live checks; `cfg` is the last good config as a dict."""
    if cfg and cfg.get("role") == "worker":
        return collect_worker(cfg, config_state)
    clusters = postgres_clusters()
    units: List[str] = list(BASE_UNITS) + clusters
    if cfg:
        units += ["airflow-scheduler@%d.service" % i for i in range(1, int(cfg.get("airflow_schedulers", 1)) + 1)]
        if installed().has_triggerer:
            units.append("airflow-triggerer.service")
    if cfg and cfg.get("cloudsql_instance"):
        units.append("cloud-sql-proxy.service")
    if cfg and cfg.get("airflow_executor") == "CeleryExecutor":  # a main with workers (cluster.py)
        units += ["playground-redis.service", "playground-mlflow-forward.service"]
    states = unit_states(units)
    report: Dict[str, Any] = {
        "schema": 1,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config_state,
        "units": {u: st for u, st in states.items() if u != "cloud-sql-proxy.service"},
        "disk": disk(),
        "memory": memory(),
    }
    report["postgresql"] = postgres_state(states[clusters[0]] if clusters else None)
    if cfg:
        # The two web checks wait on other processes: ask both at once.
        with ThreadPoolExecutor(max_workers=2) as pool:
            airflow = pool.submit(airflow_health, int(cfg.get("airflow_port", 8080)))
            mlflow = pool.submit(mlflow_health, int(cfg.get("mlflow_port", 5000)))
            report["airflow"], report["mlflow"] = airflow.result(), mlflow.result()
        report["mount"] = mount_state(cfg)
        report["proxy"] = proxy_state(cfg, states.get("cloud-sql-proxy.service"))
        report["lineage"] = lineage_state(cfg, states["playground-lineage.service"])
        report["dags"] = dags_state()  # amber in status, not a problem: the other DAGs run
        report["packages"] = packages_state()
        report["backup"] = backup_summary(cfg)  # None when backup-to is not set
        report["autostop"] = autostop_summary(read_json(paths.AUTOSTOP_STATE), int(cfg.get("autostop_minutes") or 0))
    problems = [u + " is " + st["active"] for u, st in report["units"].items() if st["active"] != "active"]
    for part in ("postgresql", "airflow", "mlflow", "mount", "proxy"):
        if part in report and not report[part]["ok"]:
            problems.append(report[part].get("reason") or "%s: %s" % (part, report[part].get("state")))
    if config_state.get("state") != "ok":
        problems.insert(0, "config: %s" % config_state.get("error", "not applied"))
    report["problems"] = problems
    report["healthy"] = not problems
    report["last_error"] = config_state.get("error") or (problems[0] if problems else "")
    return report


def autostop_summary(state: Optional[Dict[str, Any]], minutes: int, now: Optional[float] = None) -> Dict[str, Any]:
    """What the report says of autostop (no addresses), from autostop.py's last check: off, held by what, or
    the minutes left."""
    now = time.time() if now is None else now
    if not minutes:
        return {"minutes": 0, "state": "off"}
    late = 3 * float((state or {}).get("every_s") or 10)
    if not state or state.get("minutes") != minutes or now - float(state.get("checked_at") or 0) > late:
        return {"minutes": minutes, "state": "not checking",
                "reason": "playground-autostop.service has not checked in the last %d s" % late}
    out = {"minutes": minutes, "state": state["state"], "held_by": list(state.get("held_by") or [])}
    if state.get("stops_at") is not None:
        out["stops_in_s"] = max(0, round(float(state["stops_at"]) - now))
    return out


def backup_summary(cfg: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The nightly backup's part (None when not set): where and when, and how nightly.py's last one went."""
    if not cfg or not cfg.get("backup_to"):
        return None
    last = read_json(paths.NIGHTLY_STATE) or {}
    if last.get("to") != cfg.get("backup_to"):
        last = {}  # a run to another destination says nothing of this one
    ok = last.get("state") != "error" and not last.get("prune_error")
    return {"to": cfg["backup_to"], "when": cfg.get("backup_at"), "keep": cfg.get("backup_keep"), "ok": ok,
            "last_at": last.get("at"), "last_state": last.get("state"), "object": last.get("object"),
            "bytes": last.get("bytes"), "error": last.get("error") or last.get("prune_error") or ""}


def wait_report(wait: float = 0.0) -> Dict[str, Any]:
    """The report, written every round (a waiter sees progress), until healthy, the config failed, or wait
    seconds passed."""
    deadline = time.monotonic() + wait
    while True:
        cfg = read_json(paths.GOOD_CONFIG)
        state = read_json(paths.CONFIG_STATE) or {"state": "unknown", "error": "the agent has not run"}
        rep = collect(cfg, state)
        write_report(rep)
        if rep["healthy"] or time.monotonic() >= deadline or state.get("state") == "error":
            return rep
        time.sleep(2)


def write_report(report: Dict[str, Any]) -> None:
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    write_atomic(paths.STATUS_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n", 0o644, 0)


def read_report() -> Optional[Dict[str, Any]]:
    try:
        with open(paths.STATUS_FILE, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
