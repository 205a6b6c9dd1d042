"""A nightly schedule as the user gives it (stop and start times, days, time zone), as cron, and its next runs:
the part of `playground schedule` that needs no Google call (gce/schedule.py checks, schedule_backends.py
makes the jobs or the policy)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

from ..errors import PlaygroundError

DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]  # cron's numbering, 0-6


@dataclass(frozen=True)
class Spec:
    """A schedule as cron fields: minute hour * * day-of-week, in one time zone."""

    stop: str                 # cron expression
    start: Optional[str]      # cron expression, or None: only the nightly stop
    tz: str

    def crons(self) -> dict[str, str]:
        return {"stop": self.stop, **({"start": self.start} if self.start else {})}


def parse_time(flag: str, value: str) -> tuple[int, int]:
    found = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", value.strip())
    if not found:
        raise PlaygroundError(f"{flag}: expected a time HH:MM (24-hour, e.g. 21:00), got {value!r}")
    return int(found.group(1)), int(found.group(2))


def parse_days(value: str) -> str:
    """'mon-fri', 'mon,wed,fri', 'sat-sun', 'fri-mon', 'daily' (the agent's day_set, which backup-at reads
    too) -> cron's day-of-week field."""
    from playground_agent import schema

    text = value.strip().lower()
    try:
        monday_first = schema.day_set("daily" if text in ("every-day", "all", "*") else text)
    except ValueError:
        raise PlaygroundError(f"--days: expected day names like mon-fri, mon,wed,fri or daily, got {value!r}") \
            from None
    ordered = sorted((d + 1) % 7 for d in monday_first)  # cron counts from Sunday, 0
    if len(ordered) == 7:
        return "*"
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


def parse_tz(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PlaygroundError(f"--tz: expected an IANA time zone such as Europe/London, got {value!r}") from exc
    return value


def make_spec(stop: str, start: Optional[str], days: str, tz: str) -> Spec:
    dow = parse_days(days)
    h, m = parse_time("--stop", stop)
    stop_cron = f"{m} {h} * * {dow}"
    start_cron = None
    if start:
        h2, m2 = parse_time("--start", start)
        if (h2, m2) == (h, m):
            raise PlaygroundError(f"--start: must differ from --stop ({stop})")
        start_cron = f"{m2} {h2} * * {dow}"
    return Spec(stop=stop_cron, start=start_cron, tz=parse_tz(tz))


BACKUP_BEFORE_MIN = 15  # the nightly backup runs this long before the stop (1.8 s for 1,000 runs measured)


def backup_attributes(spec: Spec, to: str, keep: Optional[int]) -> dict[str, str]:
    """The attributes of the nightly backup for --backup-to (off: none), BACKUP_BEFORE_MIN before the stop on
    the stop's days (a stop just after midnight backs up the evening before), checked with the agent's schema."""
    from playground_agent import schema

    from ..attributes import CONTEXT

    if to.strip() == "off":
        return {"backup-to": ""}
    minute, hour, _, _, dow = spec.stop.split()
    at = int(hour) * 60 + int(minute) - BACKUP_BEFORE_MIN
    days = _dow_set(dow)
    if at < 0:
        at += 24 * 60
        days = {(d - 1) % 7 for d in days}
    names = "daily" if len(days) == 7 else ",".join(DAY_NAMES[d] for d in sorted(days))
    attrs = {"backup-to": to.strip(), "backup-at": f"{names} {at // 60:02d}:{at % 60:02d} {spec.tz}"}
    if keep is not None:
        attrs["backup-keep"] = str(keep)
    for key, value in attrs.items():
        try:
            schema.parse_value(key, value, CONTEXT)
        except schema.ConfigError as exc:
            flag = "--backup-to" if key == "backup-to" else "--backup-keep" if key == "backup-keep" else "--stop"
            raise PlaygroundError(f"{flag}: expected {exc.expected} (got {value[:60]!r})") from exc
    return attrs


def _dow_set(field: str) -> set[int]:
    if field == "*":
        return set(range(7))
    out: set[int] = set()
    for part in field.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return {d % 7 for d in out}  # cron allows 7 for Sunday


def next_runs(cron: str, tz: str, count: int = 3, now: Optional[datetime] = None) -> list[datetime]:
    """The next times a `M H * * DOW` cron fires in time zone tz (the only form this CLI writes)."""
    from zoneinfo import ZoneInfo

    fields = cron.split()
    if len(fields) != 5 or fields[2:4] != ["*", "*"] or not fields[0].isdigit() or not fields[1].isdigit():
        raise PlaygroundError(f"schedule {cron!r}: not written by playground (expected 'M H * * DOW')")
    zone = ZoneInfo(tz)
    now = (now or datetime.now(zone)).astimezone(zone)
    days = _dow_set(fields[4])
    runs: list[datetime] = []
    day = now.date()
    while len(runs) < count and day < now.date() + timedelta(days=15):
        at = datetime(day.year, day.month, day.day, int(fields[1]), int(fields[0]), tzinfo=zone)
        if (at.isoweekday() % 7) in days and at > now:
            runs.append(at)
        day += timedelta(days=1)
    return runs


def local_time_zone() -> str:
    """This machine's IANA zone name: what next runs are shown in."""
    if os.environ.get("TZ", "").strip(":"):
        return os.environ["TZ"].strip(":")
    link = Path("/etc/localtime")
    if link.is_symlink() and "zoneinfo/" in str(link.resolve()):
        return str(link.resolve()).split("zoneinfo/", 1)[1]
    tzfile = Path("/etc/timezone")
    return tzfile.read_text().strip() if tzfile.is_file() else "UTC"
