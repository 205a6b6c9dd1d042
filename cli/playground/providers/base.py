"""The provider contract every command goes through (the model: the node providers of Ray's cluster
launcher, SkyPilot's per-cloud provision modules).

A provider is built once per command from fully resolved, checked settings (`providers.choose`);
commands then call these methods and never ask which provider they hold.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

from ..errors import PlaygroundError

Report = Callable[[str], None]


@dataclass
class Reach:
    """How to get into a running machine: fabric's target, its web ports, the admin user, `ssh`."""

    target: Any  # remote.Target
    web: dict[str, int]
    admin: str
    ssh_args: list[str]
    ssh_command: str  # what to type for a shell, e.g. for the admin password


@dataclass
class Launched:
    """A machine that launch or start brought up (and, unless told not to wait, saw healthy)."""

    name: str
    address: str
    detail: str  # where and from what, one line
    healthy: Optional[bool]  # None: not waited for
    warnings: list[str] = field(default_factory=list)
    next_steps: list[tuple[str, str]] = field(default_factory=list)  # (what, command)


@dataclass
class Upgraded:
    """What upgrade did: the machine as started on the new image, and the change in one line."""

    launched: Optional[Launched]  # None: nothing to do (it runs that image already)
    change: str
    seconds: float = 0.0


@dataclass
class LaunchRequest:
    name: str
    project: str
    attributes: dict[str, str]  # checked against the attribute schema already
    profile: str
    wait: bool = True
    timeout: float = 300
    build: bool = True  # local: build the image when there is none
    runtime: str = "nspawn"  # local: nspawn or vm
    data_disk_gb: int = 0  # local vm: a data disk of this size
    workers: int = 0  # Celery worker machines beside the main (issue 17)


class Provider(ABC):
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, project: Optional[str], zone: Optional[str], **flags: Any) -> "Provider":
        """Built with its settings resolved and checked: a bad value fails here, before any request."""

    @classmethod
    @abstractmethod
    def configured(cls, project: Optional[str]) -> bool:
        """Whether list and status (which show every configured provider) include this one."""

    @abstractmethod
    def profile(self, given: Optional[str]) -> str:
        """The image profile launch uses: the one given (checked), else this provider's default."""

    @abstractmethod
    def build_image(self, profile: str, report: Report, notice: Report) -> str:
        """Build the profile's golden image where this provider launches from; its folder or name."""

    @abstractmethod
    def images(self, profile: str) -> tuple[list[dict], list[str]]:
        """The profile's images, oldest first (the newest is the one launch takes), and the columns to show."""

    @abstractmethod
    def launch(self, req: LaunchRequest, report: Report) -> Launched: ...

    @abstractmethod
    def start(self, name: str, report: Report, wait: bool = True, timeout: float = 300) -> Launched: ...

    @abstractmethod
    def upgrade(self, name: str, image: Optional[str], report: Report, timeout: float = 300) -> "Upgraded":
        """Move the machine to its profile's newest image (or the one named), keeping its data volume; a
        downgrade or a PostgreSQL major change is refused in one line before anything changes
        (upgrade.check)."""

    @abstractmethod
    def stop(self, name: str, report: Report) -> list[str]:
        """What was stopped, for the user."""

    @abstractmethod
    def destroy(self, name: str, report: Report) -> list[str]:
        """What was removed, for the user."""

    @abstractmethod
    def set_attributes(self, name: str, attributes: dict[str, str], report: Report) -> None:
        """Change metadata attributes of an instance, running or stopped (checked with the schema already);
        the machine's agent reads what it watches live (autostop) and the rest at its next boot."""

    def scale(self, name: str, workers: int, force: bool, report: Report) -> list[str]:
        """A playground's Celery workers to `workers` (0: none, the main runs its tasks itself); fewer is a warm
        shutdown of each removed worker unless force. What was done, for the user."""
        raise PlaygroundError(f"scale: workers are built for local instances only so far, not {self.name}")

    def worker_targets(self, name: str) -> list:
        """remote.Target of each running Celery worker of the playground name (deploy gives them the project's
        packages); none for a machine without workers."""
        return []

    @abstractmethod
    def list(self) -> list[dict]:
        """Rows: name, provider, project, profile, state, address, zone, age_s or created."""

    @abstractmethod
    def describe(self, name: str) -> dict:
        """One row of list(), or PlaygroundError naming where it looked."""

    @abstractmethod
    def machines(self, name: Optional[str], project: Optional[str]) -> list:
        """status.Machine for each instance meant (all, by name, or by project)."""

    @abstractmethod
    def reach(self, name: Optional[str], project: Optional[str]) -> Reach:
        """The one running machine a command means (by name, by project, or the only one)."""
