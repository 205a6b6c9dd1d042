"""Where the CLI keeps things on this machine (all overridable for tests)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKER_DIR = REPO / "packer"


def state_dir() -> Path:
    """Images and local instances: PLAYGROUND_HOME, default /var/lib/playground."""
    return Path(os.environ.get("PLAYGROUND_HOME", "/var/lib/playground"))


def cache_dir() -> Path:
    """What is expensive and safe to reuse across clones: the debootstrap base and
    the pip wheel cache. PLAYGROUND_CACHE, default /var/cache/playground."""
    return Path(os.environ.get("PLAYGROUND_CACHE", "/var/cache/playground"))


def images_dir(profile: str) -> Path:
    return state_dir() / "images" / profile


def instances_dir() -> Path:
    return state_dir() / "instances"


def user_logs_dir() -> Path:
    """Logs of commands a user runs without root (GCE image builds): XDG_STATE_HOME/playground/logs."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "playground" / "logs"
