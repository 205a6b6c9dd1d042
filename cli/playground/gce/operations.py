"""Compute Engine's long-running operations waited on, and its API errors said in one line."""
from __future__ import annotations

import time
from typing import Callable

from ..errors import PlaygroundError
from .vm_settings import GceSettings

Report = Callable[[str], None]


def explain(exc: Exception, s: GceSettings, name: str = "") -> PlaygroundError:
    """A Google API error -> one line naming the cause and the next step."""
    from google.api_core import exceptions as gex

    msg = getattr(exc, "message", None) or str(exc)
    reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if isinstance(exc, gex.Forbidden) and ("accessNotConfigured" in reasons or "has not been used" in msg):
        return PlaygroundError(f"the Compute Engine API is not enabled in project {s.project}: "
                               f"gcloud services enable compute.googleapis.com --project {s.project}")
    if isinstance(exc, gex.Forbidden) and ("quotaExceeded" in reasons or "Quota" in msg):
        return PlaygroundError(f"quota exceeded in project {s.project}: {msg.strip()} Request more at "
                               f"https://console.cloud.google.com/iam-admin/quotas?project={s.project} "
                               "or pick a smaller --machine-type")
    if isinstance(exc, gex.Forbidden):
        return PlaygroundError(f"permission denied in project {s.project}: {msg.strip()} Grant it with: gcloud "
                               f"projects add-iam-policy-binding {s.project} --member=user:YOU "
                               "--role=roles/compute.instanceAdmin.v1")
    if isinstance(exc, gex.Conflict):
        return PlaygroundError(f"instance {name} already exists in {s.zone}: `playground start --provider gce "
                               f"--project {s.project} --name {name}` or destroy it first")
    if isinstance(exc, gex.NotFound):
        return PlaygroundError(f"not found in project {s.project}: {msg.strip()}")
    if isinstance(exc, gex.BadRequest) and "resource.name" in msg:
        return PlaygroundError(f"--name: expected 1-63 of a-z 0-9 -, starting with a letter, got {name!r}")
    if isinstance(exc, gex.GoogleAPICallError):
        return PlaygroundError(f"Compute API error ({exc.code}): {msg.strip()}")
    return PlaygroundError(f"Compute API call failed: {type(exc).__name__}: {exc}")


def wait(ops_client, s: GceSettings, operation, report: Report, what: str, timeout: float = 600,
         region: str = "", global_op: bool = False) -> None:
    """Wait on a zone operation (or, given region, a region operation; with global_op, a global one)
    with our own client; raise its error as one line."""
    name = operation.name
    where = {} if global_op else {"region": region} if region else {"zone": s.zone}
    deadline = time.monotonic() + timeout
    while True:
        op = ops_client.wait(project=s.project, operation=name, **where)
        report(f"{what}: {op.status.name.lower() if hasattr(op.status, 'name') else op.status}")
        if _status(op) == "DONE":
            break
        if time.monotonic() > deadline:
            raise PlaygroundError(f"{what}: operation {name} not done after {timeout:.0f} s")
    if op.error and op.error.errors:
        first = op.error.errors[0]
        if first.code == "ZONE_RESOURCE_POOL_EXHAUSTED" or "does not have enough resources" in first.message:
            raise PlaygroundError(f"zone {s.zone} is out of resources for {s.machine_type}: try another "
                                  "--zone or --machine-type")
        raise PlaygroundError(f"{what} failed: {first.code}: {first.message}")


def _status(op) -> str:
    status = op.status
    return status if isinstance(status, str) else getattr(status, "name", str(status))
