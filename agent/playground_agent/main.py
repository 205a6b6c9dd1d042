"""playground-agent: apply instance metadata, report health, watch for changes."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from . import (
    autostop,
    bootstrap,
    bucket_sync,
    cluster,
    data,
    database,
    files,
    health,
    nightly,
    packages,
    paths,
    project,
    render,
    restore,
    retention,
    schema,
    secret_manager,
)
from .commands import CommandError
from .config import ConfigError, parse, parse_ssh_keys
from .metadata import MetadataClient, MetadataError

CONFIG_STATE = paths.CONFIG_STATE
# Which services read which rendered file: a change restarts only those.
READERS = {
    "airflow.env": ["airflow-webserver.service", "airflow-scheduler@*.service", "playground-lineage.service"],
    "mlflow.env": ["mlflow-server.service"],
    "cloudsql-proxy.env": ["cloud-sql-proxy.service"],
    "bucket-mount.env": ["playground-bucket-mount.service", "playground-bucket-sync.service"],
    # CeleryExecutor (cluster.py): the broker's URL and passwords, Redis's config, MLflow's forward, and
    # PostgreSQL's listen addresses and pg_hba (a restart: listen_addresses is read at start only).
    "celery.env": ["airflow-scheduler@*.service", "airflow-triggerer.service", "airflow-worker.service"],
    "playground.conf": ["playground-redis.service"],
    "mlflow-forward.env": ["playground-mlflow-forward.service"],
    "pg_hba.conf": ["postgresql@*-main.service"],
    cluster.PG_PRIVATE_CONF: ["postgresql@*-main.service"],
}


def log(msg: str) -> None:
    print("playground-agent: " + msg, file=sys.stderr, flush=True)


def _save_config_state(state: Dict[str, Any]) -> None:
    files.write_atomic(CONFIG_STATE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644, 0)


def _systemctl(*args: str) -> int:
    return subprocess.run(["systemctl"] + list(args)).returncode


# Exit codes of apply. A refused config stays refused until its metadata changes; a metadata server that
# never answered or a bootstrap step that failed may pass next time, so playground-agent.service
# restarts apply after those (Restart=on-failure, RestartPreventExitStatus=1).
EXIT_REFUSED = 1
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL


def fail(error: str, code: int = EXIT_REFUSED) -> int:
    """Record a failed apply: the last good config stays, nothing is started."""
    log(error)
    previous = files.read_json(CONFIG_STATE) or {}
    state = {"state": "error", "error": error, "generation": previous.get("generation", 0),
             "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        _save_config_state(state)
        health.write_report(health.collect(files.read_json(paths.GOOD_CONFIG), state))
    except OSError as exc:
        log("could not write the health report: %s" % exc)
    return code


# How long apply waits for a metadata server that fails or does not answer (Google's guest agent
# retries until it answers): minutes, within the unit's TimeoutStartSec.
PATIENCE_S = 600.0
# After this long without metadata, the services of the last good config start meanwhile.
FALLBACK_AFTER_S = 10.0
# One request every 5 s at most costs the metadata server nothing and brings the services back within
# 5 s of its recovery (15 s apart measured 11.1 s from recovery to healthy).
MAX_DELAY_S = 5.0


def _last_good_is_complete() -> bool:
    """A previous apply finished: its config and every file the units read are there."""
    return os.path.isfile(paths.GOOD_CONFIG) and all(
        os.path.isfile(paths.ETC + "/" + name) for name in ("airflow.env", "mlflow.env"))


def read_metadata(client: MetadataClient, patience: float, start: bool) -> Dict[str, Any]:
    """The metadata document, retried with backoff for up to `patience` seconds. While it is missing,
    the services of the last good config are started, once, if that config is complete."""
    started = time.monotonic()
    delay, fell_back = 1.0, False
    while True:
        try:
            doc, _ = client.read_all()
            return doc
        except MetadataError as exc:
            waited = time.monotonic() - started
            # Before giving up too: the services keep running while systemd runs apply again.
            if start and not fell_back and waited >= FALLBACK_AFTER_S and _last_good_is_complete():
                log("starting the services of the last good config while metadata is unreadable")
                role = str((files.read_json(paths.GOOD_CONFIG) or {}).get("role") or "main")
                _systemctl("start", "--no-block", target(role))
                fell_back = True
            if waited + delay > patience:
                raise MetadataError("%s (gave up after %.0f s)" % (exc, waited)) from exc
            log("metadata not readable yet: %s; retrying in %.0f s (%.0f s so far)" % (exc, delay, waited))
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


def apply(client: MetadataClient, start: bool = True, patience: Optional[float] = None) -> int:
    t0 = time.monotonic()
    if patience is None:
        patience = float(os.environ.get("PLAYGROUND_METADATA_PATIENCE", PATIENCE_S))
    try:
        doc = read_metadata(client, patience, start)
    except MetadataError as exc:
        return fail(str(exc), EXIT_TEMPFAIL)
    try:
        keys = parse_ssh_keys(doc)
    except ConfigError:
        keys = None  # parse() below refuses the whole config with this same line: say it once
    if keys is not None:
        try:
            bootstrap.ensure_ssh_keys(keys)
        except (CommandError, OSError) as exc:
            log("ssh-keys not applied: %s" % exc)
    for key in schema.unknown_keys((doc.get("instance") or {}).get("attributes") or {}):
        log("ignored: %s" % schema.unknown_error(key))
    try:
        cfg = parse(doc)
        wanted = render.render(cfg)
        wanted.update(secret_manager.files(cfg, client))  # read before anything is written
        wanted.update(cluster.files(cfg, client, log))
    except (ConfigError, cluster.ClusterError) as exc:
        return fail(str(exc))
    volume = data.read_state()
    if volume.get("state") == "error":
        return fail("data volume: %s" % volume.get("error"))
    changed = files.write_all(wanted)
    changed += secret_manager.remove_unneeded(wanted)
    if any(p.startswith(paths.SYSTEMD_DIR) for p in changed):
        _systemctl("daemon-reload")
    try:
        bootstrap.bootstrap(cfg, log)
    except (CommandError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        return fail("bootstrap: %s" % exc, EXIT_TEMPFAIL)
    project.apply_saved(log)  # the team's connections, variables and pools, when they changed
    try:
        packages.ensure_path()  # the project's package layer on Airflow's sys.path (an empty one at first)
    except (OSError, packages.PackagesError) as exc:
        log("project packages not on Airflow's path: %s" % exc)
    previous = files.read_json(CONFIG_STATE) or {}
    good = cfg.to_dict()
    generation = int(previous.get("generation", 0))
    if files.read_json(paths.GOOD_CONFIG) != good or changed:
        generation += 1
        files.write_atomic(paths.GOOD_CONFIG, json.dumps(good, indent=2, sort_keys=True) + "\n", 0o644, 0)
    _save_config_state({"state": "ok", "generation": generation, "error": "",
                        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    restart: List[str] = []
    for path in changed:
        restart += READERS.get(os.path.basename(path), [])
    if restart:
        # try-restart touches only running units: at boot nothing is running yet.
        _systemctl("try-restart", *restart)
    if start:
        _systemctl("start", "--no-block", target(cfg.role))
    log("applied config generation %d in %.2f s (%d file(s) changed)" % (
        generation, time.monotonic() - t0, len(changed)))
    return 0


def target(role: str) -> str:
    """What a machine of that role runs: everything on a main, the Celery worker on a worker."""
    return "playground-worker.target" if role == "worker" else "playground.target"


def print_status(rep: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rep, indent=2, sort_keys=True))
        return
    print("healthy: %s   config: %s (generation %s)" % (
        "yes" if rep["healthy"] else "NO", rep["config"].get("state"), rep["config"].get("generation")))
    for unit, st in sorted(rep["units"].items()):
        print("  %-36s %s/%s" % (unit, st.get("active"), st.get("sub", "")))
    for part in ("airflow", "mlflow", "lineage", "mount", "proxy", "broker"):
        if part in rep:
            info = rep[part]
            print("  %-36s %s %s" % (part, "ok" if info["ok"] else "FAIL", info.get("reason") or info.get("state", "")))
    print("  disk used %s%%, memory used %s%%" % (rep["disk"]["used_pct"], rep["memory"].get("used_pct")))
    for problem in rep["problems"]:
        print("problem: " + problem)


def watch(client: MetadataClient) -> int:
    """Long-poll the attributes and re-apply when they change (the guest agent's loop)."""
    etag = ""
    while True:
        try:
            _, new_etag = client.get("instance/attributes/", recursive=True, wait_for_change=bool(etag),
                                     last_etag=etag)
        except MetadataError as exc:
            log("watch: %s; retrying in 10 s" % exc)
            time.sleep(10)
            continue
        if etag and new_etag != etag:
            log("instance attributes changed: re-applying")
            apply(client)
        etag = new_etag


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="playground-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_apply = sub.add_parser("apply", help="read metadata, write config, bootstrap, start playground.target")
    p_apply.add_argument("--no-start", action="store_true", help="do not start playground.target")
    p_health = sub.add_parser("health", help="write the health report (/run/playground/status.json)")
    p_health.add_argument("--wait", type=float, default=0.0, help="seconds to wait for healthy")
    p_status = sub.add_parser("status", help="print the health report, from live checks")
    p_status.add_argument("--json", action="store_true", help="print the report as JSON")
    sub.add_parser("admin-password", help="print the Airflow admin password (root only)")
    p_api = sub.add_parser("airflow-api", help="call Airflow's REST API as the admin user, whichever Airflow this "
                                               "is (v1 or v2, its auth); prints the answer's JSON (root)")
    p_api.add_argument("method", help="GET, POST, PATCH or DELETE")
    p_api.add_argument("path", help="below the API's root, e.g. dags/lineage_demo/dagRuns")
    p_api.add_argument("body", nargs="?", default="", help="a JSON object to send")
    sub.add_parser("watch", help="long-poll metadata and re-apply on change")
    sub.add_parser("cluster-secrets", help="print what a worker needs from this main (its passwords and keys, "
                   "as env lines; root; the launcher hands them to a worker before its first boot)")
    sub.add_parser("bake-database", help="create and migrate Airflow's database in the image's PostgreSQL "
                   "cluster (root; the image build runs it: a new machine copies it, see database.py)")
    sub.add_parser("data", help="mount the data volume and bind the team's folders from it (root; "
                   "playground-data.service runs it at boot, before PostgreSQL)")
    p_project = sub.add_parser("project", help="the team's project, for `playground deploy` (root; JSON out)")
    p_project.add_argument("action", choices=["manifest", "venv", "receive"],
                           help="manifest: the DAG folder and its files' hashes; venv: the Python and packages a "
                           "requirements.txt is resolved for; receive: apply the JSON on stdin")
    sub.add_parser("retention", help="delete task logs and Airflow's run history older than retention-days "
                   "(root; playground-retention.timer runs it daily)")
    p_backup = sub.add_parser("backup", help="write a backup of this machine (databases, Fernet key, MLflow "
                              "artifacts) as a tar stream on stdout (root; `playground backup` runs it)")
    p_backup.add_argument("--nightly", action="store_true", help="upload it to backup-to instead and delete the "
                          "nightly backups beyond backup-keep (playground-backup.timer runs it at backup-at)")
    p_restore = sub.add_parser("restore", help="restore a backup read from stdin onto this machine (root; "
                               "`playground restore` runs it); JSON out")
    p_restore.add_argument("--replace", action="store_true", help="drop this machine's own runs and tables")
    sub.add_parser("autostop", help="power the machine off after `autostop` idle minutes (root; "
                   "playground-autostop.service runs it)")
    p_sync = sub.add_parser("bucket-sync", help="mirror gs://$BUCKET/dags/ into $MOUNT_POINT/dags (where gcsfuse "
                            "is absent)")
    p_sync.add_argument("--once", action="store_true", help="one round, then exit (1 if it failed)")
    p_sync.add_argument("--interval", type=float, default=bucket_sync.INTERVAL_S, help="seconds between rounds")
    args = parser.parse_args(argv)

    if args.command == "apply":
        # Few quick tries per read: read_metadata's own backoff waits minutes between them.
        return apply(MetadataClient(retries=2), start=not args.no_start)
    if args.command == "health":
        rep = health.wait_report(args.wait)
        return 0 if rep["healthy"] else 1
    if args.command == "status":
        rep = health.wait_report(0)
        print_status(rep, args.json)
        return 0 if rep["healthy"] else 1
    if args.command == "admin-password":
        if os.geteuid() != 0:
            print("playground-agent: admin-password: run as root", file=sys.stderr)
            return 1
        print(bootstrap.admin_password())
        return 0
    if args.command == "airflow-api":
        if os.geteuid() != 0:
            print("playground-agent: airflow-api: run as root", file=sys.stderr)
            return EXIT_REFUSED
        if args.method.upper() not in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            print("playground-agent: airflow-api: METHOD: expected GET, POST, PATCH, PUT or DELETE, got %r"
                  % args.method, file=sys.stderr)
            return 2
        from . import airflow_api

        return airflow_api.main(args.method, args.path, args.body)
    if args.command == "cluster-secrets":
        if os.geteuid() != 0:
            print("playground-agent: cluster-secrets: run as root", file=sys.stderr)
            return 1
        try:
            sys.stdout.write(cluster.handover())
        except (cluster.ClusterError, OSError) as exc:
            print("playground-agent: cluster-secrets: %s" % exc, file=sys.stderr)
            return 1
        return 0
    if args.command == "project":
        if os.geteuid() != 0:
            print("playground-agent: project: run as root", file=sys.stderr)
            return 1
        return project.main(args.action)
    if args.command == "bake-database":
        return database.main()
    if args.command == "data":
        if os.geteuid() != 0:
            print("playground-agent: data: run as root", file=sys.stderr)
            return 1
        return data.main()
    if args.command == "retention":
        if os.geteuid() != 0:
            print("playground-agent: retention: run as root", file=sys.stderr)
            return 1
        return retention.main()
    if args.command in ("backup", "restore"):
        if os.geteuid() != 0:
            print("playground-agent: %s: run as root" % args.command, file=sys.stderr)
            return 1
        if getattr(args, "nightly", False):
            return nightly.main()
        return restore.main(args.command, getattr(args, "replace", False))
    if args.command == "autostop":
        if os.geteuid() != 0:
            print("playground-agent: autostop: run as root", file=sys.stderr)
            return 1
        return autostop.main()
    if args.command == "watch":
        return watch(MetadataClient())
    if args.command == "bucket-sync":
        bucket, mount_point = os.environ.get("BUCKET", ""), os.environ.get("MOUNT_POINT", "")
        if not bucket:
            # dags-bucket was removed: a restart after the re-apply ends here, and stays ended (exit 0).
            log("bucket-sync: no dags-bucket set (BUCKET in /etc/playground/bucket-mount.env): nothing to sync")
            return 0
        if not mount_point:
            log("bucket-sync: MOUNT_POINT must be set (/etc/playground/bucket-mount.env)")
            return 1
        return bucket_sync.run(bucket, mount_point, args.interval, args.once, log)
    return 2


if __name__ == "__main__":
    sys.exit(main())
