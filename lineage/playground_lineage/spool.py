"""A durable on-disk spool: every event is written here first, then delivered in order, once.

One file per event (atomic rename, fsync), named so that sorting is arrival order.
Delivery holds an exclusive lock so two processes never deliver the same event; an
event that cannot be delivered stays, and everything after it waits behind it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

DEFAULT_DIR = "/var/lib/airflow/lineage-spool"


def spool_dir() -> str:
    return os.environ.get("PLAYGROUND_LINEAGE_SPOOL", DEFAULT_DIR)


def put(event: Dict[str, Any], directory: str = "") -> str:
    directory = directory or spool_dir()
    os.makedirs(directory, exist_ok=True)
    event.setdefault("id", uuid.uuid4().hex)
    name = "%020d-%s.json" % (time.time_ns(), event["id"])
    tmp = os.path.join(directory, "." + name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(event, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, os.path.join(directory, name))
    return name


def pending(directory: str = "") -> List[str]:
    directory = directory or spool_dir()
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def hold(timeout: float, directory: str = "") -> Iterator[bool]:
    """The delivery lock, waited for up to timeout seconds: yields whether it is held. While held, no
    other process delivers (nor creates a run for an event it delivers)."""
    directory = directory or spool_dir()
    os.makedirs(directory, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(os.path.join(directory, ".lock"), "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True


def drain(deliver: Callable[[Dict[str, Any]], str], deadline: float, directory: str = "",
          retry: Tuple[type, ...] = (OSError,),
          skip: Optional[Callable[[Dict[str, Any]], bool]] = None, held: bool = False) -> Tuple[int, int]:
    """Deliver pending events in order until one cannot be delivered now (an exception in retry) or
    time is up. Events skip() picks are left for another deliverer, without blocking the rest. An event
    refused for good (any other exception) is set aside as NAME.failed with the reason beside it, so it
    never blocks the rest. Takes the delivery lock unless held says the caller has it; when another
    process has it, delivers nothing. Returns (delivered, left)."""
    directory = directory or spool_dir()
    if held:
        return _drain_held(deliver, deadline, directory, retry, skip)
    with hold(0, directory) as got:
        if not got:
            return 0, len(pending(directory))  # another process is delivering them
        return _drain_held(deliver, deadline, directory, retry, skip)


def _drain_held(deliver, deadline, directory, retry, skip) -> Tuple[int, int]:
    done = 0
    for name in pending(directory):
        if time.monotonic() >= deadline:
            break
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as fh:
                event = json.load(fh)
        except (OSError, ValueError):
            os.replace(path, path + ".bad")  # unreadable: set aside, never block the rest
            continue
        if skip is not None and skip(event):
            continue
        try:
            deliver(event)
        except retry:
            break  # this event and all after it wait for the next drain
        except Exception as exc:  # noqa: BLE001 - refused for good: keep it, out of the way
            with open(path + ".reason", "w", encoding="utf-8") as fh:
                fh.write("%s: %s\n" % (type(exc).__name__, exc))
            os.replace(path, path + ".failed")
            continue
        os.unlink(path)
        done += 1
    return done, len(pending(directory))
