"""VM runtime figures (issue 20): the image's disk on `--runtime vm` beside the same image on nspawn, in one run.

Run as root on a machine with a built local image:
    .venv/bin/python bench/vm.py
Boot to SSH (UEFI, Secure Boot, the agent has installed the ssh-keys key), boot to healthy, ACPI stop to
stopped, and start (a second boot) to healthy, with the acceleration named in the figure: software
emulation (TCG) where KVM does not boot guests, as here. nspawn's launch to healthy is measured in the
same run, so the ratio compares like with like. Aim where KVM boots guests: launch to healthy under 45 s.
Not part of `bench/run --quick` (one VM boot under emulation is about 7 minutes): `bench/run --only vm`.
"""
from __future__ import annotations

import time

from common import Row, print_rows
from playground import paths
from playground.image import local_build
from playground.local import instance

AIM_KVM_HEALTHY_S = 45
NAME = "pgbench-vm"
TIMEOUT_S = 1200


def _until(check, timeout: float, every: float = 5) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(every)
    raise RuntimeError(f"not reached within {timeout:.0f} s")


def _ssh(inst) -> bool:
    try:
        return instance.remote(inst, "true", timeout=30).returncode == 0
    except Exception:  # noqa: BLE001 - a timeout or a refused connection: not yet
        return False


def measure() -> list[Row]:
    image = local_build.newest_image("local") or local_build.build_local("local", report=lambda s: None)
    for leftover in (NAME, NAME + "-ns"):
        if (paths.instances_dir() / leftover).exists():
            instance.destroy(leftover)
    try:
        t0 = time.monotonic()
        instance.launch(NAME + "-ns", "playground-bench", {}, image, "local", lambda s: None, 300)
        nspawn_s = time.monotonic() - t0
        instance.destroy(NAME + "-ns")

        t0 = time.monotonic()
        inst, _ = instance.launch(NAME, "playground-bench", {}, image, "local", lambda s: None, wait=False,
                                  runtime="vm")
        mode = inst.accel
        ssh_s = (time.monotonic() - t0) + _until(lambda: _ssh(inst), TIMEOUT_S)
        healthy_s = (time.monotonic() - t0) + _until(
            lambda: bool((instance.health(inst) or {}).get("healthy")), TIMEOUT_S, 10)
        t1 = time.monotonic()
        instance.stop(NAME)
        stop_s = time.monotonic() - t1
        t2 = time.monotonic()
        inst, _ = instance.start(NAME, lambda s: None, wait=False)
        restart_s = (time.monotonic() - t2) + _until(
            lambda: bool((instance.health(inst) or {}).get("healthy")), TIMEOUT_S, 10)
    finally:
        for leftover in (NAME, NAME + "-ns"):
            if (paths.instances_dir() / leftover).exists():
                instance.destroy(leftover)
    aim = AIM_KVM_HEALTHY_S if mode == "kvm" else None
    return [Row("nspawn: launch to healthy, same run (s)", [nspawn_s]),
            Row(f"vm ({mode}): launch to SSH, UEFI Secure Boot (s)", [ssh_s]),
            Row(f"vm ({mode}): launch to healthy (s)", [healthy_s], aim),
            Row(f"vm ({mode}) / nspawn: launch to healthy (x)", [healthy_s / nspawn_s]),
            Row(f"vm ({mode}): stop, ACPI power-off to stopped (s)", [stop_s]),
            Row(f"vm ({mode}): start to healthy (s)", [restart_s])]


def main() -> None:
    print_rows(measure(), "VM runtime beside nspawn")


if __name__ == "__main__":
    main()
