"""Shared fixtures: a metadata server speaking the GCE protocol, on loopback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from playground.local import metadata_server
from support import metadata_doc


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
def metadata(tmp_path: Path):
    fx = MetadataFixture(tmp_path / "metadata.json")
    yield fx
    fx.server.shutdown()
    fx.server.server_close()
