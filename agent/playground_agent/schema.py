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
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Set, Tuple


class ConfigError(Exception):
    def __init__(self, attribute: str, expected: str, value: Optional[str] = None) -> None:
        self.attribute = attribute
        self.expected = expected
        self.value = value
        shown = "" if value is None else " (got %r)" % (value[:60],)
        super().__init__("metadata attribute %r: expected %s%s" % (attribute, expected, shown))


# Google's own rules (https://cloud.google.com/resource-manager/docs/creating-managing-projects):
# a project id is 6-30 lowercase letters, digits or hyphens, starts with a letter and does not end
# with a hyphen. Old domain-scoped ids ("example.com:proj") still exist; the agent accepts them in
# gcp-project, the CLI (which puts the id in a label value, where ':' and '.' are refused) does not.
PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SCOPED_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
CLOUDSQL_RE = re.compile(
    r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]{0,94}$"
)
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
USER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
SECRET_RE = re.compile(r"^projects/[a-z0-9-]+/secrets/[A-Za-z0-9_-]{1,255}(?:/versions/(?:latest|[0-9]+))?$")
TZ_RE = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,2}$")
LOCAL_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]*$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SSH_KEY_RE = re.compile(r"^(ssh-(?:ed25519|rsa)|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/=]+(?: [^\x00-\x1f]*)?$")
EXECUTORS = ("LocalExecutor", "SequentialExecutor", "CeleryExecutor")
ROLES = ("main", "worker")
BACKENDS = ("local", "cloudsql")
POSTGRES_PORT = 5432
AUTOSTOP_MAX_MIN = 1440  # a day: longer than that, the nightly stop comes first

# Keys Google's own guest environment and tools put in instance metadata: not ours, not an error.
GOOGLE_KEYS = ("ssh-keys", "sshKeys", "block-project-ssh-keys", "enable-oslogin", "enable-oslogin-2fa",
               "startup-script", "startup-script-url", "shutdown-script", "shutdown-script-url", "user-data",
               "serial-port-enable", "enable-guest-attributes", "google-logging-enabled",
               "google-monitoring-enabled", "enable-osconfig", "windows-keys")


@dataclass
class SshKey:
    user: str
    key: str


# ------------------------------------------------------------------------------------------ parsers
# Each takes (attribute name, stripped value, context) and returns the typed value or raises.

def _bucket(attr: str, value: str, ctx: "Context") -> str:
    name = value[len("gs://"):] if value.startswith("gs://") else value
    name = name.rstrip("/")
    if not BUCKET_RE.match(name) or ".." in name:
        raise ConfigError(attr, "a GCS bucket name (3-63 of a-z 0-9 . _ -, no '..', no path)", value)
    return name


def _port(attr: str, value: str, ctx: "Context") -> int:
    return int_between(attr, value, 1024, 65535)


def int_between(attr: str, value: str, lo: int, hi: int) -> int:
    if not re.match(r"^[0-9]{1,6}$", value) or not lo <= int(value) <= hi:
        raise ConfigError(attr, "an integer from %d to %d" % (lo, hi), value)
    return int(value)


def _one_of(*choices: str) -> Callable[[str, str, "Context"], str]:
    def parse(attr: str, value: str, ctx: "Context") -> str:
        if value not in choices:
            raise ConfigError(attr, "one of " + ", ".join(choices), value)
        return value
    return parse


def _between(lo: int, hi: int) -> Callable[[str, str, "Context"], int]:
    return lambda attr, value, ctx: int_between(attr, value, lo, hi)


def _autostop(attr: str, value: str, ctx: "Context") -> int:
    """Minutes idle before the machine powers itself off; 0 is off."""
    if value in ("off", "0"):
        return 0
    if not re.match(r"^[0-9]{1,5}$", value) or not 1 <= int(value) <= AUTOSTOP_MAX_MIN:
        raise ConfigError(attr, "off or minutes from 1 to %d" % AUTOSTOP_MAX_MIN, value)
    return int(value)


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_RE = re.compile(r"^(?:daily|[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)$")


def day_set(value: str) -> Set[int]:
    """daily, mon-fri, mon,wed,fri, fri-mon (a range wraps past Sunday) -> day numbers, Monday 0; ValueError
    for anything else. The CLI's --days reads days this way too (playground.gce.schedule.parse_days)."""
    text = value.strip().lower()
    if text == "daily":
        return set(range(7))
    if not DAYS_RE.match(text):
        raise ValueError(value)
    days = set()  # type: Set[int]
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
            raise ValueError(value)
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if sep else a
        days.update(range(a, b + 1) if a <= b else list(range(a, 7)) + list(range(0, b + 1)))
    return days


def calendar_days(value: str) -> str:
    """Days as day_set reads them -> systemd's day list (Mon..Fri, Mon,Wed,Fri; "" for every day);
    ValueError for anything else."""
    days = sorted(day_set(value))
    if len(days) == 7:
        return ""
    runs = []  # type: List[List[int]]
    for d in days:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    names = [DAY_NAMES[d].capitalize() for d in range(7)]
    return ",".join(names[r[0]] + ".." + names[r[-1]] if len(r) > 2 else ",".join(names[d] for d in r)
                    for r in runs)


def _backup_at(attr: str, value: str, ctx: "Context") -> str:
    """[DAYS] HH:MM [ZONE] -> systemd's OnCalendar= (e.g. Mon..Fri *-*-* 20:45:00 Europe/London); a zone
    suffix needs systemd 235+, which every profile's base has."""
    expected = "[DAYS] HH:MM [ZONE], e.g. mon-fri 20:45 Europe/London (DAYS: daily, mon-fri, mon,wed,fri)"
    words = value.split()
    days, zone = "daily", "UTC"
    if words and not re.match(r"^[0-9]", words[0]):
        days = words.pop(0)
    if len(words) == 2:
        zone = words.pop()
    found = re.match(r"^([01][0-9]|2[0-3]):([0-5][0-9])$", words[0]) if len(words) == 1 else None
    if not found:
        raise ConfigError(attr, expected, value)
    try:
        weekdays = calendar_days(days)
    except ValueError:
        raise ConfigError(attr, expected, value) from None
    if zone != "UTC" and (not TZ_RE.match(zone) or not ctx.known_zone(zone)):
        raise ConfigError(attr, "an IANA time zone such as Europe/London after the time", value)
    return ("%s *-*-* %s:%s:00 %s" % (weekdays, found.group(1), found.group(2), zone)).strip()


def _subnet(attr: str, value: str, ctx: "Context") -> str:
    """A private IPv4 network, /16 to /29 (RFC 1918): where the main and its workers talk."""
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        net = None
    if net is None or not net.is_private or not 16 <= net.prefixlen <= 29 or "/" not in value:
        raise ConfigError(attr, "a private IPv4 network such as 10.214.3.0/24 (/16 to /29)", value)
    return str(net)


def _address(attr: str, value: str, ctx: "Context") -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ConfigError(attr, "an IPv4 address such as 10.214.3.2", value) from None


def _gs_url(attr: str, value: str, ctx: "Context") -> str:
    if not value.startswith("gs://"):
        raise ConfigError(attr, "gs://BUCKET[/PREFIX]", value)
    return _artifacts_root(attr, value, ctx)


def _matching(regex: "re.Pattern[str]", expected: str) -> Callable[[str, str, "Context"], str]:
    def parse(attr: str, value: str, ctx: "Context") -> str:
        if not regex.match(value):
            raise ConfigError(attr, expected, value)
        return value
    return parse


def _artifacts_root(attr: str, value: str, ctx: "Context") -> str:
    if value.startswith("gs://"):
        rest = value[len("gs://"):].rstrip("/")
        bucket, _, prefix = rest.partition("/")
        _bucket(attr, bucket, ctx)
        if prefix and (not re.match(r"^[A-Za-z0-9_./-]+$", prefix) or ".." in prefix.split("/")):
            raise ConfigError(attr, "gs://BUCKET[/PREFIX] with a plain prefix", value)
        return "gs://" + rest
    if not LOCAL_PATH_RE.match(value) or ".." in value.split("/"):
        raise ConfigError(attr, "gs://BUCKET[/PREFIX] or an absolute local path without '..'", value)
    return value.rstrip("/") or "/"


def _timezone(attr: str, value: str, ctx: "Context") -> str:
    if value == "UTC":
        return value
    if not TZ_RE.match(value) or not ctx.known_zone(value):
        raise ConfigError(attr, "an IANA time zone such as Europe/London", value)
    return value


def _ssh_keys(attr: str, value: str, ctx: "Context") -> List[SshKey]:
    keys = []
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        user, sep, key = line.partition(":")
        if not sep or not SSH_USER_RE.match(user) or not SSH_KEY_RE.match(key.strip()):
            raise ConfigError(attr, "lines of USER:KEY-TYPE BASE64 [COMMENT]", line)
        keys.append(SshKey(user=user, key=key.strip()))
    return keys


@dataclass
class Context:
    """What a parser may need beyond the value: how to tell a real time zone."""

    known_zone: Callable[[str], bool]


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
              _matching(SCOPED_PROJECT_RE, "a GCP project id (6-30 of a-z 0-9 -, starting with a letter)"),
              shown="the project's id"),
    Attribute("dags-bucket", "dags_bucket", "", "GCS bucket name",
              "DAGs read from its dags/ (gcsfuse on GCE images, else synced every 30 s)",
              _bucket, shown="none (local folder)"),
    Attribute("logs-bucket", "logs_bucket", "", "GCS bucket name", "Airflow task logs written to this bucket",
              _bucket, shown="none (local folder)"),
    Attribute("artifacts-root", "artifacts_root", ARTIFACTS_DIR, "`gs://BUCKET[/PREFIX]` or absolute path",
              "where MLflow stores artifacts", _artifacts_root),
    Attribute("cloudsql-instance", "cloudsql_instance", "", "`PROJECT:REGION:INSTANCE`",
              "Cloud SQL instance the proxy connects to",
              _matching(CLOUDSQL_RE, "a connection name PROJECT:REGION:INSTANCE"),
              shown="none (MLflow on the local PostgreSQL)"),
    Attribute("cloudsql-proxy-port", "cloudsql_proxy_port", 3309, "1024-65535", "the proxy's port on 127.0.0.1",
              _port),
    Attribute("mlflow-backend", "mlflow_backend", "local", ", ".join("`%s`" % b for b in BACKENDS),
              "MLflow's database", _one_of(*BACKENDS), shown="`local` (`cloudsql` when an instance is given)"),
    Attribute("mlflow-db-name", "mlflow_db_name", "mlflow", "identifier", "MLflow's database name",
              _matching(IDENT_RE, "a database identifier (a-z 0-9 _, starting with a letter)")),
    Attribute("mlflow-db-user", "mlflow_db_user", "mlflow", "identifier", "MLflow's database user",
              _matching(IDENT_RE, "a database identifier (a-z 0-9 _, starting with a letter)")),
    Attribute("mlflow-db-password-secret", "mlflow_db_password_secret", "", "`projects/P/secrets/S[/versions/V]`",
              "Secret Manager secret holding the MySQL password",
              _matching(SECRET_RE, "projects/P/secrets/S[/versions/V]"), shown="none (required with cloudsql)"),
    Attribute("airflow-admin-user", "airflow_admin_user", "admin", "user name",
              "the Airflow web user created at first boot",
              _matching(USER_RE, "a user name of letters, digits, _ . -")),
    Attribute("airflow-executor", "airflow_executor", "LocalExecutor", ", ".join("`%s`" % e for e in EXECUTORS),
              "Airflow's executor", _one_of(*EXECUTORS)),
    # Worker machines (issue 17): one image, two roles. A worker runs `airflow celery worker` only, with the
    # main's database, broker and DAGs, over the playground's private network.
    Attribute("role", "role", "main", "`main`, `worker`",
              "main: the database, web UIs, schedulers and broker; worker: Celery tasks only (see Workers)",
              _one_of(*ROLES)),
    Attribute("private-subnet", "private_subnet", "", "private IPv4 network, /16-/29",
              "the network of the main and its workers (CeleryExecutor): the broker, PostgreSQL and MLflow's "
              "port listen on the main's address in it, for it only", _subnet, shown="none"),
    Attribute("main-address", "main_address", "", "IPv4 address in `private-subnet`",
              "a worker's main machine", _address, shown="none (required on a worker)"),
    # GCE: the project can read instance metadata, so the cluster's passwords and keys travel in Secret
    # Manager instead; the launcher makes the secret and grants the VMs' account read access to it alone.
    Attribute("cluster-secret", "cluster_secret", "", "`projects/P/secrets/S[/versions/V]`",
              "Secret Manager secret with the cluster's passwords and keys (GCE workers; the launcher makes it)",
              _matching(SECRET_RE, "projects/P/secrets/S[/versions/V]"), shown="none (local: handed over by SSH)"),
    Attribute("worker-concurrency", "worker_concurrency", 8, "1-64", "task slots of a worker (Celery's concurrency)",
              _between(1, 64)),
    Attribute("airflow-schedulers", "airflow_schedulers", 1, "1-4", "scheduler processes", _between(1, 4)),
    # LocalExecutor starts this many worker processes up front: 8 keeps an idle machine light.
    Attribute("airflow-parallelism", "airflow_parallelism", 8, "1-512",
              "task slots (LocalExecutor starts this many workers up front)", _between(1, 512)),
    Attribute("timezone", "timezone", "UTC", "IANA zone", "Airflow's default time zone", _timezone),
    Attribute("lineage", "lineage", "on", "`on`, `off`", "every task recorded in MLflow (see Lineage)",
              _one_of("on", "off")),
    Attribute("airflow-secrets", "airflow_secrets", "metastore", "`metastore`, `secret-manager`",
              "where Airflow looks up connections and variables first: `secret-manager` reads the project's "
              "Secret Manager (`airflow-connections-ID`, `airflow-variables-KEY`), then Airflow's database",
              _one_of("metastore", "secret-manager")),
    Attribute("telemetry", "telemetry", "off", "`on`, `off`",
              "usage data MLflow (server, UI, clients) and other tools send to their makers (see Telemetry)",
              _one_of("on", "off")),
    # Cloud Composer's database maintenance guide suggests starting with a 30-day retention
    # (docs.cloud.google.com/composer/docs/composer-2/cleanup-airflow-database).
    Attribute("retention-days", "retention_days", 30, "1-3650",
              "task logs and Airflow's run history older than this are deleted daily (`airflow db clean`, 2.3+)",
              _between(1, 3650)),
    # SkyPilot's autostop: stop after this many idle minutes (docs.skypilot.co, "Autostop").
    Attribute("autostop", "autostop_minutes", 0, "`off` or 1-1440 (minutes)",
              "the machine powers itself off (a stopped VM on GCE) after this long with no task running or queued "
              "and no SSH session or tunnel open (see Day two)", _autostop, shown="`off`"),
    # The nightly backup (the model: Composer's scheduled snapshots): `playground schedule --backup-to` sets
    # it 15 minutes before the nightly stop, in the stop's days and zone.
    Attribute("backup-to", "backup_to", "", "`gs://BUCKET[/PREFIX]`",
              "a backup of the machine (`playground backup`'s file) written there on `backup-at`, as "
              "`NAME-nightly-YYYYmmdd-HHMMSS.tar` (see Day two)", _gs_url, shown="none (no nightly backup)"),
    Attribute("backup-at", "backup_at", "*-*-* 20:45:00 UTC", "`[DAYS] HH:MM [ZONE]`",
              "when the nightly backup runs (DAYS: `daily`, `mon-fri`, `mon,wed,fri`); a machine off then backs "
              "up at its next start", _backup_at, shown="`daily 20:45 UTC`"),
    Attribute("backup-keep", "backup_keep", 7, "1-365",
              "nightly backups kept in `backup-to`; older ones are deleted (never other objects)", _between(1, 365)),
    Attribute("airflow-port", "airflow_port", 8080, "1024-65535, all ports different",
              "Airflow's web UI on 127.0.0.1", _port),
    Attribute("mlflow-port", "mlflow_port", 5000, "1024-65535, all ports different",
              "MLflow's web UI on 127.0.0.1", _port),
    Attribute("ssh-keys", "ssh_keys", None, "`USER:KEY` lines",
              "installed by the agent where Google's guest agent is absent", _ssh_keys, shown="none",
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
