"""A playground with workers: the main hands out as many tasks at once as its workers have slots, unless
the user set airflow-parallelism; with no worker, LocalExecutor and the default again (issue 17)."""
from __future__ import annotations

from playground.providers.workers import main_changes, worker_slots


def main(follow: bool = True, **attributes: str) -> tuple[dict, bool]:
    """A main's attributes and whether its slots follow its workers' (both providers keep these two)."""
    return {"airflow-executor": "CeleryExecutor", **attributes}, follow


def changes(main_: tuple[dict, bool], workers: int) -> dict:
    return main_changes(main_[0], main_[1], workers)


def test_parallelism_follows_the_workers_slots_and_returns_to_the_default_with_none():
    assert changes(main(**{"airflow-parallelism": "16"}), 3) == {"airflow-parallelism": "24"}
    assert changes(main(**{"airflow-parallelism": "16", "worker-concurrency": "4"}), 2) == {
        "airflow-parallelism": "8"}
    assert changes(main(**{"airflow-parallelism": "16"}), 0) == {
        "airflow-executor": "LocalExecutor", "airflow-parallelism": ""}
    back = main(**{"airflow-executor": "LocalExecutor", "airflow-parallelism": ""})
    assert changes(back, 1) == {"airflow-executor": "CeleryExecutor", "airflow-parallelism": "8"}
    assert changes(main(**{"airflow-parallelism": "16"}), 2) == {}  # nothing to apply


def test_a_parallelism_the_user_set_is_left_alone():
    assert changes(main(follow=False, **{"airflow-parallelism": "40"}), 1) == {}
    assert changes(main(follow=False, **{"airflow-parallelism": "40"}), 0) == {
        "airflow-executor": "LocalExecutor"}


def test_a_worker_has_the_schemas_default_slots_unless_set():
    assert worker_slots({}) == 8 and worker_slots({"worker-concurrency": "3"}) == 3
