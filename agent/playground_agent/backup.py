"""Backup and restore of a playground (issue 16; the model is Cloud Composer's snapshots): one tar stream
with a manifest, a pg_dump of each database, the Fernet key and MLflow's artifacts.

Consistent while the machine runs: each database is dumped in one exported snapshot (pg_dump --snapshot),
and the manifest's counts are read in that same snapshot, so they are exactly what the dump holds. The
artifacts are copied after the dumps: every run in the dump has its artifacts (one written meanwhile is
an extra file, harmless). What was copied is counted as it goes into the stream and said in end.json, its
last member: a stream without it was cut short.

    manifest.json          format, versions (Airflow, PostgreSQL, MLflow, image), counts, what is absent
    db/NAME.dump           pg_dump -Fc of airflow, warehouse and (local backend) MLflow's database
    secrets/fernet-key     the key Airflow's connections and variables are encrypted with
    artifacts/...          MLflow's artifacts (a local artifacts-root; gs:// ones stay in their bucket)
    end.json               the artifact files and bytes the stream holds (MLflow may add one meanwhile)

The stream holds a secret: the CLI keeps the file 0600, and nothing here prints or logs the key.

Restore (restore.py) checks the manifest before anything changes (format; a newer Airflow or PostgreSQL than this
machine's is a downgrade, refused; a machine with runs of its own is refused unless --replace), restores
every database under a temporary name, then swaps them in with the services stopped, re-encrypts with
this machine's Fernet key (airflow rotate-fernet-key), migrates Airflow's schema where it is older, sets
this machine's admin password, starts the services, and counts again: the counts must equal the manifest's.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import IO, Any, Dict, Optional, Tuple

from . import paths, versions
from .files import read_env, read_json

FORMAT = 1
END = "end.json"  # the stream's last member (a backup from before it has none: its manifest counts then)
STAGING_DIR = paths.p("/var/tmp")
HEALTHY_WAIT_S = 180
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
# What is counted in each database: the figures a restore must give again.
COUNTS_SQL = {
    "airflow": "SELECT json_build_object('dag_runs', (SELECT count(*) FROM dag_run), "
               "'task_instances', (SELECT count(*) FROM task_instance), "
               "'connections', (SELECT count(*) FROM connection), 'variables', (SELECT count(*) FROM variable))",
    "mlflow": "SELECT json_build_object('experiments', (SELECT count(*) FROM experiments), "
              "'runs', (SELECT count(*) FROM runs), 'registered_models', (SELECT count(*) FROM registered_models), "
              "'model_versions', (SELECT count(*) FROM model_versions))",
    # Every table's rows (query_to_xml runs a count per table inside this one statement).
    "warehouse": "SELECT json_build_object('tables', count(*), 'rows', coalesce(sum((xpath('/row/c/text()', "
                 "query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, "
                 "'')))[1]::text::bigint), 0)) FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                 "AND table_schema NOT IN ('pg_catalog', 'information_schema')",
}
SERVICES = ["airflow-webserver.service", "airflow-triggerer.service", "airflow-scheduler@*.service",
            "mlflow-server.service", "playground-lineage.service"]


class BackupError(Exception):
    pass


def log(msg: str) -> None:
    print("playground-agent: " + msg, file=sys.stderr, flush=True)


def machine_config() -> Dict[str, Any]:
    cfg = read_json(paths.GOOD_CONFIG)
    if not cfg:
        raise BackupError("no applied configuration (%s): has the agent applied metadata?" % paths.GOOD_CONFIG)
    return cfg


def databases(cfg: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    """Role in the archive (airflow, warehouse, mlflow) -> (database, owner), of those on this machine's
    PostgreSQL; MLflow's database name and user are attributes."""
    dbs = {"airflow": ("airflow", "airflow"), "warehouse": ("warehouse", "airflow")}
    if cfg.get("mlflow_backend") == "local":
        dbs["mlflow"] = (cfg.get("mlflow_db_name") or "mlflow", cfg.get("mlflow_db_user") or "mlflow")
    return dbs


def psql(db: str, sql: str, timeout: float = 120) -> str:
    proc = subprocess.run(AS_POSTGRES + ["psql", "-v", "ON_ERROR_STOP=1", "-qtAX", "-d", db, "-c", sql],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode]
        raise BackupError("psql on %s: %s" % (db, said[-1]))
    return proc.stdout.strip()


def pg_major() -> int:
    return int(psql("postgres", "SHOW server_version_num")) // 10000


def counts(role: str, db: str) -> Dict[str, int]:
    return json.loads(psql(db, COUNTS_SQL[role]))


class Snapshot:
    """A read-only REPEATABLE READ transaction held open in psql: its exported snapshot for pg_dump, and
    the counts read in it (psql answers each statement as it comes)."""

    def __init__(self, db: str):
        self.proc = subprocess.Popen(AS_POSTGRES + ["psql", "-v", "ON_ERROR_STOP=1", "-qtAX", "-d", db],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True)
        self.id = self.ask("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();")

    def ask(self, sql: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        sql = sql.replace("\n", " ").rstrip()
        self.proc.stdin.write(sql + ("" if sql.endswith(";") else ";") + "\n")  # psql runs it at the ;
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BackupError("psql ended: " + (self.proc.stderr.read().strip() if self.proc.stderr else ""))
        return line.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.communicate("COMMIT;\n", timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


INCOMING = ".playground-restoring"  # restore's copy of the artifacts, inside their folder until the swap


def artifacts_dir(cfg: Dict[str, Any]) -> Optional[str]:
    root = str(cfg.get("artifacts_root") or "")
    return None if not root or root.startswith("gs://") else paths.p(root)


def tree_size(root: str) -> Dict[str, int]:
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            files += 1
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return {"files": files, "bytes": size}


def _fernet_key() -> str:
    return read_env(paths.SECRETS_DIR + "/airflow.env").get("AIRFLOW__CORE__FERNET_KEY", "")


def image_versions() -> Dict[str, Any]:
    image = read_json(paths.MANIFEST) or {}
    return {"airflow": versions.installed_version(), "postgresql": pg_major(),
            "mlflow": str((image.get("components") or {}).get("mlflow") or ""),
            "image": {"profile": image.get("profile"), "built_at": image.get("built_at")}}


def backup(out: IO[bytes]) -> Dict[str, Any]:
    """The tar stream on out; returns the manifest."""
    cfg = machine_config()
    started = time.time()
    stage = tempfile.mkdtemp(prefix="playground-backup-", dir=STAGING_DIR)
    try:
        manifest: Dict[str, Any] = {"format": FORMAT, "instance": cfg.get("instance_name"),
                                    "project": cfg.get("project_id"), "created_at": started,
                                    "versions": image_versions(), "databases": {}, "absent": [], "end": END}
        for role, (db, _) in databases(cfg).items():
            snap = Snapshot(db)
            try:
                with open(os.path.join(stage, role + ".dump"), "wb") as fh:
                    dump = subprocess.run(AS_POSTGRES + ["pg_dump", "-Fc", "--snapshot=" + snap.id, "-d", db],
                                          stdout=fh, stderr=subprocess.PIPE, timeout=3600)
                if dump.returncode != 0:
                    raise BackupError("pg_dump %s: %s" % (db, dump.stderr.decode(errors="replace").strip()[-300:]))
                manifest["databases"][role] = {"name": db, "counts": json.loads(snap.ask(COUNTS_SQL[role]))}
            finally:
                snap.close()
        if "mlflow" not in manifest["databases"]:
            manifest["absent"].append("MLflow's database (on Cloud SQL: back it up there)")
        artifacts = artifacts_dir(cfg)
        if artifacts and os.path.isdir(artifacts):
            manifest["artifacts"] = tree_size(artifacts)
        else:
            manifest["absent"].append("MLflow's artifacts (%s)" % (cfg.get("artifacts_root") or "none"))
        key = _fernet_key()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
            _add_bytes(tar, "secrets/fernet-key", key.encode())
            for role in manifest["databases"]:
                tar.add(os.path.join(stage, role + ".dump"), arcname="db/%s.dump" % role)
            copied = {"files": 0, "bytes": 0}

            def counted(info: tarfile.TarInfo) -> tarfile.TarInfo:
                if info.isfile():
                    copied["files"] += 1
                    copied["bytes"] += info.size
                return info

            if "artifacts" in manifest:
                tar.add(artifacts, arcname="artifacts", recursive=True, filter=counted)
                manifest["artifacts"] = copied
            _add_bytes(tar, END, (json.dumps({"artifacts": copied}, sort_keys=True) + "\n").encode())
        manifest["seconds"] = round(time.time() - started, 1)
        return manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))
