"""The nightly stop, what both kinds share: the checks before anything is made (the APIs, the caller's
permissions, the jobs' account's roles) and the status view's next stop and start. The schedule itself is
schedule_spec.py; the Cloud Scheduler jobs and the resource policy, schedule_backends.py."""
from __future__ import annotations

from typing import Callable

from ..errors import PlaygroundError
from .compute import GceSettings
from .google import reachable
from .schedule_backends import rest, show_policy, show_scheduler
from .schedule_spec import local_time_zone, next_runs

Report = Callable[[str], None]
METHODS = ("scheduler", "resource-policy")
# What each method needs: the APIs, and the caller's permissions with the role that grants them.
NEEDS = {
    "scheduler": (["compute.googleapis.com", "cloudscheduler.googleapis.com"], {
        "compute.instances.get": "roles/compute.viewer",
        "cloudscheduler.jobs.get": "roles/cloudscheduler.admin",
        "cloudscheduler.jobs.create": "roles/cloudscheduler.admin",
        "cloudscheduler.jobs.update": "roles/cloudscheduler.admin",
        "cloudscheduler.jobs.delete": "roles/cloudscheduler.admin",
        "iam.serviceAccounts.actAs": "roles/iam.serviceAccountUser",  # the job's token is the instance's account
    }),
    "resource-policy": (["compute.googleapis.com"], {
        "compute.instances.get": "roles/compute.viewer",
        "compute.resourcePolicies.get": "roles/compute.instanceAdmin.v1",
        "compute.resourcePolicies.create": "roles/compute.instanceAdmin.v1",
        "compute.resourcePolicies.use": "roles/compute.instanceAdmin.v1",
        "compute.instances.addResourcePolicies": "roles/compute.instanceAdmin.v1",
    }),
}
API_TITLES = {"compute.googleapis.com": "Compute Engine", "cloudscheduler.googleapis.com": "Cloud Scheduler"}


def next_for(s: GceSettings, instance: str, method: str) -> dict:
    """The status view's schedule: next stop and start in the user's time zone, or why there is none."""
    from zoneinfo import ZoneInfo

    try:
        rows = show_scheduler(s, instance) if method == "scheduler" else show_policy(s, instance)
    except PlaygroundError as exc:
        return {"next_stop": None, "next_start": None, "note": str(exc)}
    mine = ZoneInfo(local_time_zone())
    out: dict = {"next_stop": None, "next_start": None, "method": method}
    for row in rows:
        runs = next_runs(row["cron"], row["time_zone"], 1)
        if runs:
            out[f"next_{row['action']}"] = runs[0].astimezone(mine).strftime("%a %d %b %H:%M %Z")
    if not rows:
        out["note"] = f"no schedule: playground schedule --project {s.project} --name {instance}"
    return out


# ---------------------------------------------------------------- checks before creating anything

@reachable("serviceusage")
def preflight(s: GceSettings, method: str, report: Report) -> None:
    """Say exactly which API or permission is missing, and the command that fixes it."""
    from .google import root, session

    apis, perms = NEEDS[method]
    http = session()
    for api in apis:
        report(f"checking {api} is enabled")
        doc = rest(http, "GET", f"{root('serviceusage')}/v1/projects/{s.project}/services/{api}",
                    what="API check")
        if doc.get("state") != "ENABLED":
            raise PlaygroundError(f"the {API_TITLES.get(api, api)} API is not enabled in project {s.project}: "
                                  f"gcloud services enable {api} --project {s.project}")
    report("checking your permissions")
    doc = rest(http, "POST", f"{root('cloudresourcemanager')}/v3/projects/{s.project}:testIamPermissions",
                {"permissions": sorted(perms)}, what="permission check")
    missing = [p for p in sorted(perms) if p not in set(doc.get("permissions", []))]
    if missing:
        role = perms[missing[0]]
        more = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise PlaygroundError(f"permission {missing[0]} missing in project {s.project}{more}: gcloud projects "
                              f"add-iam-policy-binding {s.project} --member=user:$(gcloud config get-value "
                              f"account) --role={role}")
