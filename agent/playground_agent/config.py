"""Instance metadata validated into one Config object, with the attribute schema (schema.py).

Every attribute is checked before anything is written; errors name the attribute
and what was expected.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

from .schema import ZONE_RE, ConfigError, Context, SshKey, default, parse_attributes, parse_value

__all__ = ["Config", "ConfigError", "SshKey", "parse", "parse_ssh_keys"]

ZONEINFO = "/usr/share/zoneinfo"


@dataclass
class Config:
    instance_id: str
    instance_name: str
    project_id: str
    zone: str
    region: str
    # Every other field is an attribute's, with the schema's default.
    dags_bucket: str = default("dags-bucket")
    logs_bucket: str = default("logs-bucket")
    artifacts_root: str = default("artifacts-root")
    cloudsql_instance: str = default("cloudsql-instance")
    cloudsql_proxy_port: int = default("cloudsql-proxy-port")
    mlflow_backend: str = default("mlflow-backend")
    mlflow_db_name: str = default("mlflow-db-name")
    mlflow_db_user: str = default("mlflow-db-user")
    mlflow_db_password_secret: str = default("mlflow-db-password-secret")
    airflow_admin_user: str = default("airflow-admin-user")
    airflow_executor: str = default("airflow-executor")
    role: str = default("role")
    private_subnet: str = default("private-subnet")
    main_address: str = default("main-address")
    cluster_secret: str = default("cluster-secret")
    worker_concurrency: int = default("worker-concurrency")
    airflow_schedulers: int = default("airflow-schedulers")
    airflow_parallelism: int = default("airflow-parallelism")
    timezone: str = default("timezone")
    lineage: str = default("lineage")
    airflow_secrets: str = default("airflow-secrets")
    retention_days: int = default("retention-days")
    autostop_minutes: int = default("autostop")
    telemetry: str = default("telemetry")
    backup_to: str = default("backup-to")
    backup_at: str = default("backup-at")
    backup_keep: int = default("backup-keep")
    airflow_port: int = default("airflow-port")
    mlflow_port: int = default("mlflow-port")
    ssh_keys: List[SshKey] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


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
    value = merged_attributes(doc).get("ssh-keys", "")
    return parse_value("ssh-keys", value, Context(known_zone=lambda z: False)) if value else []


def zone_files(zoneinfo: str = ZONEINFO) -> Context:
    """A time zone is known when the image's tzdata has its file."""
    return Context(known_zone=lambda z: os.path.isfile(os.path.join(zoneinfo, z)))


def parse(doc: Dict[str, Any], zoneinfo: str = ZONEINFO) -> Config:
    """Validate the recursive metadata document into a Config; raise ConfigError."""
    instance = doc.get("instance") or {}
    project = doc.get("project") or {}
    attrs = merged_attributes(doc)

    instance_id = str(instance.get("id", "")).strip()
    if not re.match(r"^[0-9A-Za-z-]{1,64}$", instance_id):
        raise ConfigError("instance/id", "the instance id from the metadata server", instance_id)
    name = str(instance.get("name", "")) or "playground"
    if not re.match(r"^[a-z][a-z0-9-]{0,62}$", name):
        raise ConfigError("instance/name", "an instance name of a-z 0-9 -", name)
    zone = str(instance.get("zone", "")).rsplit("/", 1)[-1]
    if not ZONE_RE.match(zone):
        raise ConfigError("instance/zone", "a zone such as europe-west2-b", zone)
    if not attrs.get("gcp-project", "").strip():
        attrs["gcp-project"] = str(project.get("projectId", ""))
        if not attrs["gcp-project"]:
            raise ConfigError("gcp-project", "a GCP project id (6-30 of a-z 0-9 -, starting with a letter)", "")
    values = parse_attributes(attrs, zone_files(zoneinfo), strict=False)
    return Config(instance_id=instance_id, instance_name=name, zone=zone, region=zone[:-2], **values)
