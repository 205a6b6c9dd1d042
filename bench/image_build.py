"""Image build figures: warm (and with --cold, cold) local build time and image size.

Run as root: .venv/bin/python bench/image_build.py [--cold] [--repeat N]
--cold removes the cached debootstrap base first (the pip cache stays: see README).
Aim (issue 2): a warm rebuild under 4 minutes on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

from playground import paths
from playground.image import local_build
from rich.console import Console
from rich.table import Table

AIM_WARM_S = 240


def build_once() -> tuple[float, dict]:
    t0 = time.monotonic()
    image = local_build.build_local("local", report=lambda s: None)
    return time.monotonic() - t0, json.loads((image / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="also measure a build without the base rootfs cache")
    parser.add_argument("--repeat", type=int, default=1, help="warm builds to run")
    args = parser.parse_args()
    rows = []
    if args.cold:
        shutil.rmtree(paths.cache_dir() / "base", ignore_errors=True)
        seconds, manifest = build_once()
        rows.append(("cold build (s)", [seconds], None))
    warm = []
    for _ in range(args.repeat):
        seconds, manifest = build_once()
        warm.append(seconds)
    rows.append(("warm build (s)", warm, AIM_WARM_S))
    rows.append(("image size (GiB)", [manifest["size_bytes"] / 2**30], None))
    table = Table("figure", "min", "median", "max", "aim", "met")
    for name, values, aim in rows:
        med = statistics.median(values)
        table.add_row(name, f"{min(values):.1f}", f"{med:.1f}", f"{max(values):.1f}",
                      f"< {aim}" if aim else "-", ("yes" if med < aim else "NO") if aim else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
