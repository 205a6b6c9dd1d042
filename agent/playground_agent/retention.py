"""Retention (issue 16): task logs and Airflow's run history older than `retention-days` are deleted, once a
day (playground-retention.timer), so a playground's disk does not fill over months.

Task logs: files under Airflow's log folder whose last change is older than the cut, then the folders left
empty. Airflow's tables: `airflow db clean --clean-before-timestamp CUT --yes` where the version has it
(2.3+), with --skip-archive where it has that (2.6+): archived rows would keep the space. What was done, or
why it failed, is kept in /var/lib/playground/retention.json for `status`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Optional

from . import paths, versions
from .commands import CommandError, run
from .files import read_json, write_atomic
from .project import airflow_run_env

STATE_FILE = paths.RETENTION_STATE
LOG_FOLDER = paths.p("/var/log/airflow")  # Airflow's base_log_folder (render.py)
DAY_S = 86400


def prune_logs(folder: str, cut: float) -> Dict[str, int]:
    """Delete regular files under folder last changed before cut (links are not followed), then the empty
    folders below it; the folder itself stays."""
    files = size = 0
    for root, _dirs, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if st.st_mtime < cut and not os.path.islink(path):
                    os.unlink(path)
                    files += 1
                    size += st.st_size
            except OSError:
                continue  # gone meanwhile, or not ours to remove: the next round tries again
        if root != folder:
            try:
                os.rmdir(root)  # only when empty
            except OSError:
                pass
    return {"files": files, "bytes": size}


def db_clean_args(airflow: versions.Airflow, cut: float) -> Optional[list]:
    """The `airflow db clean` arguments for this version, or None where Airflow has no db clean."""
    if not airflow.has_db_clean:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(cut))
    args = ["db", "clean", "--clean-before-timestamp", stamp, "--yes"]
    if airflow.db_clean_skips_archive:
        args.append("--skip-archive")
    return args


def run(days: int, now: Optional[float] = None, airflow: Optional[versions.Airflow] = None,
        runner: Callable[..., str] = run) -> Dict[str, Any]:
    """One round; the result (also written to STATE_FILE) says what went and what failed."""
    now = now or time.time()
    cut = now - days * DAY_S
    result: Dict[str, Any] = {"at": now, "days": days, "logs": prune_logs(LOG_FOLDER, cut), "db": "", "error": ""}
    airflow = airflow or versions.installed()
    args = db_clean_args(airflow, cut)
    if args is None:
        result["db"] = "not available (Airflow %s has no db clean; it came in 2.3)" % airflow.version
    else:
        try:
            runner(["runuser", "-u", "airflow", "--", paths.AIRFLOW_VENV + "/bin/airflow"] + args,
                   env=airflow_run_env(), what="airflow db clean", timeout=1800)
            result["db"] = "cleaned before %s" % args[3]
        except (CommandError, OSError) as exc:
            result["error"] = str(exc)
    write_atomic(STATE_FILE, json.dumps(result, sort_keys=True) + "\n", 0o644, 0)
    return result


def main() -> int:
    cfg = read_json(paths.GOOD_CONFIG) or {}
    days = int(cfg.get("retention_days") or 0)
    if days <= 0:
        print("playground-agent: retention: no applied config yet (nothing to keep or delete)")
        return 0
    result = run(days)
    print(json.dumps(result, sort_keys=True))
    return 1 if result["error"] else 0
