"""Watches one local instance's container or VM and, when it ends by itself (a power-off inside it: idle
autostop, or `poweroff` in a shell), removes what surrounds it as `playground stop` would: the metadata
server, the SSH forward, the network namespace, the overlay mount. So an instance that stopped itself
leaves no process behind and is `stopped` in `list`, as a GCE VM that powers off is TERMINATED.

Started by each boot (boot.boot), one per instance; `stop` and `destroy` end it first, so the two never
tear down at once.

Run: python -m playground.local.reaper INSTANCE_DIR/
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import PlaygroundError
from . import instance

POLL_S = 1.0


def watch(name: str) -> int:
    inst = instance.load(name)
    key = instance.main_pid_key(inst)
    pid = inst.pids.get(key)
    while instance.alive(pid, str(inst.dir)):
        time.sleep(POLL_S)
    try:
        inst = instance.load(name)  # a stop, start or destroy meanwhile changed the record
    except PlaygroundError:
        return 0
    if inst.pids.get(key) != pid:
        return 0
    inst.pids.pop("reaper", None)  # this process: halt must not end it before it has done
    done = instance.halt(inst)
    # Saved onto the record as it is now: a change made while halt ran (an attribute, a VM's firmware) stays.
    fresh = instance.load(name)
    fresh.pids, fresh.state = inst.pids, "stopped"
    fresh.save()
    print(f"{name} powered off by itself: removed " + ", ".join(done), flush=True)
    return 0


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m playground.local.reaper INSTANCE_DIR/")
    sys.exit(watch(Path(sys.argv[1]).name))


if __name__ == "__main__":
    main()
