"""Shared fixtures: a metadata server speaking the GCE protocol, on loopback."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "agent"))
sys.path.insert(0, str(REPO / "cli"))

from playground.local import metadata_server  # noqa: E402


def metadata_doc(**attributes: str) -> dict:
    return {
        "instance": {"id": "4242424242424242424", "name": "demo", "zone": "projects/1/zones/europe-west2-b",
                     "attributes": dict(attributes)},
        "project": {"projectId": "playground-demo", "numericProjectId": 1, "attributes": {}},
    }


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


@pytest.fixture
def metadata(tmp_path: Path):
    fx = MetadataFixture(tmp_path / "metadata.json")
    yield fx
    fx.server.shutdown()
    fx.server.server_close()
