"""A playground with worker machines (airflow-executor=CeleryExecutor; issue 17): what the main and its
workers need beyond one machine's set-up.

The main runs Redis (the broker) and lets the workers into its PostgreSQL and MLflow, on its address in
private-subnet only: Redis and PostgreSQL listen there and on 127.0.0.1, pg_hba admits the subnet with a
password (scram-sha-256), and socat carries MLflow's port from that address to 127.0.0.1, for the subnet's
clients only. A worker reaches them at main-address with the same passwords and the main's Fernet and
webserver keys, which the main makes once (SECRETS_DIR/cluster.env) and the launcher hands to each worker
before its first boot (its own SECRETS_DIR/cluster.env): never in metadata, which the project can read.

On GCE there is no SSH handover: the launcher makes all four in a Secret Manager secret (cluster-secret),
which the main and its workers read at every apply into the same SECRETS_DIR/cluster.env; the main then
takes the secret's Fernet and webserver keys as its own (bootstrap.ensure_secrets).
"""
from __future__ import annotations

import glob
import ipaddress
import os
import re
import subprocess
from typing import Dict, List, Optional

from . import paths
from .commands import PSQL, new_password, run
from .config import Config
from .files import FileSpec, env_text, parse_env, read_env, write_atomic
from .schema import ConfigError
from .secret_manager import access
from .versions import installed

CLUSTER_ENV = paths.SECRETS_DIR + "/cluster.env"
CELERY_ENV = paths.SECRETS_DIR + "/celery.env"
REDIS_CONF = paths.p("/etc/redis/playground.conf")
FORWARD_ENV = paths.ETC + "/mlflow-forward.env"
PG_PRIVATE_CONF = "20-playground-private.conf"
REDIS_PORT = 6379
HBA_BEGIN = "# BEGIN playground workers (written by playground-agent)"
HBA_END = "# END playground workers"
# What a worker needs from its main, all four handed over together.
WORKER_KEYS = ("BROKER_PASSWORD", "DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY")


# IAM: "Changes to allow or deny policies typically propagate in 2 minutes, but could potentially take 7
# minutes or longer" (https://cloud.google.com/iam/docs/access-change-propagation): a VM launched right after
# the launcher granted it the secret may be refused for a while.
SECRET_PATIENCE_S = 600.0


class ClusterError(Exception):
    pass


def from_secret(cfg: Config, client, log=lambda msg: None) -> Dict[str, str]:
    """The four keys from the cluster-secret (GCE); ConfigError naming cluster-secret when it cannot be read
    or lacks one."""
    patience = float(os.environ.get("PLAYGROUND_CLUSTER_SECRET_PATIENCE", SECRET_PATIENCE_S))
    got = parse_env(access(client, cfg.cluster_secret, attr="cluster-secret", one_line=False, patience=patience,
                           log=log))
    missing = [k for k in WORKER_KEYS if not got.get(k)]
    if missing:
        raise ConfigError("cluster-secret", "a secret with %s (as `playground launch --workers` makes it); it "
                          "lacks %s" % (", ".join(WORKER_KEYS), ", ".join(missing)), cfg.cluster_secret)
    return {k: got[k] for k in WORKER_KEYS}


def adopted_keys(cfg: Config) -> Dict[str, str]:
    """On a main with a cluster-secret: the Fernet and webserver keys its workers were given, which it must
    use too (a connection encrypted on one machine is read on the other). Empty otherwise."""
    if not (celery(cfg) and cfg.role == "main" and cfg.cluster_secret):
        return {}
    have = _read_env(CLUSTER_ENV)
    return {k: have[k] for k in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY") if have.get(k)}


def celery(cfg: Config) -> bool:
    return cfg.airflow_executor == "CeleryExecutor"


def own_address(subnet: str) -> str:
    """This machine's IPv4 address in subnet (from `ip -o -4 addr`)."""
    net = ipaddress.IPv4Network(subnet)
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE, universal_newlines=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError("ip addr: %s" % exc) from None
    for found in re.findall(r"\sinet ([0-9.]+)/", out):
        if ipaddress.IPv4Address(found) in net:
            return found
    raise ClusterError("private-subnet %s: this machine has no address in it (is it on the playground's "
                       "network?)" % subnet)


def _read_env(path: str) -> Dict[str, str]:
    try:
        return read_env(path)
    except OSError:
        return {}


def ensure_main_secrets() -> Dict[str, str]:
    """The broker's and the workers' database password, made once (0600 root, on the data volume)."""
    have = _read_env(CLUSTER_ENV)
    if have.get("BROKER_PASSWORD") and have.get("DB_PASSWORD"):
        return have
    have = {"BROKER_PASSWORD": new_password(32), "DB_PASSWORD": new_password(32)}
    write_atomic(CLUSTER_ENV, env_text(have), 0o600, 0)
    return have


def worker_secrets() -> Dict[str, str]:
    """What the launcher handed this worker; ClusterError naming what is missing."""
    have = _read_env(CLUSTER_ENV)
    missing = [k for k in WORKER_KEYS if not have.get(k)]
    if missing:
        raise ClusterError("role worker: %s lacks %s: the launcher hands a worker its main's secrets before its "
                           "first boot (playground launch --workers, playground scale)" % (CLUSTER_ENV,
                                                                                           ", ".join(missing)))
    return have


def handover(airflow_env_path: str = paths.SECRETS_DIR + "/airflow.env") -> str:
    """On the main: the env text a worker needs (its passwords and the Fernet and webserver keys)."""
    have = dict(ensure_main_secrets(), **{k: v for k, v in _read_env(airflow_env_path).items()
                                          if k in WORKER_KEYS})
    missing = [k for k in WORKER_KEYS if not have.get(k)]
    if missing:
        raise ClusterError("this machine has no %s yet: has the agent applied a config?" % ", ".join(missing))
    return env_text({k: have[k] for k in WORKER_KEYS})


def _hba(current: str, subnet: Optional[str]) -> str:
    """pg_hba.conf with our block (the subnet, password auth, Airflow's two databases) replaced or removed."""
    kept, skipping = [], False
    for line in current.splitlines():
        if line.strip() == HBA_BEGIN:
            skipping = True
        elif line.strip() == HBA_END:
            skipping = False
        elif not skipping:
            kept.append(line)
    if subnet:
        kept += [HBA_BEGIN, "host    airflow,warehouse    airflow    %s    scram-sha-256" % subnet, HBA_END]
    return "\n".join(kept) + "\n"


def pg_files(cfg: Config, address: str) -> Dict[str, FileSpec]:
    """Every cluster's listen addresses (127.0.0.1 and this main's private address) and pg_hba block."""
    files: Dict[str, FileSpec] = {}
    listen = "127.0.0.1,%s" % address
    for hba in sorted(glob.glob(paths.p("/etc/postgresql/*/main/pg_hba.conf"))):
        with open(hba, encoding="utf-8") as fh:
            current = fh.read()
        files[hba] = FileSpec(_hba(current, cfg.private_subnet), os.stat(hba).st_mode & 0o777, "postgres")
        files[os.path.join(os.path.dirname(hba), "conf.d", PG_PRIVATE_CONF)] = FileSpec(
            "# written by playground-agent: the workers reach Airflow's database here\n"
            "listen_addresses = '%s'\n" % listen, 0o644, "")
    return files


def files(cfg: Config, client=None, log=lambda msg: None) -> Dict[str, FileSpec]:
    """Every file of the cluster's settings (none without CeleryExecutor). Secrets are read or made here:
    from the cluster-secret when there is one (client: the metadata server, for the token)."""
    if not celery(cfg):
        return {}
    out: Dict[str, FileSpec] = {}
    given = from_secret(cfg, client, log) if cfg.cluster_secret else None
    if given:
        out[CLUSTER_ENV] = FileSpec(env_text(given), 0o600, "")
    port = cfg.mlflow_port
    if cfg.role == "main":
        address = own_address(cfg.private_subnet)
        out.update(pg_files(cfg, address))
        pw = given or ensure_main_secrets()
        out[REDIS_CONF] = FileSpec(
            "# written by playground-agent: the Celery broker, on 127.0.0.1 and the private address only\n"
            "bind 127.0.0.1 %s\nport %d\nprotected-mode yes\nrequirepass %s\ndaemonize no\nsupervised no\n"
            "dir /var/lib/redis\nsave \"\"\nappendonly no\nlogfile \"\"\n" % (address, REDIS_PORT,
                                                                             pw["BROKER_PASSWORD"]), 0o640, "redis")
        out[CELERY_ENV] = FileSpec(env_text({
            "AIRFLOW__CELERY__BROKER_URL": "redis://:%s@127.0.0.1:%d/0" % (pw["BROKER_PASSWORD"], REDIS_PORT),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://airflow@/airflow?host=/var/run/postgresql",
        }), 0o600, "")
        out[FORWARD_ENV] = FileSpec(env_text({
            "LISTEN": "TCP-LISTEN:%d,bind=%s,fork,reuseaddr,range=%s" % (port, address, cfg.private_subnet),
            "TO": "TCP:127.0.0.1:%d" % port}), 0o640, "airflow")
        return out
    pw = given or worker_secrets()
    main, db = cfg.main_address, "%s:%s@%s:5432" % ("airflow", pw["DB_PASSWORD"], cfg.main_address)
    out[CELERY_ENV] = FileSpec(env_text({
        "AIRFLOW__CORE__FERNET_KEY": pw["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__WEBSERVER__SECRET_KEY": pw["AIRFLOW__WEBSERVER__SECRET_KEY"],
        installed().sql_alchemy_conn_key: "postgresql+psycopg2://%s/airflow" % db,
        "AIRFLOW__CELERY__BROKER_URL": "redis://:%s@%s:%d/0" % (pw["BROKER_PASSWORD"], main, REDIS_PORT),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://%s/airflow" % db,
        "AIRFLOW_CONN_WAREHOUSE": "postgres://%s/warehouse" % db,
    }), 0o600, "")
    out[FORWARD_ENV] = FileSpec(env_text({"LISTEN": "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % port,
                                      "TO": "TCP:%s:%d" % (main, port)}), 0o640, "airflow")
    return out


def set_db_password(log) -> None:
    """The airflow role's password for the workers (scram), given to psql on stdin, never in argv."""
    pw = ensure_main_secrets()["DB_PASSWORD"]
    run(PSQL + ["-d", "postgres"], what="psql: the airflow role's password for the workers",
        secret_input="SET password_encryption = 'scram-sha-256';\nALTER ROLE airflow PASSWORD '%s';\n" % pw)
    log("the workers' database password is set")


def units(cfg: Config) -> List[str]:
    """What playground.target also wants on a main with workers."""
    return ["playground-redis.service", "playground-mlflow-forward.service"] if celery(cfg) and cfg.role == "main" \
        else []
