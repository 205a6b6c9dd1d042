"""A network namespace and a veth pair per local instance.

The instance gets 10.213.<slot>.2/30, this machine's end is 10.213.<slot>.1.
An nftables table per instance (inet playground-<slot>) lets it reach only what
it is given on this machine, its own metadata server (port 80 on its end of
the veth), and answer the connections this machine opens (SSH): not another
instance's metadata server, not a service this machine runs on a wildcard
address, and nothing routed beyond this machine. On GCE each VM reaches only
its own metadata server, too.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import PlaygroundError

NETNS_DIR = Path("/run/netns")


def names(slot: int) -> dict[str, str]:
    return {
        "netns": f"playground-{slot}",
        "host_if": f"pgv{slot}h",
        "inst_if": f"pgv{slot}c",
        "host_ip": f"10.213.{slot}.1",
        "inst_ip": f"10.213.{slot}.2",
    }


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PlaygroundError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def exists(slot: int) -> bool:
    return (NETNS_DIR / names(slot)["netns"]).exists()


def link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def address_in_use(ip: str) -> bool:
    return ip in _ip("-o", "addr", "show", check=False).stdout.replace("/", " ").split()


def table(slot: int) -> str:
    return f"playground-{slot}"


def _nft(script: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        proc = subprocess.CompletedProcess(["nft"], 127, "", "nft is not installed (Debian: nftables)")
    if check and proc.returncode != 0:
        raise PlaygroundError(f"nft: {proc.stderr.strip()}")
    return proc


def isolate(slot: int, ports: tuple[int, ...]) -> None:
    """The instance reaches only `ports` on its end of the veth; replies to this machine's own connections pass."""
    n = names(slot)
    given = ", ".join(str(p) for p in ports)
    _nft(f"""table inet {table(slot)} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "{n['host_if']}" ct state established,related accept
    iifname "{n['host_if']}" ip daddr {n['host_ip']} tcp dport {{ {given} }} accept
    iifname "{n['host_if']}" drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "{n['host_if']}" drop
  }}
}}
""")


def create(slot: int, ports: tuple[int, ...] = (80,)) -> dict[str, str]:
    """The namespace, the veth pair and the filter; `ports`: what the instance may reach on this machine."""
    n = names(slot)
    if exists(slot) or link_exists(n["host_if"]):
        raise PlaygroundError(f"network namespace {n['netns']} or link {n['host_if']} already exists")
    if address_in_use(n["host_ip"]):
        raise PlaygroundError(f"address {n['host_ip']} is already used on this machine")
    try:
        _ip("netns", "add", n["netns"])
        _ip("link", "add", n["host_if"], "type", "veth", "peer", "name", n["inst_if"])
        _ip("link", "set", n["inst_if"], "netns", n["netns"])
        _ip("addr", "add", n["host_ip"] + "/30", "dev", n["host_if"])
        _ip("link", "set", n["host_if"], "up")
        _ip("-n", n["netns"], "addr", "add", n["inst_ip"] + "/30", "dev", n["inst_if"])
        _ip("-n", n["netns"], "link", "set", n["inst_if"], "up")
        _ip("-n", n["netns"], "link", "set", "lo", "up")
        _ip("-n", n["netns"], "route", "add", "default", "via", n["host_ip"])
        _nft(f"delete table inet {table(slot)}\n", check=False)  # a leftover of a killed run
        isolate(slot, ports)
    except PlaygroundError:
        remove(slot)
        raise
    return n


def remove(slot: int) -> list[str]:
    """Remove what exists of the slot's network; return what was removed."""
    n = names(slot)
    removed = []
    if link_exists(n["host_if"]):
        _ip("link", "del", n["host_if"], check=False)
        removed.append("link " + n["host_if"])
    if exists(slot):
        _ip("netns", "del", n["netns"], check=False)
        removed.append("netns " + n["netns"])
    if _nft(f"delete table inet {table(slot)}\n", check=False).returncode == 0:
        removed.append("nftables table " + table(slot))
    return removed


# A playground with workers (issue 17): its machines share a bridge of their own, in a namespace of its own,
# as GCE VMs share a VPC subnet. Nothing of it is on this machine's side: no address, no route, no filter
# to pass (the per-instance filter above sees only the instance's link to this machine).
def private_names(net: int) -> dict[str, str]:
    return {"netns": f"playground-net-{net}", "subnet": f"10.214.{net}.0/24", "bridge": "br0"}


def private_ip(net: int, host: int) -> str:
    return f"10.214.{net}.{host}"


def attach_private(slot: int, net: int, host: int) -> str:
    """The instance's second link, on the playground's bridge, with address 10.214.NET.HOST/24 (idempotent)."""
    n, p = names(slot), private_names(net)
    if not (NETNS_DIR / p["netns"]).exists():
        _ip("netns", "add", p["netns"])
        _ip("-n", p["netns"], "link", "add", p["bridge"], "type", "bridge")
        _ip("-n", p["netns"], "link", "set", p["bridge"], "up")
    inst_if, br_if = f"pgp{slot}c", f"pgp{slot}b"
    address = private_ip(net, host)
    if _ip("-n", n["netns"], "link", "show", inst_if, check=False).returncode == 0:
        return address
    _ip("link", "add", inst_if, "netns", n["netns"], "type", "veth", "peer", "name", br_if, "netns", p["netns"])
    _ip("-n", p["netns"], "link", "set", br_if, "master", p["bridge"], "up")
    _ip("-n", n["netns"], "addr", "add", address + "/24", "dev", inst_if)
    _ip("-n", n["netns"], "link", "set", inst_if, "up")
    return address


def remove_private(net: int) -> list[str]:
    p = private_names(net)
    if (NETNS_DIR / p["netns"]).exists():
        _ip("netns", "del", p["netns"], check=False)
        return ["netns " + p["netns"]]
    return []
