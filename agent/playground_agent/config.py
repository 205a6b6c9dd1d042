"""Instance metadata validated into one Config object.

Every attribute is checked against a strict pattern before anything is written:
the values end up in env files and unit drop-ins, so a newline or a `..` must
never get through. Errors name the attribute and what was expected.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

ZONEINFO = "/usr/share/zoneinfo"


class ConfigError(Exception):
    def __init__(self, attribute: str, expected: str, value: Optional[str] = None) -> None:
        self.attribute = attribute
        self.expected = expected
        shown = "" if value is None else " (got %r)" % (value[:60],)
        super().__init__("metadata attribute %r: expected %s%s" % (attribute, expected, shown))


@dataclass
class SshKey:
    user: str
    key: str


@dataclass
class Config:
    instance_id: str
    instance_name: str
    project_id: str
    zone: str
    region: str
    dags_bucket: str = ""
    logs_bucket: str = ""
    artifacts_root: str = "/var/lib/playground/mlflow-artifacts"
    cloudsql_instance: str = ""
    cloudsql_proxy_port: int = 3309
    mlflow_backend: str = "local"
    mlflow_db_name: str = "mlflow"
    mlflow_db_user: str = "mlflow"
    mlflow_db_password_secret: str = ""
    airflow_admin_user: str = "admin"
    airflow_executor: str = "LocalExecutor"
    airflow_schedulers: int = 1
    # LocalExecutor starts this many worker processes up front: 8 keeps an idle
    # machine light; raise it with the airflow-parallelism attribute.
    airflow_parallelism: int = 8
    timezone: str = "UTC"
    lineage: str = "on"  # every task recorded in MLflow by the lineage plugin
    airflow_port: int = 8080
    mlflow_port: int = 5000
    ssh_keys: List[SshKey] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
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
EXECUTORS = ("LocalExecutor", "SequentialExecutor")
BACKENDS = ("local", "cloudsql")


def _plain(attr: str, value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(attr, "a single line with no control characters", value)
    return value.strip()


def _bucket(attr: str, value: str) -> str:
    name = value[len("gs://"):] if value.startswith("gs://") else value
    name = name.rstrip("/")
    if not BUCKET_RE.match(name) or ".." in name:
        raise ConfigError(attr, "a GCS bucket name (3-63 of a-z 0-9 . _ -, no '..', no path)", value)
    return name


def _int(attr: str, value: str, lo: int, hi: int) -> int:
    if not re.match(r"^[0-9]{1,6}$", value) or not lo <= int(value) <= hi:
        raise ConfigError(attr, "an integer from %d to %d" % (lo, hi), value)
    return int(value)


def _artifacts_root(value: str) -> str:
    attr = "artifacts-root"
    if value.startswith("gs://"):
        rest = value[len("gs://"):].rstrip("/")
        bucket, _, prefix = rest.partition("/")
        _bucket(attr, bucket)
        if prefix and (not re.match(r"^[A-Za-z0-9_./-]+$", prefix) or ".." in prefix.split("/")):
            raise ConfigError(attr, "gs://BUCKET[/PREFIX] with a plain prefix", value)
        return "gs://" + rest
    if not LOCAL_PATH_RE.match(value) or ".." in value.split("/"):
        raise ConfigError(attr, "gs://BUCKET[/PREFIX] or an absolute local path without '..'", value)
    return value.rstrip("/") or "/"


def _timezone(value: str, zoneinfo: str) -> str:
    if value == "UTC":
        return value
    if not TZ_RE.match(value) or not os.path.isfile(os.path.join(zoneinfo, value)):
        raise ConfigError("timezone", "an IANA time zone such as Europe/London", value)
    return value


def _ssh_keys(value: str) -> List[SshKey]:
    keys = []
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        user, sep, key = line.partition(":")
        if not sep or not SSH_USER_RE.match(user) or not SSH_KEY_RE.match(key.strip()):
            raise ConfigError("ssh-keys", "lines of USER:KEY-TYPE BASE64 [COMMENT]", line)
        keys.append(SshKey(user=user, key=key.strip()))
    return keys


def merged_attributes(doc: Dict[str, Any]) -> Dict[str, str]:
    """Project-wide attributes first, then the instance's win."""
    instance = doc.get("instance") or {}
    project = doc.get("project") or {}
    attrs: Dict[str, str] = {}
    for source in (project.get("attributes") or {}, instance.get("attributes") or {}):
        if not isinstance(source, dict):
            raise ConfigError("attributes", "a JSON object of string values")
        for key, value in source.items():
            if not isinstance(value, str):
                raise ConfigError(str(key), "a string value")
            attrs[key] = value
    return attrs


def parse_ssh_keys(doc: Dict[str, Any]) -> List[SshKey]:
    """Only `ssh-keys`: like the guest agent, access does not wait on the rest of the config."""
    return _ssh_keys(merged_attributes(doc).get("ssh-keys", ""))


def parse(doc: Dict[str, Any], zoneinfo: str = ZONEINFO) -> Config:
    """Validate the recursive metadata document into a Config; raise ConfigError."""
    instance = doc.get("instance") or {}
    project = doc.get("project") or {}
    attrs = merged_attributes(doc)

    def get(name: str) -> str:
        value = attrs.get(name, "")
        if name == "ssh-keys":
            return value
        return _plain(name, value)

    instance_id = str(instance.get("id", "")).strip()
    if not re.match(r"^[0-9A-Za-z-]{1,64}$", instance_id):
        raise ConfigError("instance/id", "the instance id from the metadata server", instance_id)
    name = str(instance.get("name", "")) or "playground"
    if not re.match(r"^[a-z][a-z0-9-]{0,62}$", name):
        raise ConfigError("instance/name", "an instance name of a-z 0-9 -", name)

    project_id = get("gcp-project") or str(project.get("projectId", ""))
    if not PROJECT_RE.match(project_id):
        raise ConfigError("gcp-project", "a GCP project id (6-30 of a-z 0-9 -, starting with a letter)", project_id)
    zone = str(instance.get("zone", "")).rsplit("/", 1)[-1]
    if not ZONE_RE.match(zone):
        raise ConfigError("instance/zone", "a zone such as europe-west2-b", zone)

    cfg = Config(instance_id=instance_id, instance_name=name, project_id=project_id, zone=zone, region=zone[:-2])
    if get("dags-bucket"):
        cfg.dags_bucket = _bucket("dags-bucket", get("dags-bucket"))
    if get("logs-bucket"):
        cfg.logs_bucket = _bucket("logs-bucket", get("logs-bucket"))
    if get("artifacts-root"):
        cfg.artifacts_root = _artifacts_root(get("artifacts-root"))
    if get("cloudsql-instance"):
        value = get("cloudsql-instance")
        if not CLOUDSQL_RE.match(value):
            raise ConfigError("cloudsql-instance", "a connection name PROJECT:REGION:INSTANCE", value)
        cfg.cloudsql_instance = value
        cfg.mlflow_backend = "cloudsql"
    if get("cloudsql-proxy-port"):
        cfg.cloudsql_proxy_port = _int("cloudsql-proxy-port", get("cloudsql-proxy-port"), 1024, 65535)
    if get("mlflow-backend"):
        value = get("mlflow-backend")
        if value not in BACKENDS:
            raise ConfigError("mlflow-backend", "one of " + ", ".join(BACKENDS), value)
        cfg.mlflow_backend = value
    for attr, fld in (("mlflow-db-name", "mlflow_db_name"), ("mlflow-db-user", "mlflow_db_user")):
        if get(attr):
            if not IDENT_RE.match(get(attr)):
                raise ConfigError(attr, "a database identifier (a-z 0-9 _, starting with a letter)", get(attr))
            setattr(cfg, fld, get(attr))
    if get("mlflow-db-password-secret"):
        value = get("mlflow-db-password-secret")
        if not SECRET_RE.match(value):
            raise ConfigError("mlflow-db-password-secret", "projects/P/secrets/S[/versions/V]", value)
        cfg.mlflow_db_password_secret = value
    if cfg.mlflow_backend == "cloudsql":
        if not cfg.cloudsql_instance:
            raise ConfigError("cloudsql-instance", "a connection name when mlflow-backend is cloudsql")
        if not cfg.mlflow_db_password_secret:
            raise ConfigError("mlflow-db-password-secret", "a Secret Manager secret when mlflow-backend is cloudsql")
    if get("airflow-admin-user"):
        if not USER_RE.match(get("airflow-admin-user")):
            raise ConfigError("airflow-admin-user", "a user name of letters, digits, _ . -", get("airflow-admin-user"))
        cfg.airflow_admin_user = get("airflow-admin-user")
    if get("airflow-executor"):
        if get("airflow-executor") not in EXECUTORS:
            raise ConfigError("airflow-executor", "one of " + ", ".join(EXECUTORS), get("airflow-executor"))
        cfg.airflow_executor = get("airflow-executor")
    if get("airflow-schedulers"):
        cfg.airflow_schedulers = _int("airflow-schedulers", get("airflow-schedulers"), 1, 4)
    if get("airflow-parallelism"):
        cfg.airflow_parallelism = _int("airflow-parallelism", get("airflow-parallelism"), 1, 512)
    if get("timezone"):
        cfg.timezone = _timezone(get("timezone"), zoneinfo)
    if get("lineage"):
        if get("lineage") not in ("on", "off"):
            raise ConfigError("lineage", "on or off", get("lineage"))
        cfg.lineage = get("lineage")
    if get("airflow-port"):
        cfg.airflow_port = _int("airflow-port", get("airflow-port"), 1024, 65535)
    if get("mlflow-port"):
        cfg.mlflow_port = _int("mlflow-port", get("mlflow-port"), 1024, 65535)
    ports = [cfg.airflow_port, cfg.mlflow_port, cfg.cloudsql_proxy_port, 5432]
    if len(set(ports)) != len(ports):
        raise ConfigError("airflow-port", "web, MLflow, proxy (and 5432) ports all different", str(ports))
    cfg.ssh_keys = _ssh_keys(attrs.get("ssh-keys", ""))
    return cfg
