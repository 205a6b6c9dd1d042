"""Idle autostop (issue 16): how long a local instance launched with `autostop` at one minute takes from the
start of its idle time to stopped (its container ended and what surrounded it removed), split into the wait
the setting asks for and the shutdown itself.

Run as root on a machine with a built local image:
    .venv/bin/python bench/autostop.py [--repeat N]
Aim: stopped within the minute plus one check (CHECK_S) and 20 s of shutdown.
"""
from __future__ import annotations

import argparse
import calendar
import json
import time

from common import Row, bench_instance, print_rows
from playground.local import instance
from playground_agent.autostop import CHECK_S

NAME = "pgbench-autostop"
MINUTES = 1


def once() -> tuple[float, float]:
    """(idle start -> power-off decided, power-off decided -> stopped and torn down), seconds."""
    with bench_instance(NAME, {"autostop": str(MINUTES)}) as (inst, _):
        while True:  # nothing but this process's polls touches the machine from here on
            if not instance.is_running(inst):
                break
            time.sleep(0.2)
        while instance.load(NAME).pids:  # the reaper removing the metadata server, network, mount
            time.sleep(0.2)
        stopped = time.time()
        last = json.loads((inst.dir / "upper/var/lib/playground/autostop-last.json").read_text())
        decided = last.get("decided_at") or calendar.timegm(time.strptime(last["at"], "%Y-%m-%dT%H:%M:%SZ"))
        return decided - last["idle_since"], stopped - decided


def measure(repeat: int = 1) -> list[Row]:
    waits, shutdowns = [], []
    for _ in range(repeat):
        wait, shutdown = once()
        waits.append(wait)
        shutdowns.append(shutdown)
    totals = [w + s for w, s in zip(waits, shutdowns, strict=True)]
    return [Row(f"autostop {MINUTES} min: idle start to stopped (s)", totals, aim=MINUTES * 60 + CHECK_S + 20),
            Row("autostop: idle start to power-off decided (s)", waits),
            Row("autostop: power-off to stopped, helpers removed (s)", shutdowns)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print_rows(measure(args.repeat), "Idle autostop")


if __name__ == "__main__":
    main()
