"""Per-instance set-up: secrets on first boot, databases, migration, admin user, folders."""
from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
from typing import Dict, List, Optional

from . import cluster, database, paths
from .commands import new_password, run
from .config import Config, SshKey
from .files import read_env, read_json, write_atomic


def load_state() -> Dict[str, object]:
    return read_json(paths.STATE_FILE) or {}


def save_state(state: Dict[str, object]) -> None:
    write_atomic(paths.STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600, 0)


def is_first_boot(cfg: Config, state: Dict[str, object]) -> bool:
    # As the guest agent does: a new instance id means a new machine from the image.
    return state.get("instance_id") != cfg.instance_id


def ensure_secrets(instance_id: str, log=lambda msg: None, given: Optional[Dict[str, str]] = None) \
        -> Dict[str, str]:
    """Create the per-instance secrets once; they are never logged and stay 0600 root. given: the Fernet
    and webserver keys to hold instead (a GCE main takes its cluster-secret's, cluster.adopted_keys)."""
    os.makedirs(paths.SECRETS_DIR, mode=0o700, exist_ok=True)
    env_path = paths.SECRETS_DIR + "/airflow.env"
    pw_path = paths.SECRETS_DIR + "/admin-password"
    marker = paths.SECRETS_DIR + "/instance-id"
    try:
        with open(marker, encoding="utf-8") as fh:
            made_for = fh.read().strip()
    except OSError:
        made_for = ""
    if made_for != instance_id or not (os.path.exists(env_path) and os.path.exists(pw_path)):
        fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
        write_atomic(env_path, _keys_env(fernet, secrets.token_hex(32)), 0o600, 0)
        write_atomic(pw_path, new_password() + "\n", 0o600, 0)
        write_atomic(marker, instance_id + "\n", 0o600, 0)
        log("per-instance secrets created (Fernet key, webserver secret, admin password)")
    have = read_env(env_path)
    if given and any(have.get(k) != v for k, v in given.items()):
        have.update(given)
        write_atomic(env_path, _keys_env(have["AIRFLOW__CORE__FERNET_KEY"], have["AIRFLOW__WEBSERVER__SECRET_KEY"]),
                     0o600, 0)
        log("the Fernet and webserver keys are the cluster secret's (its workers hold the same)")
    return have


def _keys_env(fernet: str, secret_key: str) -> str:
    """SECRETS_DIR/airflow.env: the Fernet key and the webserver's secret key."""
    return 'AIRFLOW__CORE__FERNET_KEY="%s"\nAIRFLOW__WEBSERVER__SECRET_KEY="%s"\n' % (fernet, secret_key)


def admin_password() -> str:
    with open(paths.SECRETS_DIR + "/admin-password", encoding="utf-8") as fh:
        return fh.read().strip()


def ensure_dirs(cfg: Config) -> None:
    airflow_user = pwd.getpwnam("airflow")
    mlflow_user = pwd.getpwnam("mlflow")
    for path, owner in ((paths.AIRFLOW_HOME, airflow_user), (paths.LOCAL_DAGS, airflow_user),
                        ("/var/log/airflow", airflow_user), (paths.BUCKET_MOUNT, airflow_user)):
        os.makedirs(path, exist_ok=True)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    if not cfg.artifacts_root.startswith("gs://"):
        os.makedirs(cfg.artifacts_root, exist_ok=True)
        os.chown(cfg.artifacts_root, mlflow_user.pw_uid, mlflow_user.pw_gid)


GCE_PRODUCT_NAME = "/sys/class/dmi/id/product_name"


def guest_agent_runs() -> bool:
    """Google's guest agent installs `ssh-keys` itself: where it is installed and this is a GCE VM (its
    SMBIOS product name begins "Google", as google-auth tells; the local disk's guest agent is held to that
    by an ExecCondition, see 15-boot.sh)."""
    if not os.path.exists("/usr/bin/google_guest_agent") or os.path.exists("/run/systemd/container"):
        return False  # in a container (nspawn), the SMBIOS read is the host's
    try:
        with open(GCE_PRODUCT_NAME) as fh:
            return fh.read().strip().startswith("Google")
    except OSError:
        return False


def ensure_ssh_keys(ssh_keys: List[SshKey]) -> None:
    """Install `ssh-keys` where Google's guest agent does not run (the local image, nspawn or QEMU)."""
    if not ssh_keys or guest_agent_runs():
        return
    by_user: Dict[str, List[str]] = {}
    for k in ssh_keys:
        by_user.setdefault(k.user, []).append(k.key)
    for user, keys in by_user.items():
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "playground-sudoers", user],
                 what="useradd")
            pw = pwd.getpwnam(user)
        ssh_dir = os.path.join(pw.pw_dir, ".ssh")
        os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
        os.chown(ssh_dir, pw.pw_uid, pw.pw_gid)
        path = os.path.join(ssh_dir, "authorized_keys")
        content = "# managed by playground-agent from the ssh-keys attribute\n" + "\n".join(keys) + "\n"
        write_atomic(path, content, 0o600, pw.pw_gid)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def bootstrap(cfg: Config, log) -> Dict[str, object]:
    """Everything that needs root and the local PostgreSQL; idempotent."""
    state = load_state()
    first = is_first_boot(cfg, state)
    if first:
        # A new machine, or this machine on a new boot disk (an upgrade): its secrets on the data volume stay.
        log("first boot of instance %s on this boot disk" % cfg.instance_id)
    secret_env = ensure_secrets(cfg.instance_id, log, cluster.adopted_keys(cfg))
    ensure_dirs(cfg)
    ensure_ssh_keys(cfg.ssh_keys)
    if cfg.role == "worker":
        # The main's database is the worker's: nothing to create or migrate here (cluster.py).
        state["instance_id"] = cfg.instance_id
        save_state(state)
        return state
    database.wait_for_postgres()
    # Made at image build (database.bake) and copied with the cluster; created here only on an older volume.
    database.ensure_database("airflow", "airflow")
    database.ensure_database("warehouse", "airflow")  # pipelines' own tables (AIRFLOW_CONN_WAREHOUSE)
    if cfg.mlflow_backend == "local":
        database.ensure_database(cfg.mlflow_db_name, cfg.mlflow_db_user)
    if cfg.airflow_executor == "CeleryExecutor":
        cluster.set_db_password(log)
    env = database.airflow_command_env(cfg, secret_env)
    database.migrate(env, log)  # read from the database, not this boot disk's state: see database.py
    if first or state.get("admin_user") != cfg.airflow_admin_user:
        if not database.has_user(cfg.airflow_admin_user):
            log("creating the Airflow admin user %r" % cfg.airflow_admin_user)
            database.create_admin(cfg.airflow_admin_user, admin_password(), env)
        state["admin_user"] = cfg.airflow_admin_user
    state["instance_id"] = cfg.instance_id
    save_state(state)
    return state
