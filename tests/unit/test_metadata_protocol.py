"""The agent's metadata client against a server speaking the GCE metadata protocol."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from playground_agent.metadata import MetadataClient, MetadataError
from support import metadata_doc


def test_recursive_read_returns_instance_and_project(metadata):
    metadata.set(metadata_doc(**{"dags-bucket": "team-dags"}))
    doc, etag = MetadataClient(metadata.host).read_all()
    assert doc["instance"]["attributes"] == {"dags-bucket": "team-dags"}
    assert doc["project"]["projectId"] == "playground-demo"
    assert etag


def test_request_without_flavor_header_is_refused(metadata):
    url = "http://%s/computeMetadata/v1/instance/id" % metadata.host
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 403


def test_answers_carry_the_flavor_header_and_text_leaves(metadata):
    req = urllib.request.Request("http://%s/computeMetadata/v1/instance/id" % metadata.host,
                                 headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Metadata-Flavor"] == "Google"
        assert resp.read().decode() == "4242424242424242424"


def test_missing_key_is_404_and_not_retried(metadata):
    client = MetadataClient(metadata.host, retries=5, backoff=1.0)
    t0 = time.monotonic()
    with pytest.raises(MetadataError, match="not found"):
        client.get("instance/attributes/nope", recursive=False)
    assert time.monotonic() - t0 < 1.0


def test_server_down_gives_a_bounded_clear_failure():
    client = MetadataClient("127.0.0.1:9", retries=3, backoff=0.05, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(MetadataError, match="unreachable after 3 tries"):
        client.read_all()
    assert time.monotonic() - t0 < 5


def test_wait_for_change_returns_when_attributes_change(metadata):
    client = MetadataClient(metadata.host)
    _, etag = client.get("instance/attributes/")
    changed = metadata_doc(**{"airflow-schedulers": "2"})
    threading.Timer(0.5, metadata.set, args=(changed,)).start()
    t0 = time.monotonic()
    attrs, new_etag = client.get("instance/attributes/", wait_for_change=True, last_etag=etag, timeout_sec=10)
    assert 0.3 < time.monotonic() - t0 < 8
    assert attrs == {"airflow-schedulers": "2"}
    assert new_etag != etag


def test_wait_for_change_times_out_with_same_etag(metadata):
    client = MetadataClient(metadata.host)
    _, etag = client.get("instance/attributes/")
    _, again = client.get("instance/attributes/", wait_for_change=True, last_etag=etag, timeout_sec=1)
    assert again == etag


GOOGLE_AUTH = """
import google.auth, google.auth.transport.requests
credentials, project = google.auth.default()
credentials.refresh(google.auth.transport.requests.Request())
print(type(credentials).__module__, project, credentials.token, credentials.service_account_email)
"""


def test_google_auth_finds_the_instance_credentials_as_on_gce(metadata, tmp_path):
    """Google's own library (what Airflow's GCS log handler and MLflow use) pings the server, reads the
    project and the account by their path names, and fetches the token by the account's email."""
    import subprocess
    import sys

    from support import SERVICE_ACCOUNT_EMAIL, service_accounts

    doc = metadata_doc()
    doc["instance"]["serviceAccounts"] = service_accounts("ya29.local-token")
    metadata.set(doc)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GCE_METADATA_HOST": metadata.host,
           "GCE_METADATA_IP": metadata.host, "NO_GCE_CHECK": "False"}
    proc = subprocess.run([sys.executable, "-c", GOOGLE_AUTH], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-1500:]
    module, project, token, email = proc.stdout.split()
    assert (module, project, token, email) == (
        "google.auth.compute_engine.credentials", "playground-demo", "ya29.local-token", SERVICE_ACCOUNT_EMAIL)


def test_paths_use_gce_dashed_names_and_listings_show_them(metadata):
    metadata.set(metadata_doc(**{"logs-bucket": "team-logs"}))

    def get(path: str) -> str:
        req = urllib.request.Request("http://%s/computeMetadata/v1/%s" % (metadata.host, path),
                                     headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()

    assert get("project/project-id") == "playground-demo"
    assert get("project/numeric-project-id") == "1"
    assert "project-id\n" in get("project/") and "numeric-project-id\n" in get("project/")
    assert get("instance/attributes/") == "logs-bucket\n"  # attribute names as they are
    with pytest.raises(urllib.error.HTTPError) as err:
        get("instance/attributes/logsBucket")
    assert err.value.code == 404


def test_a_fault_drill_server_answers_500_for_its_window_then_serves(tmp_path):
    """`--fail-for S`, the local instances' failing-metadata drill: HTTP 500 to everything, then normal."""
    import json
    import socket
    import subprocess
    import sys

    doc = tmp_path / "metadata.json"
    doc.write_text(json.dumps(metadata_doc()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "playground.local.metadata_server", "--doc", str(doc),
                               "--bind", "127.0.0.1", "--port", str(port), "--fail-for", "3"])
    try:
        url = "http://127.0.0.1:%d/computeMetadata/v1/instance/id" % port
        req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        codes, t0 = [], time.monotonic()
        while time.monotonic() - t0 < 8:
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    codes.append(resp.status)
                    break
            except urllib.error.HTTPError as err:
                codes.append(err.code)
            except urllib.error.URLError:
                pass  # not listening yet
            time.sleep(0.2)
        assert codes and codes[-1] == 200 and 500 in codes, codes
        assert time.monotonic() - t0 >= 2.5, "it served before its window ended"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("value", ["soon", "-1", "4000"])
def test_a_bad_fault_drill_value_names_the_variable(monkeypatch, value):
    from playground.errors import PlaygroundError
    from playground.local import instance

    monkeypatch.setenv(instance.METADATA_FAULT_ENV, value)
    with pytest.raises(PlaygroundError, match="PLAYGROUND_LOCAL_METADATA_FAIL_S: expected seconds from 0 to 3600"):
        instance.metadata_fault()
