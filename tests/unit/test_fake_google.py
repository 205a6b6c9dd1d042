"""The fake Google server is as strict as the API descriptions it serves: a request Google would refuse is
refused (400 in Google's error format) and recorded as a violation, which fails the test that sent it."""
from __future__ import annotations

import pytest
import requests
from fakegoogle import FakeGoogle

PROJECT, ZONE = "my-team-project", "europe-west2-b"
INSTANCE = {"name": "pg-demo", "machineType": f"zones/{ZONE}/machineTypes/e2-standard-4"}


@pytest.fixture
def fake():
    server = FakeGoogle()
    yield server
    server.close()


def send(fake, verb: str, path: str, body=None):
    return requests.request(verb, fake.endpoint + path, json=body, timeout=10)


def refused(fake, resp, words: str) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert any(words in v for v in fake.violations), fake.violations


def test_a_good_insert_is_accepted(fake):
    resp = send(fake, "POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances", INSTANCE)
    assert resp.status_code == 200 and not fake.violations


def test_a_field_the_method_requires_is_missing(fake):
    body = {k: v for k, v in INSTANCE.items() if k != "name"}
    resp = send(fake, "POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances", body)
    refused(fake, resp, "field 'name' is required by compute.instances.insert")


def test_firewall_insert_needs_its_name_too(fake):
    resp = send(fake, "POST", f"/compute/v1/projects/{PROJECT}/global/firewalls", {"network": "global/networks/x"})
    refused(fake, resp, "field 'name' is required by compute.firewalls.insert")


def test_an_output_only_field_is_refused(fake):
    resp = send(fake, "POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances",
                dict(INSTANCE, status="RUNNING"))
    refused(fake, resp, "Instance.status: output-only field sent in a request")


def test_an_output_only_field_of_a_scheduler_job_is_refused(fake):
    job = {"name": f"projects/{PROJECT}/locations/europe-west2/jobs/j", "schedule": "0 21 * * *",
           "state": "ENABLED"}
    resp = send(fake, "POST", f"/v1/projects/{PROJECT}/locations/europe-west2/jobs", job)
    refused(fake, resp, "Job.state: output-only field sent in a request")


def test_a_path_parameter_must_match_its_whole_pattern(fake):
    # Compute's zone pattern matches a prefix of this value; Google matches the whole of it.
    resp = send(fake, "GET", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/pg-demo_")
    refused(fake, resp, "path parameter instance='pg-demo_' does not match")
    resp = send(fake, "GET", f"/compute/v1/projects/{PROJECT}/zones/Europe-west2-b/instances/pg-demo")
    refused(fake, resp, "path parameter zone='Europe-west2-b' does not match")


def test_an_unknown_field_and_a_wrong_type_are_refused(fake):
    resp = send(fake, "POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances",
                dict(INSTANCE, colour="blue", canIpForward="yes"))
    refused(fake, resp, "unknown field 'colour'")
    refused(fake, resp, "canIpForward: expected a boolean")
