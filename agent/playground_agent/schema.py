"""Every metadata attribute the agent reads, defined once: name, default, what is expected, meaning,
and the parser that validates it.

The agent validates instance metadata with it at boot; the CLI imports it to refuse a bad `--set`
before any request or boot; the README's attribute table is generated from it and checked by a test
(`python3 -m playground_agent.schema` prints the table). Standard library, Python 3.8+: this runs
on the image's Python.

Values end up in env files and unit drop-ins, so every parser is strict: a newline, a `..` or a
shell character never gets through. Errors name the attribute and what was expected.
"""
from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .checks import (  # noqa: F401 - also the contract's names for its users (ConfigError, Context, ...)
    BACKENDS,
    CLOUDSQL_RE,
    EXECUTORS,
    GOOGLE_KEYS,
    IDENT_RE,
    POSTGRES_PORT,
    PROJECT_ID_RE,
    ROLES,
    SCOPED_PROJECT_RE,
    SECRET_RE,
    USER_RE,
    ZONE_RE,
    ConfigError,
    Context,
    SshKey,
    artifacts_location,
    autostop_value,
    backup_calendar,
    bucket_name,
    calendar_days,
    choice,
    day_set,
    gs_location,
    int_between,
    int_range,
    ipv4_address,
    matches,
    private_network,
    ssh_key_list,
    tcp_port,
    time_zone,
)


@dataclass(frozen=True)
class Attribute:
    name: str
    field: str  # the Config field it fills
    value: Any  # the default the agent uses
    expected: str  # what a good value looks like (README; the parser's errors say the same)
    meaning: str
    parse: Callable[[str, str, Context], Any]
    shown: str = ""  # the default as the README says it, when not the value itself
    multiline: bool = False

    @property
    def default_text(self) -> str:
        return self.shown or ("`%s`" % self.value if isinstance(self.value, str) else str(self.value))


ARTIFACTS_DIR = "/var/lib/playground/mlflow-artifacts"
ATTRIBUTES: Tuple[Attribute, ...] = (
    Attribute("gcp-project", "project_id", "", "GCP project id", "the project the playground works for",
              matches(SCOPED_PROJECT_RE, "a GCP project id (6-30 of a-z 0-9 -, starting with a letter)"),
              shown="the project's id"),
    Attribute("dags-bucket", "dags_bucket", "", "GCS bucket name",
              "DAGs read from its dags/ (gcsfuse on GCE images, else synced every 30 s)",
              bucket_name, shown="none (local folder)"),
    Attribute("logs-bucket", "logs_bucket", "", "GCS bucket name", "Airflow task logs written to this bucket",
              bucket_name, shown="none (local folder)"),
    Attribute("artifacts-root", "artifacts_root", ARTIFACTS_DIR, "`gs://BUCKET[/PREFIX]` or absolute path",
              "where MLflow stores artifacts", artifacts_location),
    Attribute("cloudsql-instance", "cloudsql_instance", "", "`PROJECT:REGION:INSTANCE`",
              "Cloud SQL instance the proxy connects to",
              matches(CLOUDSQL_RE, "a connection name PROJECT:REGION:INSTANCE"),
              shown="none (MLflow on the local PostgreSQL)"),
    Attribute("cloudsql-proxy-port", "cloudsql_proxy_port", 3309, "1024-65535", "the proxy's port on 127.0.0.1",
              tcp_port),
    Attribute("mlflow-backend", "mlflow_backend", "local", ", ".join("`%s`" % b for b in BACKENDS),
              "MLflow's database", choice(*BACKENDS), shown="`local` (`cloudsql` when an instance is given)"),
    Attribute("mlflow-db-name", "mlflow_db_name", "mlflow", "identifier", "MLflow's database name",
              matches(IDENT_RE, "a database identifier (a-z 0-9 _, starting with a letter)")),
    Attribute("mlflow-db-user", "mlflow_db_user", "mlflow", "identifier", "MLflow's database user",
              matches(IDENT_RE, "a database identifier (a-z 0-9 _, starting with a letter)")),
    Attribute("mlflow-db-password-secret", "mlflow_db_password_secret", "", "`projects/P/secrets/S[/versions/V]`",
              "Secret Manager secret holding the MySQL password",
              matches(SECRET_RE, "projects/P/secrets/S[/versions/V]"), shown="none (required with cloudsql)"),
    Attribute("airflow-admin-user", "airflow_admin_user", "admin", "user name",
              "the Airflow web user created at first boot",
              matches(USER_RE, "a user name of letters, digits, _ . -")),
    Attribute("airflow-executor", "airflow_executor", "LocalExecutor", ", ".join("`%s`" % e for e in EXECUTORS),
              "Airflow's executor", choice(*EXECUTORS)),
    # Worker machines (issue 17): one image, two roles. A worker runs `airflow celery worker` only, with the
    # main's database, broker and DAGs, over the playground's private network.
    Attribute("role", "role", "main", "`main`, `worker`",
              "main: the database, web UIs, schedulers and broker; worker: Celery tasks only (see Workers)",
              choice(*ROLES)),
    Attribute("private-subnet", "private_subnet", "", "private IPv4 network, /16-/29",
              "the network of the main and its workers (CeleryExecutor): the broker, PostgreSQL and MLflow's "
              "port listen on the main's address in it, for it only", private_network, shown="none"),
    Attribute("main-address", "main_address", "", "IPv4 address in `private-subnet`",
              "a worker's main machine", ipv4_address, shown="none (required on a worker)"),
    # GCE: the project can read instance metadata, so the cluster's passwords and keys travel in Secret
    # Manager instead; the launcher makes the secret and grants the VMs' account read access to it alone.
    Attribute("cluster-secret", "cluster_secret", "", "`projects/P/secrets/S[/versions/V]`",
              "Secret Manager secret with the cluster's passwords and keys (GCE workers; the launcher makes it)",
              matches(SECRET_RE, "projects/P/secrets/S[/versions/V]"), shown="none (local: handed over by SSH)"),
    Attribute("worker-concurrency", "worker_concurrency", 8, "1-64", "task slots of a worker (Celery's concurrency)",
              int_range(1, 64)),
    Attribute("airflow-schedulers", "airflow_schedulers", 1, "1-4", "scheduler processes", int_range(1, 4)),
    # LocalExecutor starts this many worker processes up front: 8 keeps an idle machine light.
    Attribute("airflow-parallelism", "airflow_parallelism", 8, "1-512",
              "task slots (LocalExecutor starts this many workers up front)", int_range(1, 512)),
    Attribute("timezone", "timezone", "UTC", "IANA zone", "Airflow's default time zone", time_zone),
    Attribute("lineage", "lineage", "on", "`on`, `off`", "every task recorded in MLflow (see Lineage)",
              choice("on", "off")),
    Attribute("airflow-secrets", "airflow_secrets", "metastore", "`metastore`, `secret-manager`",
              "where Airflow looks up connections and variables first: `secret-manager` reads the project's "
              "Secret Manager (`airflow-connections-ID`, `airflow-variables-KEY`), then Airflow's database",
              choice("metastore", "secret-manager")),
    Attribute("telemetry", "telemetry", "off", "`on`, `off`",
              "usage data MLflow (server, UI, clients) and other tools send to their makers (see Telemetry)",
              choice("on", "off")),
    # Cloud Composer's database maintenance guide suggests starting with a 30-day retention
    # (docs.cloud.google.com/composer/docs/composer-2/cleanup-airflow-database).
    Attribute("retention-days", "retention_days", 30, "1-3650",
              "task logs and Airflow's run history older than this are deleted daily (`airflow db clean`, 2.3+)",
              int_range(1, 3650)),
    # SkyPilot's autostop: stop after this many idle minutes (docs.skypilot.co, "Autostop").
    Attribute("autostop", "autostop_minutes", 0, "`off` or 1-1440 (minutes)",
              "the machine powers itself off (a stopped VM on GCE) after this long with no task running or queued "
              "and no SSH session or tunnel open (see Day two)", autostop_value, shown="`off`"),
    # The nightly backup (the model: Composer's scheduled snapshots): `playground schedule --backup-to` sets
    # it 15 minutes before the nightly stop, in the stop's days and zone.
    Attribute("backup-to", "backup_to", "", "`gs://BUCKET[/PREFIX]`",
              "a backup of the machine (`playground backup`'s file) written there on `backup-at`, as "
              "`NAME-nightly-YYYYmmdd-HHMMSS.tar` (see Day two)", gs_location, shown="none (no nightly backup)"),
    Attribute("backup-at", "backup_at", "*-*-* 20:45:00 UTC", "`[DAYS] HH:MM [ZONE]`",
              "when the nightly backup runs (DAYS: `daily`, `mon-fri`, `mon,wed,fri`); a machine off then backs "
              "up at its next start", backup_calendar, shown="`daily 20:45 UTC`"),
    Attribute("backup-keep", "backup_keep", 7, "1-365",
              "nightly backups kept in `backup-to`; older ones are deleted (never other objects)", int_range(1, 365)),
    Attribute("airflow-port", "airflow_port", 8080, "1024-65535, all ports different",
              "Airflow's web UI on 127.0.0.1", tcp_port),
    Attribute("mlflow-port", "mlflow_port", 5000, "1024-65535, all ports different",
              "MLflow's web UI on 127.0.0.1", tcp_port),
    Attribute("ssh-keys", "ssh_keys", None, "`USER:KEY` lines",
              "installed by the agent where Google's guest agent is absent", ssh_key_list, shown="none",
              multiline=True),
)
BY_NAME: Dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}


def nearest(name: str) -> Optional[str]:
    found = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_error(name: str) -> ConfigError:
    near = nearest(name)
    hint = "did you mean %r? " % near if near else ""
    return ConfigError(name, "a playground attribute: %sthe list is in `playground launch --help`" % hint)


def plain(attr: str, value: str) -> str:
    """One line, no control characters (ssh-keys alone may have several lines)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(attr, "a single line with no control characters", value)
    return value.strip()


def parse_value(name: str, value: str, ctx: Context) -> Any:
    """One attribute's typed value; ConfigError for an unknown name or a bad value."""
    attr = BY_NAME.get(name)
    if attr is None:
        raise unknown_error(name)
    if not isinstance(value, str):
        raise ConfigError(name, "a string value")
    if not attr.multiline:
        value = plain(name, value)
    return attr.parse(name, value, ctx)


def check_together(values: Dict[str, Any]) -> Dict[str, Any]:
    """Rules across attributes, on the typed values by Config field; returns the values completed."""
    out = dict(values)
    if out.get("cloudsql_instance") and "mlflow_backend" not in out:
        out["mlflow_backend"] = "cloudsql"
    if out.get("mlflow_backend") == "cloudsql":
        if not out.get("cloudsql_instance"):
            raise ConfigError("cloudsql-instance", "a connection name when mlflow-backend is cloudsql")
        if not out.get("mlflow_db_password_secret"):
            raise ConfigError("mlflow-db-password-secret", "a Secret Manager secret when mlflow-backend is cloudsql")
    if out.get("role") == "worker" or out.get("airflow_executor") == "CeleryExecutor":
        _check_cluster(out)
    named = (("airflow-port", "airflow_port"), ("mlflow-port", "mlflow_port"),
             ("cloudsql-proxy-port", "cloudsql_proxy_port"))
    ports = [out.get(f, default(n)) for n, f in named] + [POSTGRES_PORT]
    if len(set(ports)) != len(ports):
        # Name an attribute that collides, one that was given rather than defaulted when there is one:
        # mlflow-port=8080 is mlflow-port's fault, not the webserver's default.
        clashing = [(n, f) for (n, f), port in zip(named, ports) if ports.count(port) > 1]
        name = next((n for n, f in clashing if f in values), clashing[0][0])
        raise ConfigError(name, "web, MLflow, proxy (and %d) ports all different" % POSTGRES_PORT, str(ports))
    return out


def _check_cluster(out: Dict[str, Any]) -> None:
    if out.get("role") == "worker" and out.get("airflow_executor") != "CeleryExecutor":
        raise ConfigError("airflow-executor", "CeleryExecutor on a worker (role worker)")
    if not out.get("private_subnet"):
        raise ConfigError("private-subnet", "a private network when airflow-executor is CeleryExecutor")
    if out.get("role") == "worker":
        if not out.get("main_address"):
            raise ConfigError("main-address", "the main machine's address on a worker (role worker)")
        if ipaddress.IPv4Address(out["main_address"]) not in ipaddress.IPv4Network(out["private_subnet"]):
            raise ConfigError("main-address", "an address in private-subnet %s" % out["private_subnet"],
                              out["main_address"])


def parse_attributes(attrs: Dict[str, str], ctx: Context, strict: bool = True) -> Dict[str, Any]:
    """Validate attributes into typed values keyed by Config field. Empty values mean the default.
    strict: an unknown key is an error (the CLI); otherwise it is left out (the agent, which also
    sees project-wide metadata and Google's own keys: see unknown_keys)."""
    values: Dict[str, Any] = {}
    for name in sorted(attrs):
        if name not in BY_NAME:
            if strict:
                raise unknown_error(name)
            continue
        value = attrs[name]
        if not isinstance(value, str):
            raise ConfigError(name, "a string value")
        if not (value if BY_NAME[name].multiline else plain(name, value)):
            continue
        values[BY_NAME[name].field] = parse_value(name, value, ctx)
    return check_together(values)


def unknown_keys(attrs: Dict[str, str]) -> List[str]:
    """Keys that are neither ours nor Google's: most likely a misspelt attribute."""
    return sorted(k for k in attrs if k not in BY_NAME and k not in GOOGLE_KEYS and not k.startswith("google-"))


def default(name: str) -> Any:
    """An attribute's default value, as the agent uses it."""
    return BY_NAME[name].value


def markdown_table() -> str:
    """The README's attribute table."""
    lines = ["| attribute | default | expected | meaning |", "| --- | --- | --- | --- |"]
    for a in ATTRIBUTES:
        lines.append("| `%s` | %s | %s | %s |" % (a.name, a.default_text, a.expected, a.meaning))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
