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

Restore checks the manifest before anything changes (format; a newer Airflow or PostgreSQL than this
machine's is a downgrade, refused; a machine with runs of its own is refused unless --replace), restores
every database under a temporary name, then swaps them in with the services stopped, re-encrypts with
this machine's Fernet key (airflow rotate-fernet-key), migrates Airflow's schema, sets this machine's admin
password, starts the services, and counts again: the counts must equal the manifest's.
"""
from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import IO, Any, Dict, List, Optional, Tuple

from . import bootstrap, database, health, paths, versions
from .commands import CommandError
from .files import read_env, read_json
from .project import airflow_run_env

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


def _config() -> Dict[str, Any]:
    cfg = read_json(paths.GOOD_CONFIG)
    if not cfg:
        raise BackupError("no applied configuration (%s): has the agent applied metadata?" % paths.GOOD_CONFIG)
    return cfg


def _databases(cfg: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    """Role in the archive (airflow, warehouse, mlflow) -> (database, owner), of those on this machine's
    PostgreSQL; MLflow's database name and user are attributes."""
    dbs = {"airflow": ("airflow", "airflow"), "warehouse": ("warehouse", "airflow")}
    if cfg.get("mlflow_backend") == "local":
        dbs["mlflow"] = (cfg.get("mlflow_db_name") or "mlflow", cfg.get("mlflow_db_user") or "mlflow")
    return dbs


def _psql(db: str, sql: str, timeout: float = 120) -> str:
    proc = subprocess.run(AS_POSTGRES + ["psql", "-v", "ON_ERROR_STOP=1", "-qtAX", "-d", db, "-c", sql],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode]
        raise BackupError("psql on %s: %s" % (db, said[-1]))
    return proc.stdout.strip()


def pg_major() -> int:
    return int(_psql("postgres", "SHOW server_version_num")) // 10000


def counts(role: str, db: str) -> Dict[str, int]:
    return json.loads(_psql(db, COUNTS_SQL[role]))


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


def _artifacts_dir(cfg: Dict[str, Any]) -> Optional[str]:
    root = str(cfg.get("artifacts_root") or "")
    return None if not root or root.startswith("gs://") else paths.p(root)


def _tree_size(root: str) -> Dict[str, int]:
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


def _versions() -> Dict[str, Any]:
    image = read_json(paths.MANIFEST) or {}
    return {"airflow": versions.installed_version(), "postgresql": pg_major(),
            "mlflow": str((image.get("components") or {}).get("mlflow") or ""),
            "image": {"profile": image.get("profile"), "built_at": image.get("built_at")}}


def backup(out: IO[bytes]) -> Dict[str, Any]:
    """The tar stream on out; returns the manifest."""
    cfg = _config()
    started = time.time()
    stage = tempfile.mkdtemp(prefix="playground-backup-", dir=STAGING_DIR)
    try:
        manifest: Dict[str, Any] = {"format": FORMAT, "instance": cfg.get("instance_name"),
                                    "project": cfg.get("project_id"), "created_at": started,
                                    "versions": _versions(), "databases": {}, "absent": [], "end": END}
        for role, (db, _) in _databases(cfg).items():
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
        artifacts = _artifacts_dir(cfg)
        if artifacts and os.path.isdir(artifacts):
            manifest["artifacts"] = _tree_size(artifacts)
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


def _safe(member: tarfile.TarInfo) -> bool:
    """Only plain files and folders, under a relative path that stays inside the staging folder."""
    parts = member.name.split("/")
    return (member.isfile() or member.isdir()) and not member.name.startswith("/") and ".." not in parts


def _extract(src: IO[bytes], stage: str) -> Dict[str, Any]:
    """The stream into stage; the manifest is checked as soon as it is read (the first member)."""
    manifest: Optional[Dict[str, Any]] = None
    end: Optional[Dict[str, Any]] = None
    try:
        with tarfile.open(fileobj=src, mode="r|") as tar:
            for member in tar:
                if member.name == END and manifest is not None and member.isfile():
                    fh = tar.extractfile(member)
                    try:
                        end = json.loads(fh.read().decode()) if fh else None
                    except ValueError:
                        end = None
                    if not isinstance(end, dict):
                        raise BackupError("the backup's %s is not the JSON a backup ends with" % END)
                    continue
                if manifest is None:
                    if member.name != "manifest.json" or not member.isfile():
                        raise BackupError("not a playground backup: it does not begin with manifest.json")
                    fh = tar.extractfile(member)
                    try:
                        manifest = json.loads(fh.read().decode()) if fh else None
                    except ValueError:
                        manifest = None
                    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                        raise BackupError("manifest.json: expected a playground backup of format %d" % FORMAT)
                    check_versions(manifest)
                    continue
                if not _safe(member):
                    raise BackupError("the backup holds %r, which is not a plain file under its own folder"
                                      % member.name)
                tar.extract(member, stage, set_attrs=False)
                os.chmod(os.path.join(stage, member.name), 0o600 if member.isfile() else 0o700)
    except tarfile.TarError as exc:
        raise BackupError("the backup is not a readable tar stream (%s): truncated or not a backup?" % exc) from None
    if manifest is None:
        raise BackupError("the backup is empty: no manifest.json")
    for role in manifest.get("databases") or {}:
        if not os.path.isfile(os.path.join(stage, "db", role + ".dump")):
            raise BackupError("the backup lacks db/%s.dump that its manifest names: truncated?" % role)
    # A stream cut at a member's boundary reads as a shorter archive: it lacks the end, and the artifacts
    # are counted against what the end says was copied.
    if manifest.get("end") and end is None:
        raise BackupError("the backup lacks its last member %s: truncated?" % END)
    want = ((end or manifest).get("artifacts") or {}).get("files")
    got = _tree_size(os.path.join(stage, "artifacts"))["files"]
    if want is not None and got != want:
        raise BackupError("the backup has %d of the %d artifact files its manifest names: truncated?" % (got, want))
    return manifest


def check_versions(manifest: Dict[str, Any]) -> None:
    have = _versions()
    got = manifest.get("versions") or {}
    try:
        newer_airflow = versions.parse(str(got.get("airflow"))) > versions.parse(have["airflow"])
        newer_pg = int(got.get("postgresql") or 0) > have["postgresql"]
    except ValueError:
        raise BackupError("manifest.json: versions.airflow and versions.postgresql expected") from None
    if newer_airflow:
        raise BackupError("the backup is of Airflow %s and this machine runs %s: a downgrade is refused (restore "
                          "onto a machine of that image or newer)" % (got.get("airflow"), have["airflow"]))
    if newer_pg:
        raise BackupError("the backup is of PostgreSQL %s and this machine runs %s: a downgrade is refused"
                          % (got.get("postgresql"), have["postgresql"]))


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl"] + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


def _own_data(cfg: Dict[str, Any]) -> List[str]:
    """What this machine holds that a restore would replace."""
    found = []
    dbs = _databases(cfg)
    air = counts("airflow", "airflow")
    if air["dag_runs"]:
        found.append("%d DAG run(s)" % air["dag_runs"])
    if "mlflow" in dbs:
        ml = counts("mlflow", dbs["mlflow"][0])
        if ml["runs"]:
            found.append("%d MLflow run(s)" % ml["runs"])
    wh = counts("warehouse", "warehouse")
    if wh["tables"]:
        found.append("%d warehouse table(s)" % wh["tables"])
    return found


def restore(src: IO[bytes], replace: bool) -> Dict[str, Any]:
    """The stream from src onto this machine; returns the counts found after, beside the manifest's."""

    cfg = _config()
    started = time.time()
    stage = tempfile.mkdtemp(prefix="playground-restore-", dir=STAGING_DIR)
    temp_dbs: List[str] = []
    incoming = None
    stopped = False
    try:
        manifest = _extract(src, stage)
        if not replace:
            own = _own_data(cfg)
            if own:
                raise BackupError("this machine already has %s: restore onto a fresh instance, or pass --replace "
                                  "to drop them" % ", ".join(own))
        dbs = _databases(cfg)
        skipped = [role for role in manifest["databases"] if role not in dbs]
        # 1. Every database restored under a temporary name: a dump that fails changes nothing.
        for role in manifest["databases"]:
            if role not in dbs:
                continue
            db, owner = dbs[role]
            temp = db + "_restoring"
            _psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % temp)
            _psql("postgres", 'CREATE DATABASE "%s" OWNER "%s"' % (temp, owner))
            temp_dbs.append(temp)
            log("restore: %s" % db)
            with open(os.path.join(stage, "db", role + ".dump"), "rb") as dump:  # the staging folder is root's
                proc = subprocess.run(AS_POSTGRES + ["pg_restore", "--no-owner", "--role=" + owner,
                                                     "--exit-on-error", "-d", temp],
                                      stdin=dump, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      universal_newlines=True, timeout=3600)
            if proc.returncode != 0:
                raise BackupError("pg_restore of %s: %s" % (role, proc.stderr.strip()[-300:]))
        # The artifacts copied into a hidden folder inside theirs: the same filesystem whatever it is (the data
        # volume bound over it, an overlay), so the swap is renames; the folder itself is never renamed (a
        # mount point cannot be, nor a lower-layer folder of an overlay).
        artifacts = _artifacts_dir(cfg)
        if artifacts and os.path.isdir(os.path.join(stage, "artifacts")):
            incoming = os.path.join(artifacts, INCOMING)
            shutil.rmtree(incoming, ignore_errors=True)
            shutil.copytree(os.path.join(stage, "artifacts"), incoming, symlinks=True)
            mlflow = pwd.getpwnam("mlflow")
            for folder, dirs, files in os.walk(incoming):
                for name in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                    os.lchown(name, mlflow.pw_uid, mlflow.pw_gid)
        # 2. Swapped in with nothing connected.
        log("restore: stopping Airflow and MLflow to swap the databases in")
        stopped = True
        _systemctl("stop", *SERVICES)
        for role in manifest["databases"]:
            if role not in dbs:
                continue
            db = dbs[role][0]
            _psql("postgres", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
            _psql("postgres", 'ALTER DATABASE "%s_restoring" RENAME TO "%s"' % (db, db))
            temp_dbs.remove(db + "_restoring")
        if artifacts and incoming:
            for name in os.listdir(artifacts):
                if name != INCOMING:
                    path = os.path.join(artifacts, name)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
            for name in os.listdir(incoming):
                os.rename(os.path.join(incoming, name), os.path.join(artifacts, name))
            os.rmdir(incoming)
        # 3. This machine's Fernet key, its schema version, its admin password.
        env = airflow_run_env()  # the services' own settings and secrets, as retention runs Airflow
        old_key = _read(os.path.join(stage, "secrets", "fernet-key"))
        new_key = env.get("AIRFLOW__CORE__FERNET_KEY", "")
        database.migrate(env, lambda msg: log("restore: " + msg))  # a backup of an older Airflow's schema
        if old_key and old_key != new_key:
            log("restore: re-encrypting connections and variables with this machine's key")
            database.airflow(["rotate-fernet-key"], dict(env, AIRFLOW__CORE__FERNET_KEY=new_key + "," + old_key),
                             "airflow rotate-fernet-key")
        user = str(cfg.get("airflow_admin_user") or "admin")
        if database.has_user(user):
            database.airflow(["users", "delete", "--username", user], env, "airflow users delete")
        database.create_admin(user, bootstrap.admin_password(), env)
        log("restore: starting the services")
        _systemctl("start", "playground.target")
        stopped = False
        found = {role: counts(role, dbs[role][0]) for role in manifest["databases"] if role in dbs}
        expected = {role: manifest["databases"][role]["counts"] for role in found}
        report = health.wait_report(HEALTHY_WAIT_S)  # done means usable: Airflow and MLflow answer again
        return {"ok": found == expected and report["healthy"], "healthy": report["healthy"],
                "problems": report.get("problems") or [], "found": found, "expected": expected, "skipped": skipped,
                "absent": manifest.get("absent") or [], "from": {"instance": manifest.get("instance"),
                                                                "versions": manifest.get("versions")},
                "seconds": round(time.time() - started, 1)}
    finally:
        for temp in temp_dbs:
            try:
                _psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % temp)
            except BackupError:
                pass
        shutil.rmtree(stage, ignore_errors=True)
        if incoming:  # copied, and not swapped in (after the swap it no longer exists)
            shutil.rmtree(incoming, ignore_errors=True)
        if stopped:  # stopped for the swap and failed before the start: bring them back
            _systemctl("start", "playground.target")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def main(action: str, replace: bool = False) -> int:
    """backup: the stream on stdout, the manifest on stderr's last line; restore: stdin, JSON on stdout."""
    try:
        if action == "backup":
            if sys.stdout.isatty():
                raise BackupError("backup writes a tar stream: redirect stdout to a file")
            manifest = backup(sys.stdout.buffer)
            sys.stdout.buffer.flush()
            print("MANIFEST " + json.dumps(manifest, sort_keys=True), file=sys.stderr, flush=True)
            return 0
        result = restore(sys.stdin.buffer, replace)
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0 if result["ok"] else 1
    except (BackupError, OSError, CommandError) as exc:
        print("playground-agent: %s: %s" % (action, exc), file=sys.stderr)
        return 1

