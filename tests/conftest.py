"""Shared fixtures: a metadata server speaking the GCE protocol, on loopback."""
from __future__ import annotations

import json
from pathlib import Path

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
