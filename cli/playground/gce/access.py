"""The ways into a playground VM: SSH through IAP (gcloud as the gateway), the web ports, the one running VM
a command means, and what `status` shows before SSH."""
from __future__ import annotations

import os
from typing import Optional

from ..errors import PlaygroundError
from .compute import playgrounds
from .vm_settings import GceSettings


def ssh_user() -> str:
    """The login gcloud registers: PLAYGROUND_SSH_USER (e.g. an OS Login name), else the local user."""
    return os.environ.get("PLAYGROUND_SSH_USER") or os.environ.get("USER", "playground")


def ssh_target(s: GceSettings, row: dict):
    """How fabric reaches a GCE playground: IAP TCP forwarding (no external IP), the OS Login or
    ssh-keys key gcloud manages in ~/.ssh/google_compute_engine."""
    from ..remote import Target, iap_proxy_command

    key = os.path.expanduser("~/.ssh/google_compute_engine")
    if not os.path.exists(key):
        raise PlaygroundError(f"SSH key missing: {key}; create it and register it once with `gcloud compute ssh "
                              f"{row['name']} --zone {row['zone']} --project {s.project} --tunnel-through-iap`")
    return Target(name=row["name"], host=row["name"], user=ssh_user(), key_file=key,
                  known_hosts=os.path.expanduser("~/.ssh/google_compute_known_hosts"),
                  proxy_command=iap_proxy_command(row["name"], row["zone"], s.project))


def ssh_args(s: GceSettings, row: dict) -> list[str]:
    """An interactive `ssh` through the same IAP gateway."""
    t = ssh_target(s, row)
    return ["ssh", "-i", t.key_file, "-o", f"ProxyCommand={t.proxy_command}", "-o",
            f"UserKnownHostsFile={t.known_hosts}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", f"{t.user}@{t.host}"]


def web_ports(row: dict) -> dict[str, int]:
    from ..attributes import web_ports as ports

    return ports(row.get("attributes", {}))


def running_row(s: GceSettings, name: Optional[str]) -> dict:
    """The one running GCE playground a command means (by name, else the only one)."""
    rows = playgrounds(s, name)
    where = f"{s.project}/{s.zone}" if s.zone_chosen else f"{s.project} (every zone)"
    if not rows:
        raise PlaygroundError(f"no GCE playground {name + ' ' if name else ''}in {where} "
                              f"(see `playground list --project {s.project}`)")
    if len(rows) > 1:
        raise PlaygroundError(f"several GCE playgrounds in {where}: pass --name ("
                              + ", ".join(r["name"] for r in rows) + ")")
    row = rows[0]
    if row["state"] != "running":
        raise PlaygroundError(f"instance {row['name']} is {row['state']}: `playground start --provider gce "
                              f"--project {s.project} --zone {row['zone']} --name {row['name']}`")
    return row


def machine(s: GceSettings, row: dict):
    """What `playground status` needs, from an instances.list row; SSH problems become the row's error."""
    from ..status import Machine

    m = Machine(name=row["name"], provider="gce", project=row["project"], zone=row["zone"],
                state="running" if row["state"] == "running" else row["state"], machine_type=row["machine_type"],
                image=row.get("image", ""), profile=row["profile"], address=row["address"], started_at=None,
                start_command=f"playground start --provider gce --project {s.project} --zone {row['zone']} "
                              f"--name {row['name']}")
    if m.state == "running":
        try:
            m.target = ssh_target(s, row)
        except PlaygroundError as exc:
            m.state, m.error = "unreachable", str(exc)
    return m
