"""Shared fixtures: a metadata server speaking the GCE protocol, on loopback."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import pytest
from playground.local import metadata_server
from support import hold_port, metadata_doc

# What a developer's machine often runs already: a local MLflow UI, an Airflow webserver.
COMMON_PORTS = (5000, 8080)


@pytest.fixture(scope="session", autouse=True)
def common_ports_taken():
    """The suite runs with 127.0.0.1:5000 and :8080 taken, so no test can depend on them being free."""
    held = [sock for sock in (hold_port(p) for p in COMMON_PORTS) if sock is not None]
    yield
    for sock in held:
        sock.close()


class MetadataFixture:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(metadata_doc())
        self.server = metadata_server.serve(metadata_server.file_loader(str(path)), "127.0.0.1", 0)
        self.host = "127.0.0.1:%d" % self.server.server_address[1]

    def set(self, doc: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.path)


@pytest.fixture(autouse=True)
def no_real_google(monkeypatch):
    """No test may reach Google's real APIs: unless a test points them at the fake server, every
    Google client (in this process and in the CLI processes it starts) gets a closed loopback port."""
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def fake_google(monkeypatch):
    """The local Google server (tests/fakegoogle.py), with every Google client of this process and the CLI
    processes it starts pointed at it, anonymously; the agent's Secret Manager calls too. At the end, any
    request that broke Google's API descriptions fails the test."""
    from fakegoogle import FakeGoogle

    fake = FakeGoogle()
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("PLAYGROUND_GOOGLE_ANONYMOUS", "1")
    monkeypatch.setenv("PLAYGROUND_SECRETMANAGER_ENDPOINT", fake.endpoint)
    yield fake
    fake.close()
    assert not fake.violations, "requests that break Google's API descriptions:\n" + "\n".join(fake.violations)


@pytest.fixture
def metadata(tmp_path: Path):
    fx = MetadataFixture(tmp_path / "metadata.json")
    yield fx
    fx.server.shutdown()
    fx.server.server_close()


# Where the suite's time goes (issue 35): per test file, its tests, their seconds (setup, call and teardown)
# and the local instances it launched and booted, printed at the end of every run. Instances are sampled
# from PLAYGROUND_HOME every half second (a boot takes seconds, so none is missed): a launch is a new
# (name, created_at), a boot a new container or VM process of one. cpu: the machine's busy CPU-seconds
# (/proc/stat, every process) while the file ran: near 2x its seconds, it is CPU-bound on these 2 cores;
# far below, it mostly waits (in a two-lane run the lanes share it).
class FileTimes:
    def __init__(self) -> None:
        import threading

        self.seconds: dict[str, float] = {}
        self.tests: dict[str, set[str]] = {}
        self.launches: dict[str, set[tuple]] = {}
        self.boots: dict[str, set[tuple]] = {}
        self.cpu: dict[str, float] = {}
        self.current = ""
        self.before = {made for made, _ in self.read()}  # what ran before this session is not its cost
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    @staticmethod
    def read() -> list[tuple[tuple, Optional[int]]]:
        """((name, created_at), the pid of its container or VM) of each local instance there is."""
        from playground import paths

        found = []
        for path in paths.instances_dir().glob("*/instance.json"):
            try:
                r = json.loads(path.read_text())
            except (OSError, ValueError):  # written or removed meanwhile: the next sample has it
                continue
            found.append(((r["name"], r["created_at"]),
                          r.get("pids", {}).get("nspawn" if r.get("runtime", "nspawn") == "nspawn" else "vm")))
        return found

    @staticmethod
    def busy_seconds() -> float:
        """CPU-seconds the machine spent busy since it booted (all CPUs: user, nice, system, irq...)."""
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return 0.0
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait

    def sample(self) -> None:
        last = self.busy_seconds()
        while not self.done.wait(0.5):
            now = self.busy_seconds()
            self.cpu[self.current] = self.cpu.get(self.current, 0.0) + now - last
            last = now
            for made, pid in self.read():
                if made in self.before:
                    continue
                self.launches.setdefault(self.current, set()).add(made)
                if pid:
                    self.boots.setdefault(self.current, set()).add((*made, pid))

    def rows(self) -> list[tuple[str, int, float, float, int, int]]:
        # An instance belongs to the file that made it (the session's shared one to the first that asked).
        seen_l: set = set()
        seen_b: set = set()
        out = []
        for f in self.seconds:
            new_l = self.launches.get(f, set()) - seen_l
            new_b = self.boots.get(f, set()) - seen_b
            seen_l |= new_l
            seen_b |= new_b
            out.append((f, len(self.tests[f]), self.seconds[f], self.cpu.get(f, 0.0), len(new_l), len(new_b)))
        return out


_times: Optional[FileTimes] = None


def pytest_sessionstart(session):
    global _times
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) keeps the table
        _times = FileTimes()


def pytest_runtest_logstart(nodeid, location):
    if _times is not None:
        _times.current = nodeid.split("::")[0]


def pytest_runtest_logreport(report):
    if _times is not None:
        f = report.nodeid.split("::")[0]
        _times.seconds[f] = _times.seconds.get(f, 0.0) + report.duration
        _times.tests.setdefault(f, set()).add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _times is None or not _times.seconds:
        return
    _times.done.set()
    rows = _times.rows()
    tr = terminalreporter
    tr.section("where the time goes: per file")
    tr.write_line(f"{'file':48} {'tests':>5} {'seconds':>8} {'cpu':>7} {'launched':>8} {'booted':>6}")
    for f, n, secs, cpu, launched, booted in sorted(rows, key=lambda r: -r[2]):
        tr.write_line(f"{f:48} {n:5d} {secs:8.1f} {cpu:7.0f} {launched:8d} {booted:6d}")
    tr.write_line(f"{'all':48} {sum(r[1] for r in rows):5d} {sum(r[2] for r in rows):8.1f} "
                  f"{sum(r[3] for r in rows):7.0f} {sum(r[4] for r in rows):8d} {sum(r[5] for r in rows):6d}")
