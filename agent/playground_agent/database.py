"""Airflow's metadata database: made and migrated once when the image is built, copied at first boot.

A fresh database costs Airflow's whole schema migration (about 7 CPU-seconds here, minutes on an emulated
VM) and every machine would pay it at its first boot. So the image build (`playground-agent bake-database`,
packer/scripts/65-database.sh) creates the roles and databases in the image's own PostgreSQL cluster,
migrates Airflow's, and records the schema's revisions (Alembic's version tables) in BAKED. At first boot
playground-data.service copies that cluster to the data volume (data.py), and bootstrap migrates only when
the database's revisions are not the image's: a new image of a newer Airflow (`playground upgrade`), a
restored backup of an older one, or a volume made before the database was baked. The decision reads the
database itself, so a new boot disk over an old data volume (an upgrade, the VM's disk swap) no longer
migrates again because the boot disk's state file is new.

Nothing per machine is in the baked database: no user, no connection, no secret (the Fernet key is made
at first boot; `airflow db migrate` encrypts nothing).
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from . import config, paths, versions
from .commands import PSQL, CommandError, run
from .files import read_json, write_atomic
from .render import airflow_env

BAKED = paths.p("/etc/playground/airflow-database.json")
# Alembic's version tables: Airflow's own, and FAB's where its auth manager keeps its own (Airflow 3).
VERSION_TABLES = ("alembic_version", "alembic_version_fab")
BUILD_DOC = {  # the metadata an image build renders Airflow's settings from: the defaults, no instance
    "instance": {"id": "image-build", "name": "image-build", "zone": "projects/0/zones/us-central1-a"},
    "project": {"projectId": "image-build"},
}


def wait_for_postgres(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if subprocess.run(["pg_isready", "-q", "-h", "/var/run/postgresql"]).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise CommandError("PostgreSQL did not accept connections within %d s" % timeout)
        time.sleep(0.5)


def ensure_database(name: str, owner: str) -> bool:
    """Create role and database if missing (names were validated as identifiers)."""
    created = False
    if run(PSQL + ["-c", "SELECT 1 FROM pg_roles WHERE rolname='%s'" % owner], what="psql").strip() != "1":
        run(PSQL + ["-c", 'CREATE ROLE "%s" LOGIN' % owner], what="create role " + owner)
        created = True
    if run(PSQL + ["-c", "SELECT 1 FROM pg_database WHERE datname='%s'" % name], what="psql").strip() != "1":
        run(PSQL + ["-c", 'CREATE DATABASE "%s" OWNER "%s"' % (name, owner)], what="create database " + name)
        created = True
    return created


def airflow_command_env(cfg: config.Config, secret_env: Dict[str, str]) -> Dict[str, str]:
    env = {"PATH": paths.AIRFLOW_VENV + "/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(airflow_env(cfg, os.cpu_count() or 1, versions.installed()))
    env.update(secret_env)
    return env


def airflow(args: List[str], env: Dict[str, str], what: str, secret_input: Optional[str] = None) -> str:
    return run(["runuser", "-u", "airflow", "--", paths.AIRFLOW_VENV + "/bin/airflow"] + args, env=env, what=what,
               secret_input=secret_input)


def migrate(env: Dict[str, str], log) -> bool:
    """Airflow's schema migration, when the database is not at this image's revisions; True if it ran."""
    if not needs_migration():
        return False
    args = versions.Airflow(versions.installed_version()).migrate_args
    log("running the Airflow database migration (airflow %s)" % " ".join(args))
    airflow(args, env, "airflow " + " ".join(args))
    return True


def create_admin(username: str, password: str, env: Dict[str, str]) -> None:
    # No --password: `users create` then asks twice through getpass, which reads stdin here.
    airflow(["users", "create", "--role", "Admin", "--username", username, "--email", "%s@localhost" % username,
             "--firstname", "Playground", "--lastname", "Admin"], env, "airflow users create",
            secret_input="%s\n%s\n" % (password, password))


def _sql(sql: str, database: str = "airflow") -> str:
    return run(PSQL + ["-d", database, "-c", sql], what="psql").strip()


def revisions() -> Dict[str, str]:
    """The Alembic revision of each version table the airflow database has ({} for an empty database)."""
    have = _sql("SELECT string_agg(table_name, ' ') FROM information_schema.tables WHERE table_schema = "
                "'public' AND table_name IN (%s)" % ", ".join("'%s'" % t for t in VERSION_TABLES)).split()
    return {table: _sql("SELECT string_agg(version_num, ',' ORDER BY version_num) FROM %s" % table)
            for table in sorted(have)}


def baked() -> Dict[str, object]:
    return read_json(BAKED) or {}


def needs_migration() -> bool:
    """True unless the database is at the revisions this image's Airflow was migrated to at build."""
    want = baked().get("revisions")
    return not want or revisions() != want


def has_user(username: str) -> bool:
    """Whether the web user exists, asked of FAB's table (no Airflow CLI start: seconds of imports)."""
    if _sql("SELECT to_regclass('public.ab_user') IS NOT NULL") != "t":
        return False
    # Names were validated by the schema (letters, digits, . _ -), so the literal needs no more quoting.
    return _sql("SELECT 1 FROM ab_user WHERE username = '%s'" % username) == "1"


def _cluster() -> List[str]:
    """The image's one PostgreSQL cluster, as pg_ctlcluster names it: [major, name]."""
    found = sorted(glob.glob("/etc/postgresql/*/main/postgresql.conf"))
    if len(found) != 1:
        raise CommandError("expected one PostgreSQL cluster in /etc/postgresql, found %d" % len(found))
    return [found[0].split("/")[3], "main"]


def _pg_ctl(action: str) -> int:
    # Not through systemd: during a build the cluster unit needs the data volume, which a build has none of.
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect"] + _cluster() + [action],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT).returncode


def bake(log) -> Dict[str, object]:
    """At image build: create the databases in the image's cluster, migrate Airflow's, record BAKED."""
    cfg = config.parse(BUILD_DOC)
    # A booted build (the local container, a GCE build VM) may have it running since apt installed it:
    # used as it is, and left running. Otherwise started here and stopped after.
    started = _pg_ctl("status") != 0
    if started and _pg_ctl("start") != 0:
        raise CommandError("pg_ctlcluster %s start failed" % " ".join(_cluster()))
    try:
        wait_for_postgres()
        for name, owner in (("airflow", "airflow"), ("warehouse", "airflow"), (cfg.mlflow_db_name, cfg.mlflow_db_user)):
            ensure_database(name, owner)
        version = versions.installed_version()
        args = versions.Airflow(version).migrate_args
        log("migrating the image's Airflow %s database (airflow %s)" % (version, " ".join(args)))
        # Its own AIRFLOW_HOME, removed after: Airflow writes an airflow.cfg there (with a generated Fernet
        # key on 2.x) that must not stay in the image.
        home = tempfile.mkdtemp(prefix="airflow-bake-")
        try:
            user = pwd.getpwnam("airflow")
            os.chown(home, user.pw_uid, user.pw_gid)
            env = dict(airflow_command_env(cfg, {}), AIRFLOW_HOME=home)
            airflow(args, env, "airflow " + " ".join(args))
        finally:
            shutil.rmtree(home, ignore_errors=True)
        record = {"airflow": version, "revisions": revisions()}
        if not record["revisions"]:
            raise CommandError("airflow %s left no Alembic revision in the database" % " ".join(args))
    finally:
        if started:
            _pg_ctl("stop")
    write_atomic(BAKED, json.dumps(record, indent=2, sort_keys=True) + "\n", 0o644, 0)
    log("baked: %s" % json.dumps(record["revisions"], sort_keys=True))
    return record


def main() -> int:
    if os.geteuid() != 0:
        print("playground-agent: bake-database: run as root", file=sys.stderr)
        return 1
    try:
        bake(lambda msg: print("playground-agent: bake-database: " + msg, flush=True))
    except (CommandError, subprocess.SubprocessError, OSError) as exc:
        print("playground-agent: bake-database: %s" % exc, file=sys.stderr)
        return 1
    return 0
