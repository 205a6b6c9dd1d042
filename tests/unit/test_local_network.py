"""Local addresses already taken on this machine: launch skips them, a boot refuses them, nothing is made.

Runs in a private network namespace (`unshare --net`) so the taken addresses are
set up there, never on this machine's own interfaces.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare to make a private network namespace")

PROBE = r"""
import json, subprocess, sys
from playground.errors import PlaygroundError
from playground.local import instance, netns

a, b = int(sys.argv[1]), int(sys.argv[2])
# The private namespace's own loopback holds the addresses (no dummy links on every kernel).
for slot in (a, b):
    subprocess.run(["ip", "addr", "add", "10.213.%d.1/30" % slot, "dev", "lo"], check=True)
out = {"slot": instance.free_slot()}
try:
    netns.create(a)
    out["error"] = None
except PlaygroundError as exc:
    out["error"] = str(exc)
out["netns_made"] = netns.exists(a)
out["veth_made"] = netns.link_exists("pgv%dh" % a)
print(json.dumps(out))
"""


def test_taken_addresses_are_skipped_by_launch_and_refused_by_a_boot(tmp_path):
    env = dict(os.environ, PLAYGROUND_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(str(REPO / d) for d in ("cli", "agent")))
    # Slots real instances hold (their namespaces are global) are skipped anyway: take the next free ones.
    free = [s for s in range(1, 250) if not os.path.exists(f"/run/netns/playground-{s}")]
    a, b, expected = free[:3]
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", PROBE, str(a), str(b)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["slot"] == expected, "slots whose address is taken are skipped"
    assert got["error"] == f"address 10.213.{a}.1 is already used on this machine"
    assert not got["netns_made"] and not got["veth_made"], "a refused boot makes nothing"


ISOLATION = r"""
import json, socket, subprocess, sys, threading
from playground.local import netns

a, b = int(sys.argv[1]), int(sys.argv[2])
na, nb = netns.names(a), netns.names(b)
netns.create(a, (80,))
# Another instance's end, and a service this machine runs on every address.
subprocess.run(["ip", "addr", "add", nb["host_ip"] + "/32", "dev", "lo"], check=True)
listeners = []
for host, port in ((na["host_ip"], 80), (nb["host_ip"], 80), ("0.0.0.0", 2024)):
    s = socket.create_server((host, port))
    threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
    listeners.append(s)

def reach(host, port):
    probe = "import socket; socket.create_connection((%r, %d), timeout=1.5); print('open')" % (host, port)
    out = subprocess.run(["ip", "netns", "exec", na["netns"], sys.executable, "-c", probe],
                         capture_output=True, text=True)
    return out.stdout.strip() == "open"

out = {"own metadata": reach(na["host_ip"], 80),
       "other instance's metadata": reach(nb["host_ip"], 80),
       "host wildcard service": reach(na["host_ip"], 2024),
       "this machine to the instance": False}
# This machine still opens connections into the instance (SSH, tunnels): the replies pass.
srv = subprocess.Popen(["ip", "netns", "exec", na["netns"], sys.executable, "-c",
                        "import socket; s = socket.create_server((%r, 2222)); print('up', flush=True); "
                        "s.accept()[0].close()" % na["inst_ip"]], stdout=subprocess.PIPE, text=True)
srv.stdout.readline()
socket.create_connection((na["inst_ip"], 2222), timeout=3).close()
out["this machine to the instance"] = True
srv.wait(timeout=5)
out["removed"] = netns.remove(a)
out["table left"] = subprocess.run(["nft", "list", "table", "inet", netns.table(a)],
                                   capture_output=True).returncode == 0
print(json.dumps(out))
"""


def test_an_instance_reaches_only_its_own_metadata_server_on_this_machine(tmp_path):
    """Issue 18: from inside an instance's namespace, another instance's metadata server and a service this
    machine runs on a wildcard address are unreachable; its own metadata server is not, and this machine's
    connections into it still work. Run in a private namespace: its nftables ruleset is its own."""
    if not shutil.which("nft"):
        pytest.skip("nft is not installed (scripts/install.sh installs nftables)")
    env = dict(os.environ, PLAYGROUND_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(str(REPO / d) for d in ("cli", "agent")))
    free = [s for s in range(1, 250) if not os.path.exists(f"/run/netns/playground-{s}")]
    a, b = free[:2]
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", ISOLATION, str(a), str(b)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["own metadata"] and got["this machine to the instance"], got
    assert not got["other instance's metadata"] and not got["host wildcard service"], got
    assert f"nftables table playground-{a}" in got["removed"] and not got["table left"]
