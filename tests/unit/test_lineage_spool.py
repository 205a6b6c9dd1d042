"""The lineage spool: every event kept on disk until delivered, in order, once; a bad event never blocks."""
from __future__ import annotations

import fcntl
import os
import sys
import time

import pytest
from support import REPO

sys.path.insert(0, str(REPO / "lineage"))
from playground_lineage import spool  # noqa: E402


class Down(Exception):
    pass


def later(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_events_wait_while_mlflow_is_down_and_arrive_once_in_order(tmp_path):
    for i in range(5):
        spool.put({"n": i}, str(tmp_path))
    got = []

    def down(event):
        raise Down("mlflow down")

    assert spool.drain(down, later(), str(tmp_path), retry=(Down,)) == (0, 5)
    assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path), retry=(Down,)) == (5, 0)
    assert got == [0, 1, 2, 3, 4]
    assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path)) == (0, 0)
    assert got == [0, 1, 2, 3, 4], "delivered events are gone: a replay delivers nothing twice"


def test_a_failure_midway_keeps_that_event_and_everything_after_it(tmp_path):
    for i in range(4):
        spool.put({"n": i}, str(tmp_path))
    got = []

    def flaky(event):
        if event["n"] == 2 and not got.count("retried"):
            got.append("retried")
            raise Down("timeout")
        got.append(event["n"])

    assert spool.drain(flaky, later(), str(tmp_path), retry=(Down,)) == (2, 2)
    assert spool.drain(flaky, later(), str(tmp_path), retry=(Down,)) == (2, 0)
    assert [g for g in got if g != "retried"] == [0, 1, 2, 3]


def test_an_event_refused_for_good_is_set_aside_with_the_reason(tmp_path):
    spool.put({"n": 0}, str(tmp_path))
    spool.put({"n": 1}, str(tmp_path))
    got = []

    def picky(event):
        if event["n"] == 0:
            raise ValueError("400 INVALID_PARAMETER_VALUE")
        got.append(event["n"])

    assert spool.drain(picky, later(), str(tmp_path), retry=(Down,)) == (1, 0)
    assert got == [1]
    failed = [n for n in os.listdir(tmp_path) if n.endswith(".failed")]
    assert len(failed) == 1
    assert "INVALID_PARAMETER_VALUE" in (tmp_path / (failed[0][:-len(".failed")] + ".reason")).read_text()


def test_the_drain_is_bounded_in_time(tmp_path):
    for i in range(3):
        spool.put({"n": i}, str(tmp_path))
    got = []
    assert spool.drain(lambda e: got.append(e), time.monotonic() - 1, str(tmp_path)) == (0, 3)
    assert not got


def test_two_deliverers_never_deliver_the_same_event(tmp_path):
    spool.put({"n": 0}, str(tmp_path))
    with open(tmp_path / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process is draining
        got = []
        assert spool.drain(lambda e: got.append(e), later(), str(tmp_path)) == (0, 1)
        assert not got


def test_events_are_written_whole_and_durably(tmp_path):
    name = spool.put({"n": 1, "text": "x" * 100000}, str(tmp_path))
    assert spool.pending(str(tmp_path)) == [name]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("n", [50])
def test_arrival_order_is_kept_across_many_events(tmp_path, n):
    for i in range(n):
        spool.put({"n": i}, str(tmp_path))
    got = []
    spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path))
    assert got == list(range(n))


def test_events_another_deliverer_takes_are_left_in_place_without_blocking(tmp_path):
    spool.put({"n": 0, "kind": "dagrun"}, str(tmp_path))
    spool.put({"n": 1, "kind": "end"}, str(tmp_path))
    got = []
    assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path),
                       skip=lambda e: e["kind"] == "dagrun") == (1, 1)
    assert got == [1]
    assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path)) == (1, 0)
    assert got == [1, 0]


def test_a_held_lock_keeps_every_other_deliverer_out_until_released(tmp_path):
    spool.put({"n": 0}, str(tmp_path))
    got = []
    with spool.hold(1.0, str(tmp_path)) as held:
        assert held
        assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path)) == (0, 1)
        with spool.hold(0.2, str(tmp_path)) as again:
            assert not again, "a second holder waits, then gives up"
        assert spool.drain(lambda e: got.append(e["n"]), later(), str(tmp_path), held=True) == (1, 0)
    assert got == [0]


def test_delivery_waits_for_a_burst_to_end_but_never_longer_than_its_bound():
    from playground_lineage.delivery import due

    s = 1_000_000_000
    names = [f"{100 * s:020d}-a.json", f"{110 * s:020d}-b.json"]
    assert not due([], 200 * s, 2, 60)
    assert not due(names, 111 * s, 2, 60), "an event came 1 s ago: the burst goes on"
    assert due(names, 112 * s, 2, 60), "quiet for 2 s"
    busy = names + [f"{159 * s:020d}-c.json"]
    assert due(busy, 160 * s, 2, 60), "the oldest waited 60 s: deliver even mid-burst"
