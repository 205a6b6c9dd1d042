"""What both providers decide the same way about a playground's Celery workers (issue 17): their names and
numbers, their slots, and what the main's attributes become with K of them."""
from __future__ import annotations

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
