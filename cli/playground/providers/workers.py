"""What both providers decide the same way about a playground's Celery workers (issue 17): their names and
numbers, their slots, what the main's attributes become with K of them, and `scale`'s steps, once, over
each provider's small verbs (ClusterOps)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from ..errors import PlaygroundError

Report = Callable[[str], None]
MAX_WORKER_NUMBER = 200  # local: worker host numbers 10-209 on the playground's /24


def worker_name(main: str, k: int) -> str:
    """A worker is named after its playground (and so listed, labelled and destroyed with it)."""
    return f"{main}-w{k}"


def worker_number(name: str) -> int:
    return int(name.rsplit("-w", 1)[1])


def free_numbers(names: list[str], count: int) -> list[int]:
    """count worker numbers from the lowest not in use."""
    used = {worker_number(n) for n in names}
    return [k for k in range(1, MAX_WORKER_NUMBER + 1) if k not in used][:count]


def worker_slots(attributes: dict) -> int:
    """A worker's task slots: its worker-concurrency, else the schema's default."""
    from playground_agent import schema

    return int(attributes.get("worker-concurrency") or schema.default("worker-concurrency"))


def main_changes(attributes: dict, slots_follow_workers: bool, workers: int) -> dict[str, str]:
    """What the main's attributes become with this many workers: CeleryExecutor with any, LocalExecutor
    with none; and, unless the user set it at launch, airflow-parallelism at the workers' slots (more
    would leave tasks waiting in the broker, where task_queued_timeout requeues them; fewer idles
    slots), or the default again with none."""
    want = {"airflow-executor": "CeleryExecutor" if workers else "LocalExecutor"}
    if slots_follow_workers:
        want["airflow-parallelism"] = str(workers * worker_slots(attributes)) if workers else ""
    return {k: v for k, v in want.items() if attributes.get(k, "") != v}


def said(name: str, changes: dict[str, str]) -> list[str]:
    """The main's changes, for the user."""
    out = []
    if changes.get("airflow-executor") == "CeleryExecutor":
        out.append(f"{name}: CeleryExecutor again (its workers run the tasks)")
    if changes.get("airflow-executor") == "LocalExecutor":
        out.append(f"{name}: LocalExecutor (no workers: it runs its tasks itself; Redis idles)")
    if "airflow-parallelism" in changes:
        from playground_agent import schema

        value = changes["airflow-parallelism"] or f"{schema.default('airflow-parallelism')}, the default"
        out.append(f"{name}: airflow-parallelism {value} (its workers' slots)")
    return out


@dataclass
class Main:
    """A playground's main as scale sees it, whichever provider holds it."""

    name: str
    worker_of: str  # the main's name when this machine is a worker, else ""
    has_cluster: bool  # launched with --workers: a private network (local) or a cluster secret and rule (GCE)
    state: str  # "running" or what the provider calls the other states
    attributes: dict[str, str]
    slots_follow: bool  # airflow-parallelism follows the workers' slots (not set by the user at launch)
    where: str  # the flags that name it in a command, e.g. "--name pg" or "--name pg --zone europe-west2-b"


@dataclass
class Worker:
    name: str
    running: bool


class ClusterOps(ABC):
    """The small verbs scale needs from a provider (the model: SkyPilot's per-cloud provision modules under
    one provisioner). scale() below holds the steps, their order, the roll-back and every message."""

    @abstractmethod
    def main(self, name: str) -> Main: ...

    @abstractmethod
    def workers(self, main: Main) -> list[Worker]: ...

    @abstractmethod
    def set_main(self, main: Main, changes: dict[str, str], report: Report) -> None:
        """The attributes, then the agent's apply at once; healthy again before returning."""

    @abstractmethod
    def add_workers(self, main: Main, count: int, report: Report) -> list[tuple[str, str]]:
        """count more workers numbered from the lowest free number, each waited for; [(name, address)]."""

    @abstractmethod
    def warm_stop(self, worker: Worker) -> tuple[int, str]:
        """`systemctl stop airflow-worker` on it (Celery's warm shutdown: running tasks finish): exit, stderr."""

    @abstractmethod
    def remove(self, worker: Worker, report: Report) -> None: ...


def scale(ops: ClusterOps, name: str, count: int, force: bool, report: Report) -> list[str]:
    """A playground's Celery workers to count (0: none, the main runs its tasks itself); what was done.
    More: the main's new settings first (tasks wait in the broker for the new workers), then the workers; a
    failure puts the main's settings back to the workers it has. Fewer: stopped workers go first, then the
    highest numbers, each with a warm shutdown unless force; the main's slots shrink only once they are gone."""
    main = ops.main(name)
    if main.worker_of:
        raise PlaygroundError(f"--name: {name} is a worker of {main.worker_of}: scale {main.worker_of}")
    if not main.has_cluster:
        raise PlaygroundError(f"{name} was launched without --workers (LocalExecutor, nothing for workers to join): "
                              "launch a playground with --workers (`playground backup` this one and "
                              "`playground restore` onto it to keep its runs)")
    if main.state != "running":
        raise PlaygroundError(f"{name} is {main.state}: `playground start {main.where}` first")
    have = ops.workers(main)
    changes = main_changes(main.attributes, main.slots_follow, count)
    done: list[str] = []
    if count > len(have):
        _set_main(ops, main, changes, report)
        done += said(name, changes)
        try:
            for wname, address in ops.add_workers(main, count - len(have), report):
                done.append(f"launched worker {wname} at {address}")
        except PlaygroundError as exc:
            fresh = ops.main(name)
            now = ops.workers(fresh)
            try:
                _set_main(ops, fresh, main_changes(fresh.attributes, fresh.slots_follow, len(now)), report)
            except PlaygroundError as again:
                raise PlaygroundError(f"{exc}; and {again}") from exc
            raise PlaygroundError(f"{exc}; {name} keeps {len(now)} worker(s) and its settings for them: "
                                  f"`playground status {main.where}`") from exc
        done.append("new workers have the image's packages only: `playground deploy` your project again if "
                    "it has a requirements.txt")
        return done
    doomed = sorted(have, key=lambda w: (w.running, -worker_number(w.name)))[:len(have) - count]
    for w in doomed:
        if w.running and not force:
            report(f"{w.name}: warm shutdown, its running tasks finish first (--force does not wait)")
            code, err = ops.warm_stop(w)
            if code != 0:
                raise PlaygroundError(f"{w.name}: the worker did not stop cleanly ({err.strip()[-200:]}); "
                                      "it is kept: `playground scale --force` removes it anyway")
        report(f"removing {w.name}")
        ops.remove(w, report)
        done.append(f"removed worker {w.name}")
    _set_main(ops, main, changes, report)  # with none left the main runs its tasks itself, as a lone one does
    return done + said(name, changes)


def _set_main(ops: ClusterOps, main: Main, changes: dict[str, str], report: Report) -> None:
    if changes:
        report(f"{main.name}: " + ", ".join(f"{k} {v or 'default'}" for k, v in changes.items()))
        ops.set_main(main, changes, report)


def apply_error(name: str, changes: dict[str, str], why: str) -> PlaygroundError:
    given = " ".join(f"{k}={v}" for k, v in sorted(changes.items()))
    return PlaygroundError(f"{name}: the agent did not apply {given}: {why}")
