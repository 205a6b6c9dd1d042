"""The nightly stop's two kinds, each apply (idempotent), show and remove: Cloud Scheduler jobs that call the
Compute API's instances.stop / instances.start with an OAuth token of the instance's service account (the
default), or a Compute Engine instance schedule resource policy (`--method resource-policy`, for projects
without Cloud Scheduler)."""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import PlaygroundError
from . import compute
from .compute import GceSettings
from .google import reachable
from .schedule_spec import Spec

Report = Callable[[str], None]
TOKEN_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def rest(http, verb: str, url: str, body: Optional[dict] = None, what: str = "call") -> dict:
    resp = http.request(verb, url, json=body, timeout=30)  # unreachable: one line from @reachable
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    if resp.status_code != 200:
        msg = (doc.get("error") or {}).get("message", resp.text[:200]).strip()
        raise PlaygroundError(f"{what} failed ({resp.status_code}): {msg}")
    return doc


# The jobs call instances.stop and instances.start with the OAuth token of their service account
# (the instance's own, unless --service-account), so that account needs compute.instances.stop and
# .start. These predefined roles hold both (https://cloud.google.com/compute/docs/access/iam).
STOP_START_ROLES = ("roles/owner", "roles/editor", "roles/compute.admin", "roles/compute.instanceAdmin",
                    "roles/compute.instanceAdmin.v1")


@reachable("cloudresourcemanager")
def account_warning(s: GceSettings, account: str, report: Report) -> Optional[str]:
    """None when the project's IAM policy gives the jobs' account a role that may stop and start VMs;
    otherwise a warning with the grant command (also when the policy cannot be read)."""
    from .google import root, session

    grant = (f"gcloud projects add-iam-policy-binding {s.project} --member=serviceAccount:{account} "
             "--role=roles/compute.instanceAdmin.v1")
    report(f"checking that {account} may stop and start the VM")
    try:
        policy = rest(session(), "POST", f"{root('cloudresourcemanager')}/v3/projects/{s.project}:getIamPolicy",
                       {"options": {"requestedPolicyVersion": 3}}, what="reading the project's IAM policy")
    except PlaygroundError as exc:
        return (f"could not check that {account} may stop and start the VM ({exc}); without "
                f"compute.instances.stop/start the jobs fail: {grant}")
    member = f"serviceAccount:{account}"
    roles = {b.get("role", "") for b in policy.get("bindings", []) if member in b.get("members", [])
             and not b.get("condition")}
    if roles & set(STOP_START_ROLES):
        return None
    custom = sorted(r for r in roles if not r.startswith("roles/"))
    unseen = f" (custom roles not checked: {', '.join(custom)})" if custom else ""
    return (f"{account} has no role with compute.instances.stop/start in project {s.project}'s IAM policy"
            f"{unseen}, so the jobs will fail (ignore this if it is granted on a folder or the organization): "
            f"{grant}")


# ---------------------------------------------------------------- Cloud Scheduler

def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def job_name(s: GceSettings, instance: str, action: str, location: str) -> str:
    return f"projects/{s.project}/locations/{location}/jobs/playground-{instance}-{action}"


def target_uri(s: GceSettings, instance: str, action: str) -> str:
    """The Compute API call the job makes (always Google's endpoint: the job runs in Google's cloud)."""
    return f"https://compute.googleapis.com/compute/v1/projects/{s.project}/zones/{s.zone}/instances/{instance}/{action}"


def _instance(s: GceSettings, instance: str):
    from google.api_core import exceptions as gex

    instances, _, _ = compute._clients()
    try:
        return instances.get(project=s.project, zone=s.zone, instance=instance)
    except gex.NotFound as exc:
        raise PlaygroundError(f"no instance {instance} in project {s.project} zone {s.zone} "
                              "(see `playground list --provider gce`)") from exc
    except gex.GoogleAPICallError as exc:
        raise compute.explain(exc, s, instance) from exc


def _scheduler():
    from google.cloud import scheduler_v1

    from .google import client_kwargs

    return scheduler_v1.CloudSchedulerClient(**client_kwargs("cloudscheduler"))


def _job(s: GceSettings, instance: str, action: str, cron: str, tz: str, account: str, location: str):
    from google.cloud import scheduler_v1

    return scheduler_v1.Job(
        name=job_name(s, instance, action, location),
        description=f"playground: {action} {instance} ({s.project}/{s.zone})",
        schedule=cron, time_zone=tz,
        http_target=scheduler_v1.HttpTarget(
            uri=target_uri(s, instance, action), http_method=scheduler_v1.HttpMethod.POST,
            oauth_token=scheduler_v1.OAuthToken(service_account_email=account, scope=TOKEN_SCOPE)))


def _same_job(have, want) -> bool:
    a, b = have.http_target, want.http_target
    return (have.schedule, have.time_zone, a.uri, a.http_method, a.oauth_token.service_account_email,
            a.oauth_token.scope) == (want.schedule, want.time_zone, b.uri, b.http_method,
                                     b.oauth_token.service_account_email, b.oauth_token.scope)


@reachable("cloudscheduler")
def apply_scheduler(s: GceSettings, instance: str, spec: Spec, report: Report, location: str = "",
                    account: str = "", notice: Optional[Report] = None) -> list[tuple[str, str]]:
    """Create, update or remove the stop/start jobs so they match spec. Returns (job, what was done);
    notice gets what the user should read (the jobs' account without the stop/start permission)."""
    from google.api_core import exceptions as gex
    from google.protobuf import field_mask_pb2

    location = location or region_of(s.zone)
    if not account:
        report(f"reading {instance}")
        accounts = _instance(s, instance).service_accounts
        if not accounts:
            raise PlaygroundError(f"instance {instance} has no service account for the jobs' OAuth token: "
                                  "pass --service-account EMAIL")
        account = accounts[0].email
    warning = account_warning(s, account, report)
    if warning and notice:
        notice(warning)
    client = _scheduler()
    done = []
    wanted = spec.crons()
    try:
        for action in ("stop", "start"):
            name = job_name(s, instance, action, location)
            short = name.rsplit("/", 1)[-1]
            try:
                have = client.get_job(name=name)
            except gex.NotFound:
                have = None
            if action not in wanted:
                if have is not None:
                    client.delete_job(name=name)
                    done.append((short, "removed"))
                continue
            want = _job(s, instance, action, wanted[action], spec.tz, account, location)
            if have is None:
                report(f"creating {short}")
                client.create_job(parent=f"projects/{s.project}/locations/{location}", job=want)
                done.append((short, "created"))
            elif _same_job(have, want):
                done.append((short, "unchanged"))
            else:
                report(f"updating {short}")
                mask = field_mask_pb2.FieldMask(paths=["description", "schedule", "time_zone", "http_target"])
                client.update_job(job=want, update_mask=mask)
                done.append((short, "updated"))
    except gex.GoogleAPICallError as exc:
        raise _explain_scheduler(exc, s) from exc
    return done


def _explain_scheduler(exc, s: GceSettings) -> PlaygroundError:
    msg = (getattr(exc, "message", None) or str(exc)).strip()
    if exc.code == 403 and ("has not been used" in msg or "disabled" in msg):
        return PlaygroundError(f"the Cloud Scheduler API is not enabled in project {s.project}: "
                               f"gcloud services enable cloudscheduler.googleapis.com --project {s.project}")
    if exc.code == 403:
        return PlaygroundError(f"permission denied in project {s.project}: {msg} Grant it with: gcloud projects "
                               f"add-iam-policy-binding {s.project} --member=user:$(gcloud config get-value "
                               "account) --role=roles/cloudscheduler.admin")
    return PlaygroundError(f"Cloud Scheduler API error ({exc.code}): {msg}")


@reachable("cloudscheduler")
def show_scheduler(s: GceSettings, instance: str, location: str = "") -> list[dict]:
    from google.api_core import exceptions as gex

    location = location or region_of(s.zone)
    client = _scheduler()
    rows = []
    for action in ("stop", "start"):
        try:
            job = client.get_job(name=job_name(s, instance, action, location))
        except gex.NotFound:
            continue
        except gex.GoogleAPICallError as exc:
            raise _explain_scheduler(exc, s) from exc
        rows.append({"action": action, "cron": job.schedule, "time_zone": job.time_zone,
                     "where": job.name, "target": job.http_target.uri})
    return rows


@reachable("cloudscheduler")
def remove_scheduler(s: GceSettings, instance: str, location: str = "") -> list[str]:
    from google.api_core import exceptions as gex

    location = location or region_of(s.zone)
    client = _scheduler()
    removed = []
    for action in ("stop", "start"):
        name = job_name(s, instance, action, location)
        try:
            client.delete_job(name=name)
            removed.append(name)
        except gex.NotFound:
            pass
        except gex.GoogleAPICallError as exc:
            raise _explain_scheduler(exc, s) from exc
    return removed


# ---------------------------------------------------------------- instance schedule resource policy

def policy_name(instance: str) -> str:
    return f"playground-{instance}-schedule"[:63]


def _policy_clients():
    from google.cloud import compute_v1

    from .google import client_kwargs

    kw = client_kwargs("compute")
    return compute_v1.ResourcePoliciesClient(**kw), compute_v1.RegionOperationsClient(**kw)


def _policy(s: GceSettings, instance: str, spec: Spec):
    from google.cloud import compute_v1

    sched = compute_v1.ResourcePolicyInstanceSchedulePolicySchedule
    policy = compute_v1.ResourcePolicyInstanceSchedulePolicy(time_zone=spec.tz,
                                                             vm_stop_schedule=sched(schedule=spec.stop))
    if spec.start:
        policy.vm_start_schedule = sched(schedule=spec.start)
    return compute_v1.ResourcePolicy(name=policy_name(instance), description=f"playground: schedule of {instance}",
                                     instance_schedule_policy=policy)


def _same_policy(have, want) -> bool:
    a, b = have.instance_schedule_policy, want.instance_schedule_policy
    return (a.time_zone, a.vm_stop_schedule.schedule, a.vm_start_schedule.schedule) == \
        (b.time_zone, b.vm_stop_schedule.schedule, b.vm_start_schedule.schedule)


@reachable("compute")
def apply_policy(s: GceSettings, instance: str, spec: Spec, report: Report) -> list[tuple[str, str]]:
    """Create or update the instance schedule policy and attach it to the instance."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    region = region_of(s.zone)
    inst = _instance(s, instance)
    policies, region_ops = _policy_clients()
    instances, _, zone_ops = compute._clients()
    want = _policy(s, instance, spec)
    done = []
    try:
        try:
            have = policies.get(project=s.project, region=region, resource_policy=want.name)
        except gex.NotFound:
            have = None
        if have is None:
            report(f"creating resource policy {want.name}")
            op = policies.insert(project=s.project, region=region, resource_policy_resource=want)
            compute.wait(region_ops, s, op, report, f"create {want.name}", region=region)
            done.append((want.name, "created"))
        elif _same_policy(have, want):
            done.append((want.name, "unchanged"))
        else:
            report(f"updating resource policy {want.name}")
            op = policies.patch(project=s.project, region=region, resource_policy=want.name,
                                resource_policy_resource=want)
            compute.wait(region_ops, s, op, report, f"update {want.name}", region=region)
            done.append((want.name, "updated"))
        if not any(link.rsplit("/", 1)[-1] == want.name for link in inst.resource_policies):
            report(f"attaching {want.name} to {instance}")
            link = f"projects/{s.project}/regions/{region}/resourcePolicies/{want.name}"
            op = instances.add_resource_policies(
                project=s.project, zone=s.zone, instance=instance,
                instances_add_resource_policies_request_resource=compute_v1.InstancesAddResourcePoliciesRequest(
                    resource_policies=[link]))
            compute.wait(zone_ops, s, op, report, f"attach {want.name}")
            done.append((f"{instance} <- {want.name}", "attached"))
    except gex.GoogleAPICallError as exc:
        raise compute.explain(exc, s, instance) from exc
    return done


@reachable("compute")
def show_policy(s: GceSettings, instance: str) -> list[dict]:
    from google.api_core import exceptions as gex

    policies, _ = _policy_clients()
    region = region_of(s.zone)
    try:
        have = policies.get(project=s.project, region=region, resource_policy=policy_name(instance))
    except gex.NotFound:
        return []
    except gex.GoogleAPICallError as exc:
        raise compute.explain(exc, s, instance) from exc
    isp = have.instance_schedule_policy
    where = f"projects/{s.project}/regions/{region}/resourcePolicies/{have.name}"
    rows = [{"action": "stop", "cron": isp.vm_stop_schedule.schedule, "time_zone": isp.time_zone, "where": where,
             "target": instance}]
    if isp.vm_start_schedule.schedule:
        rows.append({"action": "start", "cron": isp.vm_start_schedule.schedule, "time_zone": isp.time_zone,
                     "where": where, "target": instance})
    return rows


@reachable("compute")
def remove_policy(s: GceSettings, instance: str, report: Report) -> list[str]:
    """Detach the policy from the instance (a policy in use cannot be deleted), then delete it."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    region = region_of(s.zone)
    name = policy_name(instance)
    policies, region_ops = _policy_clients()
    instances, _, zone_ops = compute._clients()
    removed = []
    try:
        inst = instances.get(project=s.project, zone=s.zone, instance=instance)
        attached = [link for link in inst.resource_policies if link.rsplit("/", 1)[-1] == name]
    except gex.NotFound:
        attached = []
    try:
        if attached:
            op = instances.remove_resource_policies(
                project=s.project, zone=s.zone, instance=instance,
                instances_remove_resource_policies_request_resource=compute_v1.InstancesRemoveResourcePoliciesRequest(
                    resource_policies=attached))
            compute.wait(zone_ops, s, op, report, f"detach {name}")
            removed.append(f"{instance} <- {name}")
        try:
            op = policies.delete(project=s.project, region=region, resource_policy=name)
        except gex.NotFound:
            return removed
        compute.wait(region_ops, s, op, report, f"delete {name}", region=region)
        removed.append(f"projects/{s.project}/regions/{region}/resourcePolicies/{name}")
    except gex.GoogleAPICallError as exc:
        raise compute.explain(exc, s, instance) from exc
    return removed
