"""Local instance figures: launch-to-healthy, start-to-healthy, idle memory, added disk; and the
seed's stack (seed-local: Airflow 2.0.2 on Debian 11) launch-to-healthy beside the local profile's.

Run as root on a machine with a built local image:
    .venv/bin/python bench/launch.py [--repeat N] [--idle 60]
Aims (issue 4): launch-to-healthy under 60 s, idle memory under 1.5 GiB.
Idle memory is the sum over the instance's processes (every process under its
systemd-nspawn), as PSS so shared pages (gunicorn workers) count once; RSS sum
is shown beside it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from common import Row, print_rows
from playground import paths
from playground.image import local_build
from playground.local import instance

AIM_LAUNCH_S = 60
AIM_IDLE_GIB = 1.5
NAME = "pgbench"


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def memory_of(pids: list[int]) -> tuple[int, int]:
    """(PSS, RSS) in bytes summed over pids."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, rss


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def seed_local_launches(repeat: int) -> list[float]:
    """Launch-to-healthy of the seed's stack, in the same run as the local profile's (built if missing)."""
    image = local_build.newest_image("seed-local") or local_build.build_local("seed-local", report=lambda s: None)
    seconds = []
    try:
        for _ in range(repeat):
            t0 = time.monotonic()
            instance.launch(NAME, "playground-bench", {}, image, "seed-local", lambda s: None, 300)
            seconds.append(time.monotonic() - t0)
            instance.destroy(NAME)
    finally:
        if (paths.instances_dir() / NAME).exists():
            instance.destroy(NAME)
    return seconds


def measure(repeat: int = 1, idle: float = 60) -> list[Row]:
    image = local_build.newest_image("local")
    if image is None:
        raise SystemExit("no local image: run `playground image build` first")
    if (paths.instances_dir() / NAME).exists():
        instance.destroy(NAME)
    launch_s, start_s, pss_b, rss_b, disk_b = [], [], [], [], []
    try:
        for _ in range(repeat):
            t0 = time.monotonic()
            inst, _ = instance.launch(NAME, "playground-bench", {}, image, "local", lambda s: None, 300)
            launch_s.append(time.monotonic() - t0)
            time.sleep(idle)
            pss, rss = memory_of(descendants(instance.load(NAME).pids["nspawn"]))
            pss_b.append(pss)
            rss_b.append(rss)
            instance.stop(NAME)
            disk_b.append(du(inst.dir / "upper"))
            t0 = time.monotonic()
            instance.start(NAME, lambda s: None, 300)
            start_s.append(time.monotonic() - t0)
            instance.destroy(NAME)
    finally:
        if (paths.instances_dir() / NAME).exists():
            instance.destroy(NAME)
    seed_s = seed_local_launches(repeat)
    gib = 2**30
    return [Row("instance: launch to healthy (s)", launch_s, AIM_LAUNCH_S),
            Row("instance: launch to healthy, seed-local: Airflow 2.0.2, Debian 11 (s)", seed_s, AIM_LAUNCH_S),
            Row("instance: seed-local / local launch to healthy (x)",
                [statistics.median(seed_s) / statistics.median(launch_s)]),
            Row("instance: start to healthy (s)", start_s),
            Row("instance: idle memory, PSS sum (GiB)", [b / gib for b in pss_b], AIM_IDLE_GIB),
            Row("instance: idle memory, RSS sum (GiB)", [b / gib for b in rss_b]),
            Row("instance: disk added over the image (MiB)", [b / 2**20 for b in disk_b])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="launch/stop/start cycles")
    parser.add_argument("--idle", type=float, default=60, help="seconds to let the instance settle before memory")
    args = parser.parse_args()
    print_rows(measure(args.repeat, args.idle), f"local instance, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
