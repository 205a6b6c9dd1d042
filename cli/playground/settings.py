"""Settings resolve in order: flags, environment (PLAYGROUND_*), playground.toml, defaults.

playground.toml is read from the current directory, then from
~/.config/playground/playground.toml; each value remembers where it came from.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Optional

from .errors import PlaygroundError

DEFAULTS: dict[str, Any] = {"provider": "local", "profile": "local"}
PROVIDERS = ("local", "gce")


def toml_files() -> list[Path]:
    return [Path.cwd() / "playground.toml", Path.home() / ".config" / "playground" / "playground.toml"]


def _toml() -> list[tuple[Path, dict]]:
    found = []
    for path in toml_files():
        if path.is_file():
            try:
                found.append((path, tomllib.loads(path.read_text())))
            except tomllib.TOMLDecodeError as exc:
                raise PlaygroundError(f"{path}: not valid TOML: {exc}") from exc
    return found


def resolve(key: str, flag: Optional[Any] = None) -> tuple[Any, str]:
    """(value, where it came from) for one setting."""
    if flag is not None:
        return flag, "flag --" + key.replace("_", "-")
    env = "PLAYGROUND_" + key.upper()
    if os.environ.get(env):
        return os.environ[env], "environment " + env
    for path, doc in _toml():
        if key in doc:
            return doc[key], str(path)
    if key in DEFAULTS:
        return DEFAULTS[key], "default"
    return None, "unset"


def provider(flag: Optional[str]) -> tuple[str, str]:
    value, source = resolve("provider", flag)
    if value not in PROVIDERS:
        raise PlaygroundError(f"provider (from {source}): expected one of {', '.join(PROVIDERS)}, got {value!r}")
    return value, source
