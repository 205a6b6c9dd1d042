"""GCE workers (issue 17) through the CLI into the fake Google server, which checks every request against
Google's discovery documents: the subnet's range as private-subnet, one firewall rule from the workers' tag
to the main's ports, the cluster secret in Secret Manager readable by the VMs' account alone (and read by the
agent's own code with the instance token), workers named, labelled and tagged after their main, and destroy
removing all of it. Waiting goes over SSH through IAP (tests/fakegcloud relays to nothing here), so the
launches below end at the health wait, with every resource made; bad input makes nothing."""
from __future__ import annotations

import json
import os

import pytest
from playground.main import app
from typer.testing import CliRunner

PROJECT = "my-team-project"
BUCKETS = ("--set", "dags-bucket=team-dags", "--set", "logs-bucket=team-logs")
SECRET = f"projects/{PROJECT}/secrets/playground-pg-team-cluster"


@pytest.fixture
def google(fake_google, monkeypatch, tmp_path):
    from support import REPO

    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    fake_google.compute.add_image(PROJECT, "playground-current", "playground-current-20261203", airflow="2-11-2",
                                  mlflow="3-6-0", postgresql="15")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for var in ("PLAYGROUND_PROVIDER", "PLAYGROUND_PROJECT", "PLAYGROUND_ZONE"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "google_compute_engine").write_text("not a key\n")
    monkeypatch.setenv("PATH", f"{REPO / 'tests' / 'fakegcloud'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IAP_TARGETS", "{}")
    return fake_google


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def launch(*more: str, buckets=BUCKETS):
    return run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-team", "--workers", "2",
               "--timeout", "2", "--profile", "current", *buckets, *more)


def metadata(inst: dict) -> dict:
    return {i["key"]: i["value"] for i in inst["metadata"]["items"]}


def test_a_main_and_two_workers_with_their_rule_and_secret_then_destroy_removes_all(google):
    res = launch()
    assert res.exit_code == 1  # the health wait, over SSH to nothing
    assert "playground destroy --provider gce" in flat(res.output) and "with its workers" in flat(res.output)
    vms = {i["name"]: i for i in google.compute.instances.values()}
    assert sorted(vms) == ["pg-team", "pg-team-w1", "pg-team-w2"]
    main, w1 = vms["pg-team"], vms["pg-team-w1"]
    m = metadata(main)
    assert m["airflow-executor"] == "CeleryExecutor" and m["private-subnet"] == "10.154.0.0/20"
    assert m["cluster-secret"] == SECRET and m["airflow-parallelism"] == "16"  # two workers' slots
    address = main["networkInterfaces"][0]["networkIP"]
    w = metadata(w1)
    assert w["role"] == "worker" and w["main-address"] == address and w["cluster-secret"] == SECRET
    assert w["dags-bucket"] == "team-dags" and w["logs-bucket"] == "team-logs"
    assert "pg-team-main" in main["tags"]["items"] and "pg-team-worker" in w1["tags"]["items"]
    assert w1["labels"]["playground-main"] == "pg-team" and "playground-main" not in main["labels"]
    assert len(main["disks"]) == 2 and len(w1["disks"]) == 1  # a worker has no data disk
    assert not any("accessConfigs" in nic for v in vms.values() for nic in v["networkInterfaces"])

    rule = google.compute.firewalls[(PROJECT, "playground-pg-team-workers")]
    assert rule["sourceTags"] == ["pg-team-worker"] and rule["targetTags"] == ["pg-team-main"]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["6379", "5432", "5000"]}]
    assert "sourceRanges" not in rule  # the workers alone, not an address range

    (grant,) = google.secrets.policies[(PROJECT, "playground-pg-team-cluster")]["bindings"]
    assert grant == {"role": "roles/secretmanager.secretAccessor",
                     "members": ["serviceAccount:123456789012-compute@developer.gserviceaccount.com"]}
    keys = google.secrets.values[(PROJECT, "playground-pg-team-cluster")]
    assert keys not in res.output and not any(line.split("=", 1)[-1].strip('"') in json.dumps(v)
                                              for line in keys.splitlines()[1:] for v in vms.values())

    res = run("destroy", "--provider", "gce", "--project", PROJECT, "--name", "pg-team", "--yes")
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert "worker VM pg-team-w1" in out and "firewall rule playground-pg-team-workers" in out
    assert "Secret Manager secret playground-pg-team-cluster" in out
    assert not google.compute.instances and not google.secrets.secrets
    assert list(google.compute.firewalls) == [(PROJECT, "playground-iap-ssh")]  # every playground's way in stays


def test_the_agent_reads_the_launchers_secret_with_the_instance_token(google, metadata_server):
    from playground_agent import cluster, schema
    from playground_agent.metadata import MetadataClient
    from support import agent_config

    launch()
    attrs = metadata(google.compute.instances[(PROJECT, "europe-west2-b", "pg-team-w1")])
    cfg = agent_config(**{k: v for k, v in attrs.items() if k != "gcp-project"})  # what the worker's agent reads
    got = cluster.from_secret(cfg, MetadataClient(metadata_server, retries=1))
    assert sorted(got) == sorted(cluster.WORKER_KEYS) and len(got["BROKER_PASSWORD"]) == 32
    google.secrets.policies.clear()  # no grant: Google answers 403, and so does the fake
    with pytest.raises(schema.ConfigError, match="cluster-secret.*answered 403"):
        cluster.from_secret(cfg, MetadataClient(metadata_server, retries=1))


@pytest.fixture
def metadata_server(metadata, fake_google, monkeypatch):
    from support import metadata_doc, service_accounts

    doc = metadata_doc()
    doc["instance"]["service-accounts"] = service_accounts(fake_google.secrets.token)
    metadata.set(doc)
    monkeypatch.setenv("PLAYGROUND_CLUSTER_SECRET_PATIENCE", "0")
    return metadata.host


@pytest.mark.parametrize("more,expected", [
    (BUCKETS[:2], "--set logs-bucket: expected a bucket with --workers on GCE"),
    (BUCKETS[2:], "--set dags-bucket: expected a bucket with --workers on GCE"),
    ((*BUCKETS, "--no-wait"), "--workers: the workers' health is checked once they are up, so it needs --wait"),
    ((*BUCKETS, "--set", "cluster-secret=projects/x/secrets/y"), "do not --set them too"),
    ((*BUCKETS, "--profile", "seed"), "--workers: profile seed has no Celery provider in its Airflow lock; use "
                                      "--profile current"),
])
def test_bad_input_makes_nothing(google, more, expected):
    res = launch(*more, buckets=())
    assert res.exit_code == 1 and expected in flat(res.output)
    assert not google.compute.instances and not google.compute.firewalls and not google.secrets.secrets


def test_a_failed_main_takes_its_rule_and_secret_with_it(google):
    google.compute.fail_next["instances.insert"] = "quota"
    res = launch()
    assert res.exit_code == 1 and "quota exceeded" in flat(res.output)
    assert not google.compute.instances and not google.secrets.secrets
    assert list(google.compute.firewalls) == [(PROJECT, "playground-iap-ssh")]
    assert google.calls("firewalls.delete") and google.calls("projects.secrets.delete")


def test_a_leftover_secret_is_named_and_nothing_is_made(google):
    google.secrets.secrets[(PROJECT, "playground-pg-team-cluster")] = {"name": SECRET}
    res = launch()
    assert res.exit_code == 1
    assert "the secret projects/my-team-project/secrets/playground-pg-team-cluster exists already" in flat(res.output)
    assert "gcloud secrets delete playground-pg-team-cluster" in flat(res.output)
    assert not google.compute.instances and not google.compute.firewalls


def test_scale_refuses_what_it_cannot_scale_in_one_line(google):
    assert run("launch", "--provider", "gce", "--project", PROJECT, "--name", "pg-solo", "--no-wait").exit_code == 0
    res = run("scale", "--provider", "gce", "--project", PROJECT, "--name", "pg-solo", "--workers", "1")
    assert res.exit_code == 1 and "pg-solo was launched without --workers" in flat(res.output)
    launch()
    res = run("scale", "--provider", "gce", "--project", PROJECT, "--name", "pg-team-w1", "--workers", "1")
    assert res.exit_code == 1 and "pg-team-w1 is a worker of pg-team: scale pg-team" in flat(res.output)


def test_scale_down_with_force_removes_the_highest_worker_then_sets_the_main(google):
    """--force removes at once (no warm shutdown over SSH); the main's new parallelism goes into its metadata,
    then its agent applies it over SSH, which goes nowhere here: that last step fails in one line."""
    launch()
    res = run("scale", "--provider", "gce", "--project", PROJECT, "--name", "pg-team", "--workers", "1", "--force")
    assert sorted(i["name"] for i in google.compute.instances.values()) == ["pg-team", "pg-team-w1"]
    assert metadata(google.compute.instances[(PROJECT, "europe-west2-b", "pg-team")])["airflow-parallelism"] == "8"
    assert res.exit_code == 1 and "pg-team: the agent did not apply airflow-parallelism=8" in flat(res.output)


def test_stop_and_start_take_the_workers_along_and_the_schedule_covers_them(google):
    """Without their main, workers can only idle, billed: stop stops them first, start starts them after it,
    and the nightly schedule has jobs for each."""
    launch()
    res = run("stop", "--provider", "gce", "--project", PROJECT, "--name", "pg-team")
    assert res.exit_code == 0, res.output
    assert {i["name"]: i["status"] for i in google.compute.instances.values()} == {
        "pg-team": "TERMINATED", "pg-team-w1": "TERMINATED", "pg-team-w2": "TERMINATED"}
    order = [c["params"]["instance"] for c in google.calls("instances.stop")]
    assert order[-1] == "pg-team", "the main stops last"
    res = run("start", "--provider", "gce", "--project", PROJECT, "--name", "pg-team", "--no-wait")
    assert res.exit_code == 0, res.output
    assert {i["status"] for i in google.compute.instances.values()} == {"RUNNING"}
    assert [c["params"]["instance"] for c in google.calls("instances.start")][0] == "pg-team"

    res = run("schedule", "--project", PROJECT, "--name", "pg-team", "--stop", "21:00", "--tz", "UTC")
    assert res.exit_code == 0, res.output
    jobs = sorted(j.rsplit("/", 1)[-1] for j in google.scheduler.jobs)
    assert jobs == ["playground-pg-team-stop", "playground-pg-team-w1-stop", "playground-pg-team-w2-stop"]
    assert run("schedule", "remove", "--project", PROJECT, "--name", "pg-team").exit_code == 0
    assert not google.scheduler.jobs


def test_the_subnet_gives_the_range_and_says_when_it_lacks_private_google_access(google):
    """VMs without an external IP reach Secret Manager and the buckets through Private Google Access (or a
    Cloud NAT): launch says so, with the command that turns it on."""
    from playground.gce import cluster
    from playground.gce.compute import GceSettings

    s = GceSettings(project=PROJECT)
    subnet, warning = cluster.subnet_range(s)
    assert subnet == "10.154.0.0/20" and "--enable-private-ip-google-access" in warning
    google.compute.google_access.add((PROJECT, "europe-west2", "default"))
    assert cluster.subnet_range(s) == ("10.154.0.0/20", "")
    res = launch("--zone", "asia-east1-a")  # no such subnet in the fake's project
    assert res.exit_code == 1 and "subnetwork: no subnet default in asia-east1" in flat(res.output)
    assert not google.compute.instances and not google.secrets.secrets
