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
out = {"slot": instance._free_slot()}
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
