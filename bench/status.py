"""`playground status` and `playground tunnel` figures on warm local instances.

Run as root on a machine with a built local image:
    .venv/bin/python bench/status.py [--instances 4] [--repeat 5]
Aims (issue 6): status of one warm instance under 1.5 s; four in parallel under
2x one (a ratio measured within this run); tunnel set-up time is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import Row, bench_instances, print_rows
from playground import remote, status
from playground.local import instance

AIM_ONE_S = 1.5
AIM_RATIO = 2.0
PARALLEL = 6


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.monotonic()
        fn()
        out.append(time.monotonic() - t0)
    return out


def measure(instances: int = 4, repeat: int = 5) -> list[Row]:
    with bench_instances([f"pgbstat{i}" for i in range(1, instances + 1)]) as launched:
        machines = [instance.machine(inst) for inst, _ in launched]

        def check(ms):
            model = status.collect(ms)
            assert all(r["level"] == "green" for r in model["instances"]), model
        check(machines)  # warm: every machine has been reached once
        one = timed(lambda: check(machines[:1]), repeat)
        many = timed(lambda: check(machines), repeat)

        def tunnel_once():
            conn = remote.connect(instance.target(launched[0][0]))
            with remote.forwards(conn, [8080]) as fws:
                urllib.request.urlopen(fws[0].url + "/health", timeout=10).read()
        tunnel = timed(tunnel_once, repeat)

        # A browser's page: six requests at once through one tunnel (fabric's forwards, with a listen
        # backlog of one, took 1.04 s for six against 0.02 s for one; issue 41).
        conn = remote.connect(instance.target(launched[0][0]))
        with remote.forwards(conn, [8080]) as fws:
            def page():
                with ThreadPoolExecutor(PARALLEL) as pool:
                    list(pool.map(lambda _: urllib.request.urlopen(fws[0].url + "/health", timeout=10).read(),
                                  range(PARALLEL)))
            page()  # warm: the channel path once
            one_request = timed(lambda: urllib.request.urlopen(fws[0].url + "/health", timeout=10).read(), repeat)
            six = timed(page, repeat)
    ratio = statistics.median(many) / statistics.median(one)
    return [Row("status: 1 instance (s)", one, AIM_ONE_S),
            Row(f"status: {instances} instances (s)", many),
            Row(f"status: {instances} instances / 1 (x)", [ratio], AIM_RATIO),
            Row("tunnel: up and first HTTP answer (s)", tunnel),
            Row("tunnel: 1 request, open tunnel (s)", one_request),
            Row(f"tunnel: {PARALLEL} parallel requests, open tunnel (s)", six)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print_rows(measure(args.instances, args.repeat), f"status/tunnel, {args.repeat} runs")


if __name__ == "__main__":
    main()
