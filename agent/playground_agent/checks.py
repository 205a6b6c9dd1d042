"""The checks behind the attribute schema (schema.py): Google's and Airflow's rules for a value, each a parser
that returns the value it accepts or raises ConfigError naming the attribute and what was expected.
Standard library, Python 3.8+: this runs on the image's Python.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, List, Optional, Set


class ConfigError(Exception):
    def __init__(self, attribute: str, expected: str, value: Optional[str] = None) -> None:
        self.attribute = attribute
        self.expected = expected
        self.value = value
        shown = "" if value is None else " (got %r)" % (value[:60],)
        super().__init__("metadata attribute %r: expected %s%s" % (attribute, expected, shown))


# Google's own rules (https://cloud.google.com/resource-manager/docs/creating-managing-projects):
# a project id is 6-30 lowercase letters, digits or hyphens, starts with a letter and does not end
# with a hyphen. Old domain-scoped ids ("example.com:proj") still exist; the agent accepts them in
# gcp-project, the CLI (which puts the id in a label value, where ':' and '.' are refused) does not.
PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SCOPED_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
CLOUDSQL_RE = re.compile(
    r"^(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]{0,94}$"
)
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
USER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
SECRET_RE = re.compile(r"^projects/[a-z0-9-]+/secrets/[A-Za-z0-9_-]{1,255}(?:/versions/(?:latest|[0-9]+))?$")
TZ_RE = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,2}$")
LOCAL_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]*$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SSH_KEY_RE = re.compile(r"^(ssh-(?:ed25519|rsa)|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/=]+(?: [^\x00-\x1f]*)?$")
EXECUTORS = ("LocalExecutor", "SequentialExecutor", "CeleryExecutor")
ROLES = ("main", "worker")
BACKENDS = ("local", "cloudsql")
POSTGRES_PORT = 5432
AUTOSTOP_MAX_MIN = 1440  # a day: longer than that, the nightly stop comes first

# Keys Google's own guest environment and tools put in instance metadata: not ours, not an error.
GOOGLE_KEYS = ("ssh-keys", "sshKeys", "block-project-ssh-keys", "enable-oslogin", "enable-oslogin-2fa",
               "startup-script", "startup-script-url", "shutdown-script", "shutdown-script-url", "user-data",
               "serial-port-enable", "enable-guest-attributes", "google-logging-enabled",
               "google-monitoring-enabled", "enable-osconfig", "windows-keys")


@dataclass
class SshKey:
    user: str
    key: str


# ------------------------------------------------------------------------------------------ parsers
# Each takes (attribute name, stripped value, context) and returns the typed value or raises.

def bucket_name(attr: str, value: str, ctx: "Context") -> str:
    name = value[len("gs://"):] if value.startswith("gs://") else value
    name = name.rstrip("/")
    if not BUCKET_RE.match(name) or ".." in name:
        raise ConfigError(attr, "a GCS bucket name (3-63 of a-z 0-9 . _ -, no '..', no path)", value)
    return name


def tcp_port(attr: str, value: str, ctx: "Context") -> int:
    return int_between(attr, value, 1024, 65535)


def int_between(attr: str, value: str, lo: int, hi: int) -> int:
    if not re.match(r"^[0-9]{1,6}$", value) or not lo <= int(value) <= hi:
        raise ConfigError(attr, "an integer from %d to %d" % (lo, hi), value)
    return int(value)


def choice(*choices: str) -> Callable[[str, str, "Context"], str]:
    def parse(attr: str, value: str, ctx: "Context") -> str:
        if value not in choices:
            raise ConfigError(attr, "one of " + ", ".join(choices), value)
        return value
    return parse


def int_range(lo: int, hi: int) -> Callable[[str, str, "Context"], int]:
    return lambda attr, value, ctx: int_between(attr, value, lo, hi)


def autostop_value(attr: str, value: str, ctx: "Context") -> int:
    """Minutes idle before the machine powers itself off; 0 is off."""
    if value in ("off", "0"):
        return 0
    if not re.match(r"^[0-9]{1,5}$", value) or not 1 <= int(value) <= AUTOSTOP_MAX_MIN:
        raise ConfigError(attr, "off or minutes from 1 to %d" % AUTOSTOP_MAX_MIN, value)
    return int(value)


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS_RE = re.compile(r"^(?:daily|[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)$")


def day_set(value: str) -> Set[int]:
    """daily, mon-fri, mon,wed,fri, fri-mon (a range wraps past Sunday) -> day numbers, Monday 0; ValueError
    for anything else. The CLI's --days reads days this way too (playground.gce.schedule.parse_days)."""
    text = value.strip().lower()
    if text == "daily":
        return set(range(7))
    if not DAYS_RE.match(text):
        raise ValueError(value)
    days = set()  # type: Set[int]
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
            raise ValueError(value)
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if sep else a
        days.update(range(a, b + 1) if a <= b else list(range(a, 7)) + list(range(0, b + 1)))
    return days


def calendar_days(value: str) -> str:
    """Days as day_set reads them -> systemd's day list (Mon..Fri, Mon,Wed,Fri; "" for every day);
    ValueError for anything else."""
    days = sorted(day_set(value))
    if len(days) == 7:
        return ""
    runs = []  # type: List[List[int]]
    for d in days:
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    names = [DAY_NAMES[d].capitalize() for d in range(7)]
    return ",".join(names[r[0]] + ".." + names[r[-1]] if len(r) > 2 else ",".join(names[d] for d in r)
                    for r in runs)


def backup_calendar(attr: str, value: str, ctx: "Context") -> str:
    """[DAYS] HH:MM [ZONE] -> systemd's OnCalendar= (e.g. Mon..Fri *-*-* 20:45:00 Europe/London); a zone
    suffix needs systemd 235+, which every profile's base has."""
    expected = "[DAYS] HH:MM [ZONE], e.g. mon-fri 20:45 Europe/London (DAYS: daily, mon-fri, mon,wed,fri)"
    words = value.split()
    days, zone = "daily", "UTC"
    if words and not re.match(r"^[0-9]", words[0]):
        days = words.pop(0)
    if len(words) == 2:
        zone = words.pop()
    found = re.match(r"^([01][0-9]|2[0-3]):([0-5][0-9])$", words[0]) if len(words) == 1 else None
    if not found:
        raise ConfigError(attr, expected, value)
    try:
        weekdays = calendar_days(days)
    except ValueError:
        raise ConfigError(attr, expected, value) from None
    if zone != "UTC" and (not TZ_RE.match(zone) or not ctx.known_zone(zone)):
        raise ConfigError(attr, "an IANA time zone such as Europe/London after the time", value)
    return ("%s *-*-* %s:%s:00 %s" % (weekdays, found.group(1), found.group(2), zone)).strip()


def private_network(attr: str, value: str, ctx: "Context") -> str:
    """A private IPv4 network, /16 to /29 (RFC 1918): where the main and its workers talk."""
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        net = None
    if net is None or not net.is_private or not 16 <= net.prefixlen <= 29 or "/" not in value:
        raise ConfigError(attr, "a private IPv4 network such as 10.214.3.0/24 (/16 to /29)", value)
    return str(net)


def ipv4_address(attr: str, value: str, ctx: "Context") -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ConfigError(attr, "an IPv4 address such as 10.214.3.2", value) from None


def gs_location(attr: str, value: str, ctx: "Context") -> str:
    if not value.startswith("gs://"):
        raise ConfigError(attr, "gs://BUCKET[/PREFIX]", value)
    return artifacts_location(attr, value, ctx)


def matches(regex: "re.Pattern[str]", expected: str) -> Callable[[str, str, "Context"], str]:
    def parse(attr: str, value: str, ctx: "Context") -> str:
        if not regex.match(value):
            raise ConfigError(attr, expected, value)
        return value
    return parse


def artifacts_location(attr: str, value: str, ctx: "Context") -> str:
    if value.startswith("gs://"):
        rest = value[len("gs://"):].rstrip("/")
        bucket, _, prefix = rest.partition("/")
        bucket_name(attr, bucket, ctx)
        if prefix and (not re.match(r"^[A-Za-z0-9_./-]+$", prefix) or ".." in prefix.split("/")):
            raise ConfigError(attr, "gs://BUCKET[/PREFIX] with a plain prefix", value)
        return "gs://" + rest
    if not LOCAL_PATH_RE.match(value) or ".." in value.split("/"):
        raise ConfigError(attr, "gs://BUCKET[/PREFIX] or an absolute local path without '..'", value)
    return value.rstrip("/") or "/"


def time_zone(attr: str, value: str, ctx: "Context") -> str:
    if value == "UTC":
        return value
    if not TZ_RE.match(value) or not ctx.known_zone(value):
        raise ConfigError(attr, "an IANA time zone such as Europe/London", value)
    return value


def ssh_key_list(attr: str, value: str, ctx: "Context") -> List[SshKey]:
    keys = []
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        user, sep, key = line.partition(":")
        if not sep or not SSH_USER_RE.match(user) or not SSH_KEY_RE.match(key.strip()):
            raise ConfigError(attr, "lines of USER:KEY-TYPE BASE64 [COMMENT]", line)
        keys.append(SshKey(user=user, key=key.strip()))
    return keys


@dataclass
class Context:
    """What a parser may need beyond the value: how to tell a real time zone."""

    known_zone: Callable[[str], bool]
