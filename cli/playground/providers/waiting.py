"""Waiting for a machine to turn healthy: the same loop and progress for every provider.

The machine's agent writes /run/playground/status.json; a provider says how to read it (None while
SSH or the agent is not there yet) and whether the machine still runs.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from ..errors import PlaygroundError

Report = Callable[[str], None]
REPORT_PATH = "/run/playground/status.json"


def wait_healthy(name: str, read: Callable[[float], Optional[dict]], alive: Callable[[], bool], timeout: float,
                 report: Report, gone: str = "", every: float = 2.0) -> dict:
    """The first healthy report; PlaygroundError when the agent refused its config, the machine
    stopped (gone says where to look), or timeout passed (with the last problem seen). read(left) is given
    the seconds left of the wait, so that no read outlasts it."""
    deadline = time.monotonic() + timeout
    last: Optional[dict] = None
    while time.monotonic() < deadline:
        if not alive():
            raise PlaygroundError(f"instance {name} stopped while booting" + (f"; see {gone}" if gone else ""))
        rep = read(max(1.0, deadline - time.monotonic()))
        if rep is None:
            report("waiting for SSH and the agent's first health report")
        else:
            last = rep
            if rep.get("healthy"):
                return rep
            if rep.get("config", {}).get("state") == "error":
                raise PlaygroundError(f"instance {name}: the agent refused its config: {rep['config']['error']}")
            report("starting: " + (rep.get("problems") or ["..."])[0])
        time.sleep(max(0.0, min(every, deadline - time.monotonic())))
    why = (last or {}).get("problems") or ["no health report over SSH"]
    raise PlaygroundError(f"instance {name} did not turn healthy within {timeout:.0f} s: {why[0]}")


def read_over_ssh(target, timeout: float = 20.0) -> Optional[dict]:
    """The agent's last report through fabric (any provider's target); None until it can be read."""
    import json

    from .. import remote

    try:
        conn = remote.connect(target, timeout=timeout)
        try:
            res = conn.run(f"cat {REPORT_PATH}", hide=True, warn=True, timeout=timeout, in_stream=False)
        finally:
            conn.close()
    except PlaygroundError:
        raise
    except FileNotFoundError as exc:  # the key itself: waiting will not bring it
        raise PlaygroundError(remote.explain(exc, target)) from exc
    except Exception:  # booting: refused, reset, timed out, no route yet
        return None
    if res.return_code != 0:
        return None
    try:
        return json.loads(res.stdout)
    except ValueError:
        return None
