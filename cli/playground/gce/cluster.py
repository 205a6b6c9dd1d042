"""A GCE playground with Celery workers (issue 17): what it needs on Google beyond one VM.

- private-subnet: the range of the subnet the VMs take their internal addresses from (subnetworks.get).
- One firewall rule per playground, from its workers' network tag to its main's: Redis, PostgreSQL and
  MLflow's port. "If source tags are specified, the firewall rule applies only to traffic with source IP that
  belongs to a tag listed in source tags", i.e. the primary internal address of a VM carrying the tag
  (https://cloud.google.com/compute/docs/reference/rest/v1/firewalls): nothing outside the playground's
  workers reaches those ports, and the main's services listen on its internal address only.
- The cluster secret in Secret Manager: the broker and database passwords and the Fernet and webserver keys,
  made here and never printed. Instance metadata is readable by anyone who may view the project's instances,
  so they cannot travel there; the VMs' service account is granted roles/secretmanager.secretAccessor on this
  one secret (https://cloud.google.com/secret-manager/docs/manage-access-to-secrets), and the agent reads it
  at every apply (agent cluster.from_secret, which waits out the grant's propagation).
"""
from __future__ import annotations

import base64
import os
import secrets
import string
from typing import Callable

from ..errors import PlaygroundError
from .compute import GceSettings, explain, wait
from .google import reachable, rest

Report = Callable[[str], None]
PORTS = ("6379", "5432")  # Redis, PostgreSQL; MLflow's port is the playground's mlflow-port
ACCESSOR = "roles/secretmanager.secretAccessor"


def main_tag(main: str) -> str:
    return f"{main}-main"  # main is at most 28 characters (launch --workers): a tag is 63 at most


def worker_tag(main: str) -> str:
    return f"{main}-worker"


def rule_name(main: str) -> str:
    return f"playground-{main}-workers"


def secret_id(main: str) -> str:
    return f"playground-{main}-cluster"


def secret_name(project: str, main: str) -> str:
    return f"projects/{project}/secrets/{secret_id(main)}"


def region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@reachable("compute")
def subnet_range(s: GceSettings) -> tuple[str, str]:
    """The IPv4 range the playground's VMs get addresses from: the subnetwork given, else the network's
    subnet of the zone's region, which an auto mode network (such as `default`) names after itself. And a
    warning when the subnet lacks Private Google Access: "When enabled, VMs in this subnetwork without external
    IP addresses can access Google APIs and services" (Subnetwork.privateIpGoogleAccess,
    https://cloud.google.com/vpc/docs/private-google-access); without it (or Cloud NAT) the agents cannot
    read the cluster secret nor the buckets."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1
    from playground_agent import schema

    from ..attributes import CONTEXT
    from .google import client_kwargs

    name = s.subnetwork or s.network
    try:
        got = compute_v1.SubnetworksClient(**client_kwargs("compute")).get(
            project=s.project, region=region(s.zone), subnetwork=name)
    except gex.NotFound as exc:
        raise PlaygroundError(f"subnetwork: no subnet {name} in {region(s.zone)} of project {s.project} (a "
                              "custom mode network needs its subnet named: set subnetwork)") from exc
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc
    try:
        schema.parse_value("private-subnet", got.ip_cidr_range, CONTEXT)
    except schema.ConfigError as exc:
        raise PlaygroundError(f"subnetwork {name}: its range {got.ip_cidr_range} cannot be a playground's "
                              f"private network ({exc}); use a subnet of /16 to /29") from exc
    warning = "" if got.private_ip_google_access else (
        f"subnet {name} in {region(s.zone)} has no Private Google Access: unless a Cloud NAT serves it, the "
        "VMs (no external IP) cannot reach Secret Manager or the buckets; gcloud compute networks subnets "
        f"update {name} --region {region(s.zone)} --project {s.project} --enable-private-ip-google-access")
    return got.ip_cidr_range, warning


def _message(doc: dict) -> str:
    return str((doc.get("error") or {}).get("message", "")).strip()[:200]


@reachable("cloudresourcemanager")
def account_email(s: GceSettings) -> str:
    """The VMs' service account: the one set, else the project's Compute Engine default service account,
    PROJECT_NUMBER-compute@developer.gserviceaccount.com
    (https://cloud.google.com/compute/docs/access/service-accounts#default_service_account)."""
    if s.service_account != "default":
        return s.service_account
    code, doc = rest("GET", "cloudresourcemanager", f"v3/projects/{s.project}")
    if code != 200 or not str(doc.get("name", "")).startswith("projects/"):
        raise PlaygroundError(f"project {s.project}: its number is needed for the default service account and "
                              f"could not be read ({code}: {_message(doc)}); set service_account instead")
    return f"{doc['name'].split('/', 1)[1]}-compute@developer.gserviceaccount.com"


def new_keys() -> dict[str, str]:
    """What the main and its workers share (agent cluster.WORKER_KEYS): letters and digits for the passwords,
    a Fernet key (32 url-safe base64 bytes, as Airflow makes it), a webserver key."""
    alphabet = string.ascii_letters + string.digits
    return {"BROKER_PASSWORD": "".join(secrets.choice(alphabet) for _ in range(32)),
            "DB_PASSWORD": "".join(secrets.choice(alphabet) for _ in range(32)),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(32)}


@reachable("secretmanager")
def make_secret(s: GceSettings, main: str, account: str, report: Report) -> str:
    """The cluster secret with one version of new keys, readable by account alone; its name. Nothing is
    left behind when a step fails."""
    from playground_agent.files import env_text

    sid, name = secret_id(main), secret_name(s.project, main)
    report(f"making the cluster secret {sid} in Secret Manager")
    code, doc = rest("POST", "secretmanager", f"v1/projects/{s.project}/secrets?secretId={sid}",
                      {"replication": {"automatic": {}}, "labels": dict(s.labels(), **{"playground-main": main})})
    if code == 409:
        raise PlaygroundError(f"the secret {name} exists already (a playground {main} not fully destroyed?): "
                              f"gcloud secrets delete {sid} --project {s.project}")
    if code == 403:
        raise PlaygroundError(f"permission denied making {name} ({_message(doc)}): grant yourself "
                              f"roles/secretmanager.admin on project {s.project}, or enable the API: gcloud "
                              f"services enable secretmanager.googleapis.com --project {s.project}")
    if code != 200:
        raise PlaygroundError(f"Secret Manager: making {name} failed ({code}): {_message(doc)}")
    try:
        # Not the agent's own header ("written from instance metadata; edits are overwritten"): here it is not true.
        said = f"# the keys of playground {main} and its workers, made by `playground launch --workers`"
        data = base64.b64encode(env_text(new_keys(), header=said).encode()).decode()
        code, doc = rest("POST", "secretmanager", f"v1/{name}:addVersion", {"payload": {"data": data}})
        if code != 200:
            raise PlaygroundError(f"Secret Manager: adding the keys to {name} failed ({code}): {_message(doc)}")
        report(f"letting {account} read {sid}")
        policy = {"bindings": [{"role": ACCESSOR, "members": [f"serviceAccount:{account}"]}]}
        code, doc = rest("POST", "secretmanager", f"v1/{name}:setIamPolicy", {"policy": policy})
        if code != 200:
            raise PlaygroundError(f"Secret Manager: granting {account} {ACCESSOR} on {name} failed ({code}): "
                                  f"{_message(doc)}")
    except BaseException:
        delete_secret(s, main, report)
        raise
    return name


@reachable("secretmanager")
def delete_secret(s: GceSettings, main: str, report: Report) -> bool:
    """Remove the cluster secret; False when there was none."""
    name = secret_name(s.project, main)
    code, doc = rest("DELETE", "secretmanager", f"v1/{name}")
    if code == 404:
        return False
    if code != 200:
        raise PlaygroundError(f"Secret Manager: deleting {name} failed ({code}): {_message(doc)}; delete it "
                              f"with `gcloud secrets delete {secret_id(main)} --project {s.project}`")
    report(f"deleted the cluster secret {secret_id(main)}")
    return True


def _firewalls():
    from google.cloud import compute_v1

    from .google import client_kwargs

    kw = client_kwargs("compute")
    return compute_v1.FirewallsClient(**kw), compute_v1.GlobalOperationsClient(**kw)


@reachable("compute")
def make_rule(s: GceSettings, main: str, mlflow_port: int, report: Report) -> None:
    """The one firewall rule: the workers' tag to the main's broker, database and MLflow ports."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    firewalls, ops = _firewalls()
    name = rule_name(main)
    report(f"firewall rule {name}: {worker_tag(main)} to {main_tag(main)} on tcp "
           f"{', '.join(PORTS)}, {mlflow_port}")
    rule = compute_v1.Firewall(
        name=name, network=f"projects/{s.project}/global/networks/{s.network}", direction="INGRESS",
        source_tags=[worker_tag(main)], target_tags=[main_tag(main)],
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=[*PORTS, str(mlflow_port)])],
        description=f"playground {main}: its Celery workers reach its broker, database and MLflow")
    try:
        op = firewalls.insert(project=s.project, firewall_resource=rule)
    except gex.Conflict as exc:
        raise PlaygroundError(f"the firewall rule {name} exists already (a playground {main} not fully "
                              f"destroyed?): gcloud compute firewall-rules delete {name} --project "
                              f"{s.project}") from exc
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, main) from exc
    wait(ops, s, op, report, f"firewall rule {name}", global_op=True)


@reachable("compute")
def delete_rule(s: GceSettings, main: str, report: Report) -> bool:
    from google.api_core import exceptions as gex

    firewalls, ops = _firewalls()
    try:
        op = firewalls.delete(project=s.project, firewall=rule_name(main))
    except gex.NotFound:
        return False
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, main) from exc
    wait(ops, s, op, report, f"delete firewall rule {rule_name(main)}", global_op=True)
    return True
