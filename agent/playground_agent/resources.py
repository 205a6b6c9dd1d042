"""The machine's own resources for the health report: the data's filesystem (how full, what fills it, the
retention round's last answer) and memory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional

from . import data, paths
from .files import read_json, write_atomic

# status shows the disk amber from 80% used and red from 95% (issue 16): at 95% a burst of task logs or a
# database vacuum can fill it, and PostgreSQL stops accepting writes when it is full.
DISK_AMBER_PCT = 80
DISK_RED_PCT = 95
# What fills a playground's disk, largest first in the report: (label, path).
# Airflow's base_log_folder is /var/log/airflow (render.py): task logs and the DAG processor's.
DISK_USERS = [("airflow logs", "/var/log/airflow"),
              ("postgresql", "/var/lib/postgresql"), ("mlflow artifacts", "/var/lib/playground/mlflow-artifacts"),
              ("project packages", "/var/lib/playground/packages"), ("dags", "/var/lib/airflow/dags"),
              ("journal", "/var/log/journal")]
DISK_USES_FILE = "disk-uses.json"
# `du` over the task logs costs a walk of every file: done at most this often, the answer cached in /run
# (the health report itself is asked for every few seconds while a launch or a fault test waits).
DISK_USES_TTL_S = 120


def disk_level(used_pct: float) -> str:
    return "red" if used_pct >= DISK_RED_PCT else "amber" if used_pct >= DISK_AMBER_PCT else "green"


def disk_uses(now: Optional[float] = None) -> List[Dict[str, Any]]:
    """Bytes under each of DISK_USERS that exists, largest first (cached for DISK_USES_TTL_S)."""
    now = now or time.time()
    cache = os.path.join(paths.RUN_DIR, DISK_USES_FILE)
    cached = read_json(cache)
    if isinstance(cached, dict) and 0 <= now - cached.get("at", 0) < DISK_USES_TTL_S:
        return cached.get("uses") or []
    uses = []
    for label, path in DISK_USERS:
        path = paths.p(path)
        if not os.path.isdir(path):
            continue
        try:  # -x: one filesystem, so a bucket mount below a folder is not counted
            out = subprocess.run(["du", "-sxb", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 universal_newlines=True, timeout=20).stdout
            size = int(out.split()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            continue
        uses.append({"label": label, "path": path, "bytes": size})
    uses.sort(key=lambda u: -u["bytes"])
    try:
        os.makedirs(paths.RUN_DIR, exist_ok=True)
        write_atomic(cache, json.dumps({"at": now, "uses": uses}), 0o644, 0)
    except OSError:
        pass  # not root (a unit test, a user's status): the answer is still given
    return uses


def disk() -> Dict[str, Any]:
    """The filesystem that holds the data (the data volume, else /var/lib on the boot disk): size, share
    used, its level and what uses it."""
    volume = data.read_state().get("volume")
    where = str(volume) if volume and os.path.isdir(str(volume)) else paths.p("/var/lib") or "/"
    usage = shutil.disk_usage(where)
    # df's Use%: of what a service can fill (the blocks reserved for root are neither used nor free to it).
    used_pct = round(100 * usage.used / (usage.used + usage.free), 1) if usage.used + usage.free else 0.0
    # The daily retention round's last answer (retention.py): a failing one is amber in status.
    last = read_json(paths.RETENTION_STATE) or {}
    retention = {"days": last.get("days"), "at": last.get("at"), "error": last.get("error") or "",
                 "deleted_files": (last.get("logs") or {}).get("files")} if last else None
    return {"path": where, "volume": bool(volume), "total_gb": round(usage.total / 2**30, 1),
            "free_gb": round(usage.free / 2**30, 2),
            "used_pct": used_pct, "level": disk_level(used_pct), "uses": disk_uses(), "retention": retention}


def memory() -> Dict[str, Any]:
    info: Dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0])
    except OSError:
        return {}
    total = info.get("MemTotal", 0)
    avail = info.get("MemAvailable", 0)
    return {"total_mb": total // 1024, "used_pct": round(100 * (total - avail) / total, 1) if total else None}
