"""Image build figures: warm (and with --cold, cold) local build time and image size; the bootable disk's
step, size and what `image push` would upload (issue 20).

Run as root: .venv/bin/python bench/image_build.py [--cold] [--repeat N]
--cold removes the cached debootstrap base first (the pip cache stays: see README).
Aim (issue 2): a warm rebuild under 4 minutes on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from common import Row, print_rows
from playground import paths
from playground.image import local_build, push

AIM_WARM_S = 240


def build_once() -> tuple[float, dict]:
    t0 = time.monotonic()
    image = local_build.build_local("local", report=lambda s: None)
    return time.monotonic() - t0, json.loads((image / "manifest.json").read_text())


def built_in_this_run() -> Optional[tuple[float, Path]]:
    """The warm build of the local profile that scripts/images made earlier in this CI run (PLAYGROUND_BUILT_LOG),
    if it made one and the image is still there."""
    log = os.environ.get("PLAYGROUND_BUILT_LOG")
    if not log or not Path(log).is_file():
        return None
    for line in reversed(Path(log).read_text().splitlines()):
        got = json.loads(line)
        if got["profile"] == "local" and (Path(got["image"]) / "manifest.json").is_file():
            return float(got["seconds"]), Path(got["image"])
    return None


def measure(cold: bool = False, repeat: int = 1, reuse: bool = False) -> list[Row]:
    """reuse (the smoke run): the warm build scripts/images made in this run, if any, is the figure (it ran
    beside the unit tests, so it errs long) rather than a second build of the same tree."""
    rows = []
    earlier = built_in_this_run() if reuse and not cold else None
    if earlier is not None:
        seconds, image = earlier
        rows.append(Row("image: warm build (s), this run's scripts/images build beside the unit tests", [seconds],
                        AIM_WARM_S))
        manifest = json.loads((image / "manifest.json").read_text())
        rows.append(Row("image: size (GiB)", [manifest["size_bytes"] / 2**30]))
        return rows + disk_rows(image, manifest)
    if cold:
        shutil.rmtree(paths.cache_dir() / "base", ignore_errors=True)
        seconds, manifest = build_once()
        rows.append(Row("image: cold build (s)", [seconds]))
    warm = []
    for _ in range(repeat):
        seconds, manifest = build_once()
        warm.append(seconds)
    rows.append(Row("image: warm build (s)", warm, AIM_WARM_S))
    rows.append(Row("image: size (GiB)", [manifest["size_bytes"] / 2**30]))
    rows += disk_rows(local_build.newest_image("local"), manifest)
    return rows


def disk_rows(image, manifest: dict) -> list[Row]:
    """The disk step of the last build, the disk's size and blocks written, and the push archive."""
    disk = image / "disk.raw"
    rows = [Row("image: disk step of the build (s)", [manifest["disk"]["seconds"]]),
            Row("image: disk.raw size (GiB)", [disk.stat().st_size / 2**30]),
            Row("image: disk.raw written, sparse (GiB)", [disk.stat().st_blocks * 512 / 2**30])]
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as scratch:
        t0 = time.monotonic()
        size = push.archive(disk, Path(scratch) / "disk.tar.gz", lambda s: None)
        rows.append(Row("image: push archive time (s)", [time.monotonic() - t0]))
        rows.append(Row("image: push archive, tar.gz of disk.raw (MiB)", [size / 2**20]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="also measure a build without the base rootfs cache")
    parser.add_argument("--repeat", type=int, default=1, help="warm builds to run")
    args = parser.parse_args()
    print_rows(measure(args.cold, args.repeat), "local image build")


if __name__ == "__main__":
    main()
