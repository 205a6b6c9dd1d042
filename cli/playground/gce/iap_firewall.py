"""The one way into a playground VM: SSH from IAP's TCP forwarding range.

Playground VMs (and the Packer build VM) have no external IP and carry the
network tag `allow-iap-ssh`; one firewall rule per network lets IAP reach their
port 22. `ensure` makes it when it is missing and says what to run when the
caller may not.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import PlaygroundError
from .google import client_kwargs
from .operations import explain, wait

IAP_RANGE = "35.235.240.0/20"  # Google's documented source range of IAP TCP forwarding
TAG = "allow-iap-ssh"
Report = Callable[[str], None]


def rule_name(network: str) -> str:
    # Firewall names are per project, rules per network: one name per network.
    return "playground-iap-ssh" if network == "default" else f"playground-iap-ssh-{network}"[:63]


def gcloud_command(project: str, network: str) -> str:
    return (f"gcloud compute firewall-rules create {rule_name(network)} --project {project} --network {network} "
            f"--direction INGRESS --source-ranges {IAP_RANGE} --allow tcp:22 --target-tags {TAG}")


def ensure(s, report: Report) -> Optional[str]:
    """Make the rule for s.network if it is missing. Returns a warning (what to run) when it could not be
    made for lack of permission, None when it is there: the caller goes on either way, since an
    administrator may have opened port 22 to IAP by a rule of another name."""
    from google.api_core import exceptions as gex  # Google's libraries load only when used: --help stays fast
    from google.cloud import compute_v1

    kw = client_kwargs("compute")
    firewalls, ops = compute_v1.FirewallsClient(**kw), compute_v1.GlobalOperationsClient(**kw)
    name = rule_name(s.network)
    try:
        firewalls.get(project=s.project, firewall=name)
        return None
    except gex.NotFound:
        pass
    except gex.Forbidden:
        return (f"could not check the firewall rule {name} (permission denied); if SSH through IAP fails, "
                f"ask for it: {gcloud_command(s.project, s.network)}")
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc
    report(f"opening port 22 to IAP ({IAP_RANGE}) for tag {TAG} on network {s.network}")
    rule = compute_v1.Firewall(
        name=name, network=f"projects/{s.project}/global/networks/{s.network}", direction="INGRESS",
        source_ranges=[IAP_RANGE], target_tags=[TAG], allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])],
        description="playground: SSH through IAP TCP forwarding to VMs without an external IP")
    try:
        op = firewalls.insert(project=s.project, firewall_resource=rule)
    except gex.Conflict:
        return None  # made meanwhile by another launch
    except gex.Forbidden:
        return (f"could not create the firewall rule {name} (permission denied); SSH through IAP needs it: "
                f"{gcloud_command(s.project, s.network)}")
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc
    try:
        wait(ops, s, op, report, f"firewall rule {name}", global_op=True)
    except PlaygroundError as exc:
        raise PlaygroundError(f"{exc}; make the rule by hand: {gcloud_command(s.project, s.network)}") from exc
    return None
