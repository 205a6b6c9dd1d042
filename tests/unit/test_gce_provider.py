"""The GCE provider through the real google-cloud-compute client, against the fake Google server.

Every request the client sends is validated against Compute's discovery
document; any mismatch fails the test (see `google` fixture).
"""
from __future__ import annotations

import pytest
from playground.errors import PlaygroundError
from playground.gce import boot_disks, compute

PROJECT = "my-team-project"
ZONE = "europe-west2-b"


@pytest.fixture
def google(fake_google):
    fake_google.compute.add_image(PROJECT, "playground-seed", "playground-seed-20261124")
    return fake_google


def settings(**kw) -> compute.GceSettings:
    return compute.GceSettings(project=PROJECT, zone=ZONE, owner="ada", **kw)


def test_launch_builds_the_instance_the_design_asks_for(google):
    steps: list[str] = []
    got = compute.launch(settings(), "pg-demo", {"dags-bucket": "team-dags"}, steps.append)
    assert got["state"] == "running" and got["address"].startswith("10.")
    body = google.calls("instances.insert")[0]["body"]
    assert body["name"] == "pg-demo"
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/e2-standard-2"
    nic = body["networkInterfaces"][0]
    assert "accessConfigs" not in nic, "no external IP"
    disk = body["disks"][0]
    assert disk["boot"] and disk["initializeParams"]["sourceImage"].endswith("/images/playground-seed-20261124")
    assert body["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableVtpm": True,
                                              "enableIntegrityMonitoring": True}
    assert body["labels"] == {"managed-by": "playground", "playground-project": PROJECT,
                              "playground-profile": "seed", "owner": "ada"}
    assert "allow-iap-ssh" in body["tags"]["items"]
    items = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert items == {"gcp-project": PROJECT, "dags-bucket": "team-dags"}
    assert body["serviceAccounts"][0]["scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    # The operation was really waited on, with our own operations client, until DONE.
    assert len(google.calls("zoneOperations.wait")) >= 2
    assert steps[-1].endswith("done")


def test_stop_start_list_destroy(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    compute.stop(settings(), "pg-demo", lambda s: None)
    assert [(i["name"], i["state"]) for i in compute.list_instances(settings())] == [("pg-demo", "terminated")]
    compute.start(settings(), "pg-demo", lambda s: None)
    assert compute.list_instances(settings())[0]["state"] == "running"
    assert google.calls("instances.aggregatedList")[0]["query"]["filter"] == ['labels.managed-by = "playground"']
    compute.destroy(settings(), "pg-demo", lambda s: None)
    assert compute.list_instances(settings()) == []


@pytest.mark.parametrize("failure, expected", [
    ("permission", "permission denied in project my-team-project"),
    ("api-disabled", "gcloud services enable compute.googleapis.com --project my-team-project"),
    ("quota", "quota exceeded in project my-team-project"),
])
def test_api_errors_are_one_line_with_the_next_step(google, failure, expected):
    google.compute.fail_next["instances.insert"] = failure
    with pytest.raises(PlaygroundError) as err:
        compute.launch(settings(), "pg-demo", {}, lambda s: None)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not google.compute.instances


def test_missing_image_family(google):
    with pytest.raises(PlaygroundError, match="playground-current not found .*playground image build --gce"):
        compute.launch(settings(profile="current"), "pg-demo", {}, lambda s: None)
    assert not google.calls("instances.insert")


def test_already_exists_and_bad_name(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    with pytest.raises(PlaygroundError, match="instance pg-demo already exists"):
        compute.launch(settings(), "pg-demo", {}, lambda s: None)
    with pytest.raises(PlaygroundError, match="--name: expected"):
        compute.launch(settings(), "Bad_Name", {}, lambda s: None)


def test_zone_out_of_resources_leaves_nothing(google):
    google.compute.fail_next["instances.insert"] = "zone-exhausted"
    with pytest.raises(PlaygroundError, match="zone europe-west2-b is out of resources .* another --zone"):
        compute.launch(settings(), "pg-demo", {}, lambda s: None)
    assert not google.compute.instances


def test_the_fake_rejects_what_the_api_description_rejects(google):
    """The validator must fail on a wrong field, type or enum, or it checks nothing."""
    disc = google.apis[0][0]
    _, insert, params = disc.match("POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
    assert disc.validate(insert, params, {}, {"name": "x"}) == []
    assert "unknown field 'nmae'" in " ".join(disc.validate(insert, params, {}, {"name": "x", "nmae": "x"}))
    assert "expected an array" in disc.validate(insert, params, {}, {"name": "x", "disks": {}})[0]
    assert "is not one of" in disc.validate(insert, params, {}, {"name": "x", "disks": [{"type": "FLOPPY"}]})[0]
    assert "unknown query parameter" in disc.validate(insert, params, {"bogus": ["1"]}, {"name": "x"})[0]
    google.violations.clear()


def test_launch_opens_ssh_to_iap_once_per_network(google):
    compute.launch(settings(), "pg-one", {}, lambda s: None)
    compute.launch(settings(), "pg-two", {}, lambda s: None)
    (insert,) = google.calls("firewalls.insert")
    rule = insert["body"]
    assert rule["name"] == "playground-iap-ssh" and rule["direction"] == "INGRESS"
    assert rule["network"] == f"projects/{PROJECT}/global/networks/default"
    assert rule["sourceRanges"] == ["35.235.240.0/20"] and rule["targetTags"] == ["allow-iap-ssh"]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    assert google.calls("globalOperations.wait"), "the rule's operation was waited on"
    # The VMs carry the tag the rule targets.
    assert all("allow-iap-ssh" in c["body"]["tags"]["items"] for c in google.calls("instances.insert"))
    compute.launch(settings(network="team-net"), "pg-three", {}, lambda s: None)
    assert google.calls("firewalls.insert")[-1]["body"]["name"] == "playground-iap-ssh-team-net"


def test_no_permission_for_the_firewall_rule_is_a_warning_with_the_command(google):
    google.compute.fail_next["firewalls.insert"] = "permission"
    got = compute.launch(settings(), "pg-demo", {}, lambda s: None)
    assert got["state"] == "running"
    assert got["warning"].startswith("could not create the firewall rule playground-iap-ssh (permission denied)")
    assert ("gcloud compute firewall-rules create playground-iap-ssh --project my-team-project --network default "
            "--direction INGRESS --source-ranges 35.235.240.0/20 --allow tcp:22 --target-tags allow-iap-ssh"
            ) in got["warning"]


# --- the data disk and `playground upgrade` (issue 16) ---

def test_launch_gives_the_vm_a_data_disk_the_agent_finds_by_its_device_name(google):
    compute.launch(settings(data_disk_gb=30), "pg-demo", {}, lambda s: None)
    boot, data = google.calls("instances.insert")[0]["body"]["disks"]
    assert boot["boot"] and boot["deviceName"] == compute.BOOT_DEVICE
    assert not data.get("boot") and data["deviceName"] == "playground-data" == compute.DATA_DEVICE
    assert data["initializeParams"] == {"diskName": "pg-demo-data", "diskSizeGb": "30",
                                        "diskType": f"zones/{ZONE}/diskTypes/pd-balanced"}
    assert data["autoDelete"], "destroy removes the data disk with the VM, as it says"
    assert (PROJECT, ZONE, "pg-demo-data") in google.compute.disks
    compute.destroy(settings(), "pg-demo", lambda s: None)
    assert not google.compute.disks


def newer_image(google, name="playground-seed-20261203", **labels):
    google.compute.add_image(PROJECT, "playground-seed", name, created="2026-12-03T10:00:00.000-08:00", **labels)


def attached(google, name="pg-demo"):
    return {d["deviceName"]: d["source"].rsplit("/", 1)[-1] for d in google.compute.instances[(PROJECT, ZONE, name)]
            ["disks"]}


def test_upgrade_swaps_the_boot_disk_of_a_stopped_vm_and_keeps_its_data_disk(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    newer_image(google)
    done = boot_disks.upgrade(settings(), "pg-demo", None, lambda s: None)
    assert done["change"] == "playground-seed-20261124 -> playground-seed-20261203 (same versions, a newer build)"
    disks = attached(google)
    assert disks["playground-data"] == "pg-demo-data", "the data disk moved"
    new_boot = disks[compute.BOOT_DEVICE]
    assert new_boot.startswith("pg-demo-boot-")
    assert google.compute.disks[(PROJECT, ZONE, new_boot)]["sourceImage"].endswith("/playground-seed-20261203")
    assert google.compute.instances[(PROJECT, ZONE, "pg-demo")]["status"] == "RUNNING"
    order = [r["method"] for r in google.requests if not r["method"].startswith("zoneOperations")]
    sequence = [m for m in order if m in ("disks.insert", "instances.stop", "instances.detachDisk",
                                          "instances.attachDisk", "instances.start")]
    # The disk is made before anything stops: a failure there leaves the machine running as it was.
    assert sequence == ["disks.insert", "instances.stop", "instances.detachDisk", "instances.attachDisk",
                        "instances.start"]
    assert done["old_disk"] == "pg-demo"
    boot_disks.delete_disk(settings(), done["old_disk"], lambda s: None)
    assert (PROJECT, ZONE, "pg-demo") not in google.compute.disks


def test_upgrade_labels_the_new_boot_disk_with_the_vms_profile_not_the_settings_default(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)  # profile seed, the VM's label says so
    newer_image(google)
    done = boot_disks.upgrade(settings(profile="local"), "pg-demo", None, lambda s: None)
    assert done["change"].endswith("playground-seed-20261203 (same versions, a newer build)"), "the VM's family"
    new_boot = attached(google)[compute.BOOT_DEVICE]
    assert google.compute.disks[(PROJECT, ZONE, new_boot)]["labels"]["playground-profile"] == "seed"


@pytest.mark.parametrize("labels, image, says", [
    ({"airflow": "2-11-2", "postgresql": "15"}, None, "a change of major version is refused"),
    ({"airflow": "1-10-15"}, None, "a downgrade is refused"),
    ({}, "playground-seed-20261124", "already runs"),
])
def test_a_refused_upgrade_is_one_line_and_changes_nothing(google, labels, image, says):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    newer_image(google, **labels)
    before = attached(google)
    if says == "already runs":
        assert says in boot_disks.upgrade(settings(), "pg-demo", image, lambda s: None)["change"]
    else:
        with pytest.raises(PlaygroundError, match=says):
            boot_disks.upgrade(settings(), "pg-demo", image, lambda s: None)
    assert attached(google) == before
    assert not google.calls("disks.insert") and not google.calls("instances.stop")


def test_an_older_image_named_is_a_downgrade(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    newer_image(google)
    boot_disks.upgrade(settings(), "pg-demo", None, lambda s: None)
    with pytest.raises(PlaygroundError, match="was built before playground-seed-20261203"):
        boot_disks.upgrade(settings(), "pg-demo", "playground-seed-20261124", lambda s: None)


def test_a_vm_without_a_data_disk_is_refused_before_anything_changes(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    inst = google.compute.instances[(PROJECT, ZONE, "pg-demo")]
    inst["disks"] = [d for d in inst["disks"] if d.get("boot")]  # a VM launched before data disks
    newer_image(google)
    with pytest.raises(PlaygroundError, match="keeps its data on its boot disk"):
        boot_disks.upgrade(settings(), "pg-demo", None, lambda s: None)
    assert not google.calls("disks.insert")


def test_a_failed_attach_puts_the_old_boot_disk_back(google):
    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    newer_image(google)
    google.compute.fail_next["instances.attachDisk"] = "permission"
    with pytest.raises(PlaygroundError, match="permission denied"):
        boot_disks.upgrade(settings(), "pg-demo", None, lambda s: None)
    assert attached(google)[compute.BOOT_DEVICE] == "pg-demo"


def test_the_fake_refuses_what_gce_refuses_about_boot_disks(google):
    """So the order upgrade uses is the one that works on Google: no boot-disk change on a running VM, no
    deleting a disk a VM holds, no start without a boot disk."""
    from google.api_core import exceptions as gex

    compute.launch(settings(), "pg-demo", {}, lambda s: None)
    instances, _, _ = compute._clients()
    with pytest.raises(gex.BadRequest, match="running instance"):
        instances.detach_disk(project=PROJECT, zone=ZONE, instance="pg-demo", device_name=compute.BOOT_DEVICE)
    with pytest.raises(gex.BadRequest, match="already being used"):
        boot_disks._disks_client().delete(project=PROJECT, zone=ZONE, disk="pg-demo-data")
