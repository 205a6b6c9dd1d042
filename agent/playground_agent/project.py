"""A team's own project on the machine: its DAG files, and its connections, variables and pools.

`playground deploy` (the CLI) talks to this over SSH, as root, with JSON:
  manifest  -> the DAG folder Airflow reads, whether a bucket feeds it, and its files' sha256
  receive   <- files to put and remove (only where no bucket feeds the folder), the settings (or none), and
               the hashes the folder must hold (a bucket's sync or gcsfuse brings them: waited for)
            -> what changed, the settings applied (names only), and Airflow's own import errors (a DagBag
               of the folder, what the scheduler records), so a deploy says at once what is broken.
The settings (airflow_settings.yaml, checked and turned to JSON by the CLI) are kept root-only at
SETTINGS and applied again at boot when they changed since the last apply (a fresh instance's database).
Secret values go through stdin only, never argv or a log line.
"""
from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from . import packages, paths
from .commands import CommandError, run
from .files import read_env, read_json, write_atomic

PROJECT_DIR = paths.p("/var/lib/playground/project")
SETTINGS = PROJECT_DIR + "/settings.json"
APPLIED = PROJECT_DIR + "/applied.json"  # the settings' hash and names last applied (no values)
SKIP_DIRS = ("__pycache__",)  # Airflow's own, never the project's
IGNORE_FILE = ".airflowignore"  # the one hidden file that belongs to the DAGs (Airflow reads it)
WAIT_FOR_BUCKET_S = 120.0


class ProjectError(Exception):
    pass


def _config() -> Dict[str, Any]:
    try:
        with open(paths.GOOD_CONFIG, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        raise ProjectError("this machine has no applied config yet (is playground-agent apply done?)") from None


def dags_folder(cfg: Dict[str, Any]) -> str:
    return paths.BUCKET_MOUNT + "/dags" if cfg.get("dags_bucket") else paths.LOCAL_DAGS


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files(folder: str) -> Dict[str, str]:
    """relative path -> sha256 of every regular file under folder (hidden files and __pycache__ left out)."""
    found: Dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in names:
            path = os.path.join(root, name)
            if (name.startswith(".") and name != IGNORE_FILE) or not os.path.isfile(path) or os.path.islink(path):
                continue
            found[os.path.relpath(path, folder)] = sha256(path)
    return found


def safe_rel(rel: str) -> str:
    """A path the CLI sent, kept inside the DAG folder (no absolute path, no .., no hidden part)."""
    parts = rel.split("/")
    hidden = [p for p in parts if p.startswith(".") and p != IGNORE_FILE]
    if not rel or rel.startswith("/") or hidden or any(p in ("", ".", "..") for p in parts):
        raise ProjectError("refused file name %r: expected a relative path inside the DAG folder" % rel)
    return rel


def manifest() -> Dict[str, Any]:
    cfg = _config()
    folder = dags_folder(cfg)
    return {"dags_folder": folder.replace(paths.ROOT, "", 1), "dags_bucket": cfg.get("dags_bucket") or "",
            "project": cfg.get("project_id") or "",
            "packages": dict(packages.state(), active_sha256=packages.active() or ""),
            "files": files(folder) if os.path.isdir(folder) else {}}


def airflow_run_env() -> Dict[str, str]:
    env = {"PATH": paths.AIRFLOW_VENV + "/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": "/var/lib/airflow"}
    env.update(read_env(paths.ETC + "/airflow.env"))
    env.update(read_env(paths.SECRETS_DIR + "/airflow.env"))
    return env


MARK = "PLAYGROUND-RESULT "


def venv() -> Dict[str, Any]:
    """What deploy resolves a requirements.txt for: this Python, this C library, this venv's versions. Asked
    only when there is something to resolve (listing the venv starts a Python)."""
    return {"python": platform.python_version(), "glibc": platform.libc_ver()[1], "machine": platform.machine(),
            "venv": packages.installed()}


def _airflow_python(script: str, args: List[str], stdin: str, what: str, timeout: int = 300) -> Any:
    """Run script in Airflow's venv as the airflow user; its answer is the line printed after MARK (Airflow's
    own logging writes to stdout too)."""
    out = run(["runuser", "-u", "airflow", "--", paths.AIRFLOW_VENV + "/bin/python", "-c", script] + args,
              env=airflow_run_env(), what=what, timeout=timeout, secret_input=stdin)
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise ProjectError("%s gave no answer: %s" % (what, out.strip()[-300:]))


# Airflow's own parse of the folder (what the scheduler's DAG processor does): the DAG ids and the import
# errors, each reduced to its last line (the exception), keyed by the file's path in the folder.
CHECK = r"""
import json, os, sys
from airflow.models.dagbag import DagBag
folder = sys.argv[1]
bag = DagBag(dag_folder=folder, include_examples=False)
errors = {}
for path, trace in bag.import_errors.items():
    lines = [l.strip() for l in trace.strip().splitlines() if l.strip()]
    errors[os.path.relpath(path, folder)] = lines[-1] if lines else "import error"
print("PLAYGROUND-RESULT " + json.dumps({"dags": sorted(bag.dag_ids), "import_errors": errors}))
"""


def check(folder: str) -> Dict[str, Any]:
    return _airflow_python(CHECK, [folder], "", "the DAG folder's parse")


# Connections, variables and pools through Airflow's models (every 2.x has them; the ORM encrypts passwords
# and extras with the instance's Fernet key). The ones an earlier apply made and the file no longer has are
# removed; anything made in the UI is left alone.
APPLY = r"""
import json, sys
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session
doc = json.load(sys.stdin)
settings, before = doc["settings"], doc["before"]
names = {"connections": [], "variables": [], "pools": []}
with create_session() as s:
    for c in settings.get("connections", []):
        conn = s.query(Connection).filter(Connection.conn_id == c["conn_id"]).one_or_none()
        if conn is None:
            conn = Connection(conn_id=c["conn_id"])
            s.add(conn)
        conn.conn_type = c.get("conn_type")
        conn.host, conn.schema, conn.login = c.get("host"), c.get("schema"), c.get("login")
        conn.port = c.get("port")
        conn.password = c.get("password")
        conn.extra = json.dumps(c["extra"]) if c.get("extra") else None
        names["connections"].append(c["conn_id"])
    for v in settings.get("variables", []):
        value = v["value"]
        Variable.set(v["key"], value, serialize_json=not isinstance(value, str), session=s)
        names["variables"].append(v["key"])
    for p in settings.get("pools", []):
        pool = s.query(Pool).filter(Pool.pool == p["name"]).one_or_none()
        if pool is None:
            pool = Pool(pool=p["name"])
            s.add(pool)
        pool.slots, pool.description = p["slots"], p.get("description", "")
        if getattr(pool, "include_deferred", False) is None:  # 2.7+: a column without a default
            pool.include_deferred = False
        names["pools"].append(p["name"])
    gone = {k: sorted(set(before.get(k, [])) - set(names[k])) for k in names}
    for conn_id in gone["connections"]:
        s.query(Connection).filter(Connection.conn_id == conn_id).delete()
    for key in gone["variables"]:
        s.query(Variable).filter(Variable.key == key).delete()
    for name in gone["pools"]:
        if name != Pool.DEFAULT_POOL_NAME:
            s.query(Pool).filter(Pool.pool == name).delete()
print("PLAYGROUND-RESULT " + json.dumps({"applied": names, "removed": gone}))
"""


def apply_settings(settings: Dict[str, Any]) -> Dict[str, Any]:
    """Apply the settings and remember their hash and names (never their values). The same settings as the
    last apply: nothing to do (a deploy that changed only DAGs starts no Airflow process for them)."""
    applied = read_json(APPLIED) or {}
    if applied.get("sha256") == _digest(settings) and os.path.isfile(SETTINGS):
        return {"applied": applied.get("names", {}), "removed": {}, "unchanged": True}
    before = applied.get("names", {})
    result = _airflow_python(APPLY, [], json.dumps({"settings": settings, "before": before}),
                             "applying connections, variables and pools")
    write_atomic(APPLIED, json.dumps({"sha256": _digest(settings), "names": result["applied"]}, indent=2,
                                     sort_keys=True) + "\n", 0o600, 0)
    return result


def _digest(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def apply_saved(log) -> None:
    """At boot: the kept settings, when they differ from what was last applied (a new database, a restore)."""
    settings = read_json(SETTINGS)
    if settings is None or (read_json(APPLIED) or {}).get("sha256") == _digest(settings):
        return
    try:
        result = apply_settings(settings)
    except (CommandError, ProjectError, OSError, subprocess.TimeoutExpired) as exc:
        log("project settings not applied: %s" % exc)
        return
    log("project settings applied: %s" % ", ".join("%d %s" % (len(v), k) for k, v in result["applied"].items()))


def _wait_for(folder: str, expect: Dict[str, str], timeout: float) -> Dict[str, str]:
    """The folder's files once they match expect (a bucket's sync or mount catching up), or at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        held = files(folder) if os.path.isdir(folder) else {}
        if all(held.get(rel) == digest for rel, digest in expect.items()) or time.monotonic() > deadline:
            return held
        time.sleep(1)


def receive(doc: Dict[str, Any]) -> Dict[str, Any]:
    cfg = _config()
    folder = dags_folder(cfg)
    put = {safe_rel(rel): base64.b64decode(data) for rel, data in (doc.get("put") or {}).items()}
    delete = [safe_rel(rel) for rel in doc.get("delete") or []]
    if (put or delete) and cfg.get("dags_bucket"):
        raise ProjectError("this machine reads its DAGs from gs://%s/dags: deploy writes them there, not here"
                           % cfg["dags_bucket"])
    result: Dict[str, Any] = {"written": sorted(put), "removed": sorted(delete), "settings": None,
                              "packages": _packages(doc.get("packages"))}
    if doc.get("settings") is not None:
        # First: settings that Airflow refuses leave the DAG folder as it was.
        settings = doc["settings"]
        result["settings"] = apply_settings(settings)
        write_atomic(SETTINGS, json.dumps(settings, sort_keys=True) + "\n", 0o600, 0)
    gid = _airflow_gid()
    for rel, data in sorted(put.items()):
        write_atomic(_inside(folder, rel), data, 0o644, gid)  # the scheduler reads it; only root changes it
    for rel in delete:
        path = _inside(folder, rel)
        if os.path.isfile(path):
            os.unlink(path)
            _prune_empty(os.path.dirname(path), folder)
    expect = doc.get("expect") or {}
    held = _wait_for(folder, expect, WAIT_FOR_BUCKET_S if cfg.get("dags_bucket") else 0)
    result["missing"] = sorted(rel for rel, digest in expect.items() if held.get(rel) != digest)
    if doc.get("check", True):
        result.update(check(folder))
    return result


WHEELS_GLOB = "/tmp/playground-wheels-"  # where deploy uploads wheels (mktemp -d as the SSH user)


def _packages(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """First of all (the DAGs may import them): the project's packages, or the error deploy met resolving
    them (kept for status), or back to none."""
    if not doc:
        return None
    if doc.get("error"):
        packages.record_error(str(doc.get("sha256", "")), str(doc["error"]))
        return {"error": doc["error"]}
    if doc.get("clear"):
        packages.clear()
        return {"cleared": True}
    wheels = str(doc.get("wheels") or "")
    if not wheels.startswith(WHEELS_GLOB) or "/" in wheels[len(WHEELS_GLOB):]:
        raise ProjectError("refused wheel folder %r: expected %sXXXX" % (wheels, WHEELS_GLOB))
    try:
        return packages.install(str(doc["requirements"]), wheels, [str(n) for n in doc.get("names") or []])
    except packages.PackagesError as exc:
        raise ProjectError("requirements.txt: %s (Airflow keeps the packages it had)" % exc) from exc
    finally:
        shutil.rmtree(wheels, ignore_errors=True)


def _inside(folder: str, rel: str) -> str:
    """folder/rel, refused when a link on the way leads elsewhere: the DAG folder is the airflow user's
    (tasks run as it), and root must not be steered into writing through a link it planted."""
    path = os.path.join(folder, rel)
    top = os.path.realpath(folder)
    if not os.path.realpath(path).startswith(top + os.sep):
        raise ProjectError("refused %s: a link in the DAG folder leads outside it" % rel)
    return path


def _airflow_gid() -> int:
    try:
        return grp.getgrnam("airflow").gr_gid
    except KeyError:
        return 0


def _prune_empty(directory: str, top: str) -> None:
    while os.path.abspath(directory) != os.path.abspath(top):
        try:
            os.rmdir(directory)  # only when empty
        except OSError:
            return
        directory = os.path.dirname(directory)


def main(command: str) -> int:
    """playground-agent project manifest|venv|receive: one JSON document out (receive reads one in)."""
    try:
        if command == "manifest":
            out = manifest()
        elif command == "venv":
            out = venv()
        else:
            out = receive(json.load(sys.stdin))
    except (ProjectError, CommandError, packages.PackagesError, ValueError, KeyError, OSError,
            subprocess.TimeoutExpired) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0
