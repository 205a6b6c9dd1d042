"""`--set KEY=VALUE`: metadata attributes checked with the agent's own schema before any request or boot."""
from __future__ import annotations

from functools import lru_cache

from playground_agent import schema

from .errors import PlaygroundError


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


CONTEXT = schema.Context(known_zone=lambda z: z in _zones())


def check_project(project: str, flag: str = "--project") -> None:
    """A plain GCP project id, as the agent's schema defines it (it also lands in a label value)."""
    if not schema.PROJECT_ID_RE.match(project):
        raise PlaygroundError(f"{flag}: expected a GCP project id (6-30 of a-z 0-9 -, starting with a letter, "
                              f"not ending with -), got {project!r}")


def parse_sets(pairs: list[str], project: str) -> dict[str, str]:
    """The attributes a launch sends, validated together as the agent will at boot.

    An unknown key (with the nearest known name), a bad value, or a bad combination is one line."""
    check_project(project)
    attrs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PlaygroundError(f"--set: expected KEY=VALUE (a metadata attribute), got {pair!r}")
        if key in attrs:
            raise PlaygroundError(f"--set {key}: given twice")
        attrs[key] = value
    try:
        schema.parse_attributes({"gcp-project": project, **attrs}, CONTEXT, strict=True)
    except schema.ConfigError as exc:
        raise PlaygroundError(f"--set {exc.attribute}: expected {exc.expected}"
                              + (f" (got {exc.value[:60]!r})" if exc.value is not None else "")) from exc
    return attrs


def autostop_value(text: str, flag: str = "--autostop") -> str:
    """`off` or idle minutes, checked with the agent's schema; as the attribute `autostop` holds it."""
    try:
        minutes = schema.parse_value("autostop", text.strip(), CONTEXT)
    except schema.ConfigError as exc:
        raise PlaygroundError(f"{flag}: expected {exc.expected}"
                              + (f" (got {exc.value[:60]!r})" if exc.value is not None else "")) from exc
    return str(minutes) if minutes else "off"


def web_ports(attributes: dict[str, str]) -> dict[str, int]:
    """The web UIs' ports on the machine's 127.0.0.1, as the agent will bind them."""
    return {"airflow": int(attributes.get("airflow-port") or schema.default("airflow-port")),
            "mlflow": int(attributes.get("mlflow-port") or schema.default("mlflow-port"))}


def admin_user(attributes: dict[str, str]) -> str:
    return attributes.get("airflow-admin-user") or schema.default("airflow-admin-user")


def known() -> str:
    """For --help: every attribute name."""
    return ", ".join(a.name for a in schema.ATTRIBUTES)
