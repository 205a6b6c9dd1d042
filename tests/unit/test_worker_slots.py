"""A playground with workers: the main hands out as many tasks at once as its workers have slots, unless
the user set airflow-parallelism; with no worker, LocalExecutor and the default again (issue 17)."""
from __future__ import annotations

from playground.local.instance import Instance
from playground.providers.local import LocalProvider
from playground.providers.workers import worker_slots


def main(follow: bool = True, **attributes: str) -> Instance:
    return Instance(name="pgw", project="p", profile="local", image="/i", slot=1, instance_id="1", created_at=0.0,
                    attributes={"airflow-executor": "CeleryExecutor", **attributes}, slots_follow_workers=follow)


def test_parallelism_follows_the_workers_slots_and_returns_to_the_default_with_none():
    assert LocalProvider._main_changes(main(**{"airflow-parallelism": "16"}), 3) == {"airflow-parallelism": "24"}
    assert LocalProvider._main_changes(main(**{"airflow-parallelism": "16", "worker-concurrency": "4"}), 2) == {
        "airflow-parallelism": "8"}
    assert LocalProvider._main_changes(main(**{"airflow-parallelism": "16"}), 0) == {
        "airflow-executor": "LocalExecutor", "airflow-parallelism": ""}
    back = main(**{"airflow-executor": "LocalExecutor", "airflow-parallelism": ""})
    assert LocalProvider._main_changes(back, 1) == {"airflow-executor": "CeleryExecutor", "airflow-parallelism": "8"}
    assert LocalProvider._main_changes(main(**{"airflow-parallelism": "16"}), 2) == {}  # nothing to apply


def test_a_parallelism_the_user_set_is_left_alone():
    assert LocalProvider._main_changes(main(follow=False, **{"airflow-parallelism": "40"}), 1) == {}
    assert LocalProvider._main_changes(main(follow=False, **{"airflow-parallelism": "40"}), 0) == {
        "airflow-executor": "LocalExecutor"}


def test_a_worker_has_the_schemas_default_slots_unless_set():
    assert worker_slots({}) == 8 and worker_slots({"worker-concurrency": "3"}) == 3
