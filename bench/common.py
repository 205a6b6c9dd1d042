"""What every benchmark shares: a figure's row (values over repetitions, its aim) and the table."""
from __future__ import annotations

import contextlib
import statistics
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    figure: str
    values: list[float]
    aim: Optional[float] = None
    higher_is_better: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> Optional[bool]:
        if self.aim is None or not self.values:
            return None
        return self.median >= self.aim if self.higher_is_better else self.median < self.aim

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(median=self.median if self.values else None, min=min(self.values, default=None),
                 max=max(self.values, default=None), met=self.met)
        return d


def table(rows: list[Row], title: str) -> Table:
    out = Table("figure", "n", "min", "median", "max", "aim", "met", title=title)
    for r in rows:
        aim = "-" if r.aim is None else f"{'>=' if r.higher_is_better else '<'} {r.aim:g}"
        met = {None: "-", True: "yes", False: "NO"}[r.met]
        if r.values:
            out.add_row(r.figure, str(len(r.values)), f"{min(r.values):.2f}", f"{r.median:.2f}",
                        f"{max(r.values):.2f}", aim, met)
        else:
            out.add_row(r.figure, "0", "-", "-", "-", aim, met)
    return out


def print_rows(rows: list[Row], title: str) -> None:
    Console(width=max(Console().width, 130)).print(table(rows, title))


# The smoke run (bench/run --quick, what CI runs) boots one instance for every part that needs only "a
# healthy local instance" and no attributes of its own, in the order bench/run gives: its figures then
# come from an instance that earlier parts used. A full run gives each part a fresh one.
SHARED_NAME = "pgbench-shared"
_shared: dict = {"on": False, "launched": None}


@contextlib.contextmanager
def shared_instances() -> Iterator[None]:
    """Within the block, bench_instance() without attributes hands out one instance, destroyed at the end."""
    from playground import paths
    from playground.local import instance

    _shared["on"] = True
    try:
        yield
    finally:
        _shared.update(on=False, launched=None)
        if (paths.instances_dir() / SHARED_NAME).exists():
            instance.destroy(SHARED_NAME)


def _launch(name: str, attributes: Optional[dict]) -> tuple:
    from playground import paths
    from playground.image import local_build
    from playground.local import instance

    image = local_build.newest_image("local")
    if image is None:
        raise SystemExit("no local image: run `playground image build` first")
    if (paths.instances_dir() / name).exists():
        instance.destroy(name)
    return instance.launch(name, "playground-bench", attributes or {}, image, "local", lambda s: None, 300)


@contextlib.contextmanager
def fresh_instance(name: str, attributes: Optional[dict] = None) -> Iterator[tuple]:
    """A fresh local instance of the newest local image, and its first health report; destroyed after,
    whatever happens (a leftover of the same name from an interrupted run is destroyed first)."""
    from playground import paths
    from playground.local import instance

    try:
        yield _launch(name, attributes)
    finally:
        if (paths.instances_dir() / name).exists():
            instance.destroy(name)


@contextlib.contextmanager
def bench_instance(name: str, attributes: Optional[dict] = None) -> Iterator[tuple]:
    """A fresh instance (fresh_instance); inside shared_instances(), without attributes, the run's one shared
    instance instead, kept for the next part."""
    from playground.local import instance

    if _shared["on"] and not attributes:
        if _shared["launched"] is None or not instance.is_running(instance.load(SHARED_NAME)):
            _shared["launched"] = _launch(SHARED_NAME, None)
        yield _shared["launched"]
        return
    with fresh_instance(name, attributes) as launched:
        yield launched


@contextlib.contextmanager
def bench_instances(names: list[str]) -> Iterator[list[tuple]]:
    """Several instances: the first as bench_instance gives it (the shared one in a smoke run), the others
    fresh, each of its own."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(bench_instance(names[0]))] + [
            stack.enter_context(fresh_instance(name)) for name in names[1:]]
