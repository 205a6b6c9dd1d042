"""Providers: one contract (base.Provider), a local and a GCE implementation, chosen here once per
command from resolved settings. Commands never ask which one they hold."""
from __future__ import annotations

from typing import Any, Optional

from .base import Launched, LaunchRequest, Provider, Reach
from .gce import GceProvider
from .local import LocalProvider

__all__ = ["LaunchRequest", "Launched", "Provider", "Reach", "choose", "listing"]

PROVIDERS: dict[str, type[Provider]] = {"local": LocalProvider, "gce": GceProvider}


def choose(flag: Optional[str], project: Optional[str] = None, zone: Optional[str] = None,
           **gce: Any) -> tuple[Provider, str]:
    """The provider a command uses and where that choice came from (flag, environment, file, default)."""
    from .. import settings

    name, source = settings.provider(flag)
    return PROVIDERS[name].from_settings(project, zone, **gce), source


def listing(flag: Optional[str], project: Optional[str], zone: Optional[str]) -> list[Provider]:
    """The providers list and status show: the one chosen by --provider, else every configured one."""
    if flag is not None:
        return [choose(flag, project, zone)[0]]
    return [cls.from_settings(project, zone) for cls in PROVIDERS.values() if cls.configured(project)]
