"""`playground restore` on the machine: a backup stream (backup.py's format) checked member by member, its
versions against this image's, then the databases, the Fernet key and the artifacts put in place with the
services stopped, the schema migrated where it is older, and the counts compared; and the agent's
`backup`/`restore` commands."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import IO, Any, Dict, List, Optional

from . import bootstrap, database, health, versions
from .backup import (
    AS_POSTGRES,
    END,
    FORMAT,
    HEALTHY_WAIT_S,
    INCOMING,
    SERVICES,
    STAGING_DIR,
    BackupError,
    artifacts_dir,
    backup,
    counts,
    databases,
    image_versions,
    log,
    machine_config,
    psql,
    tree_size,
)
from .commands import CommandError
from .project import airflow_run_env


def _safe(member: tarfile.TarInfo) -> bool:
    """Only plain files and folders, under a relative path that stays inside the staging folder."""
    parts = member.name.split("/")
    return (member.isfile() or member.isdir()) and not member.name.startswith("/") and ".." not in parts


def extract(src: IO[bytes], stage: str) -> Dict[str, Any]:
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
    got = tree_size(os.path.join(stage, "artifacts"))["files"]
    if want is not None and got != want:
        raise BackupError("the backup has %d of the %d artifact files its manifest names: truncated?" % (got, want))
    return manifest


def check_versions(manifest: Dict[str, Any]) -> None:
    have = image_versions()
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
    dbs = databases(cfg)
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

    cfg = machine_config()
    started = time.time()
    stage = tempfile.mkdtemp(prefix="playground-restore-", dir=STAGING_DIR)
    temp_dbs: List[str] = []
    incoming = None
    stopped = False
    try:
        manifest = extract(src, stage)
        if not replace:
            own = _own_data(cfg)
            if own:
                raise BackupError("this machine already has %s: restore onto a fresh instance, or pass --replace "
                                  "to drop them" % ", ".join(own))
        dbs = databases(cfg)
        skipped = [role for role in manifest["databases"] if role not in dbs]
        # 1. Every database restored under a temporary name: a dump that fails changes nothing.
        for role in manifest["databases"]:
            if role not in dbs:
                continue
            db, owner = dbs[role]
            temp = db + "_restoring"
            psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % temp)
            psql("postgres", 'CREATE DATABASE "%s" OWNER "%s"' % (temp, owner))
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
        artifacts = artifacts_dir(cfg)
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
            psql("postgres", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
            psql("postgres", 'ALTER DATABASE "%s_restoring" RENAME TO "%s"' % (db, db))
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
                psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % temp)
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
