"""The GCE provider: playground VMs in the user's project with google-cloud-compute: make, find, list,
stop, start and delete them and their images (the ways in over SSH are access.py; the boot-disk swap of an
upgrade, boot_disks.py).

Operations are waited on with our own ZoneOperationsClient built from the same
endpoint and credentials as the instances client: `ExtendedOperation.result()`
polls through a client built without them, so against a custom endpoint it
would call the real API.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import PlaygroundError
from . import iap_firewall
from .google import reachable
from .operations import explain, wait
from .vm_settings import MANAGED_LABEL, NAME_RE, GceSettings

# One scope, cloud-platform, and the service account's IAM roles decide what the VM may do.
# - Secret Manager's versions.access (the Cloud SQL password) accepts only cloud-platform; with
#   narrower scopes it answers "Request had insufficient authentication scopes"
#   (https://cloud.google.com/secret-manager/docs/accessing-the-api).
# - gcsfuse writes to the DAGs bucket, MLflow writes gs:// artifacts, Airflow writes remote task logs,
#   the Cloud SQL Auth Proxy connects (sqlservice.admin), the guest agent writes logs and metrics:
#   cloud-platform covers all of them.
# Google's best practice is exactly this: the cloud-platform scope on the VM, access limited by the
# roles granted to its service account
# (https://cloud.google.com/sdk/gcloud/reference/compute/instances/set-service-account,
#  https://cloud.google.com/compute/docs/access/create-enable-service-accounts-for-instances#best_practices).
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SCOPES = [CLOUD_PLATFORM]
Report = Callable[[str], None]
# The guest names an attached disk /dev/disk/by-id/google-DEVICE_NAME after the deviceName it was attached
# with (https://cloud.google.com/compute/docs/disks/format-mount-disk-linux): the agent finds its data
# volume by that name (agent/playground_agent/data.py DEVICE).
DATA_DEVICE = "playground-data"
BOOT_DEVICE = "playground-boot"


def _clients():
    """Instances, images and zone-operations clients sharing one endpoint and credentials."""
    from google.cloud import compute_v1

    from .google import client_kwargs

    kw = client_kwargs("compute")
    return compute_v1.InstancesClient(**kw), compute_v1.ImagesClient(**kw), compute_v1.ZoneOperationsClient(**kw)


def instance_resource(s: GceSettings, name: str, image_link: str, attributes: dict[str, str],
                      tags: tuple[str, ...] = (), labels: Optional[dict[str, str]] = None, data_disk: bool = True):
    """The VM; tags and labels beyond every playground's (a main's and its workers', gce/cluster.py); a worker
    has no data disk (the main's database and folders are its)."""
    from google.cloud import compute_v1

    zone_path = f"zones/{s.zone}"
    nic = compute_v1.NetworkInterface(network=f"global/networks/{s.network}")  # no access config: no external IP
    if s.subnetwork:
        nic.subnetwork = f"regions/{s.zone[:-2]}/subnetworks/{s.subnetwork}"
    disks = [compute_v1.AttachedDisk(
            boot=True, auto_delete=True, type_="PERSISTENT", device_name=BOOT_DEVICE,
            initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=image_link, disk_size_gb=s.disk_size_gb,
                disk_type=f"{zone_path}/diskTypes/{s.disk_type}")),
            # The data volume: a blank disk the agent formats and mounts at its first boot, and which a new
            # boot disk (`playground upgrade`) leaves where it is. Deleted with the VM (auto_delete), as
            # `destroy` says; the guest sees it as /dev/disk/by-id/google-playground-data.
            compute_v1.AttachedDisk(
                boot=False, auto_delete=True, type_="PERSISTENT", device_name=DATA_DEVICE,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    disk_name=f"{name[:58]}-data", disk_size_gb=s.data_disk_gb,  # a disk name is 63 at most
                    disk_type=f"{zone_path}/diskTypes/{s.disk_type}"))]
    return compute_v1.Instance(
        name=name,
        machine_type=f"{zone_path}/machineTypes/{s.machine_type}",
        disks=disks if data_disk else disks[:1],
        network_interfaces=[nic],
        service_accounts=[compute_v1.ServiceAccount(email=s.service_account, scopes=SCOPES)],
        shielded_instance_config=compute_v1.ShieldedInstanceConfig(
            enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True),
        labels=dict(s.labels(), **(labels or {})),
        tags=compute_v1.Tags(items=["playground", "allow-iap-ssh", *tags]),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v)
                                            for k, v in sorted({"gcp-project": s.project, **attributes}.items())]),
    )


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise PlaygroundError(f"--name: expected 1-63 of a-z 0-9 -, starting with a letter, got {name!r}")


@reachable("compute")
def launch(s: GceSettings, name: str, attributes: dict[str, str], report: Report, tags: tuple[str, ...] = (),
           labels: Optional[dict[str, str]] = None, data_disk: bool = True) -> dict:
    """Create the VM and wait for it; on failure remove what was made."""
    s.check()
    check_name(name)
    instances, images, ops = _clients()
    family = f"playground-{s.profile}"
    image_project = s.image_project or s.project
    from google.api_core import exceptions as gex

    try:
        report(f"image family {family}")
        image = images.get_from_family(project=image_project, family=family)
    except gex.NotFound as exc:
        from ..image import profiles

        how = (f"push it with `playground image push --gce --profile {s.profile}`" if profiles.debian_suite(s.profile)
               else f"build it with `playground image build --gce --profile {s.profile}`")
        raise PlaygroundError(f"image family {family} not found in project {image_project}: {how}") from exc
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, name) from exc
    warning = iap_firewall.ensure(s, report)
    try:
        report(f"creating {name} in {s.zone} from {image.name}")
        op = instances.insert(project=s.project, zone=s.zone,
                              instance_resource=instance_resource(s, name, image.self_link, attributes, tags,
                                                                  labels, data_disk))
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, name) from exc
    try:
        wait(ops, s, op, report, f"create {name}")
    except PlaygroundError:
        _cleanup(instances, ops, s, name, report)
        raise
    got = instances.get(project=s.project, zone=s.zone, instance=name)
    return dict(describe(got), warning=warning) if warning else describe(got)


def _cleanup(instances, ops, s: GceSettings, name: str, report: Report) -> None:
    from google.api_core import exceptions as gex

    try:
        op = instances.delete(project=s.project, zone=s.zone, instance=name)
        wait(ops, s, op, report, f"remove half-made {name}")
    except gex.NotFound:
        pass


def describe(inst) -> dict:
    """The row of a compute_v1.Instance (describe_json reads the API's JSON of one)."""
    return describe_json(type(inst).to_dict(inst, preserving_proto_field_name=False))


def describe_json(inst: dict) -> dict:
    labels = inst.get("labels") or {}
    nic = (inst.get("networkInterfaces") or [{}])[0]
    return {"name": inst.get("name", ""), "provider": "gce", "runtime": "vm",
            "project": labels.get("playground-project", ""), "profile": labels.get("playground-profile", ""),
            "state": str(inst.get("status", "")).lower(), "zone": str(inst.get("zone", "")).rsplit("/", 1)[-1],
            "machine_type": str(inst.get("machineType", "")).rsplit("/", 1)[-1], "address": nic.get("networkIP", ""),
            "created": inst.get("creationTimestamp", ""), "main": labels.get("playground-main", ""),
            "slots": labels.get("playground-slots", ""),
            "attributes": {i.get("key"): i.get("value", "") for i in (inst.get("metadata") or {}).get("items") or []
                           if i.get("key") != "ssh-keys"}}


@reachable("compute")
def _call(s: GceSettings, name: str, verb: str, report: Report) -> None:
    from google.api_core import exceptions as gex

    check_name(name)
    s = locate(s, name, report)
    instances, _, ops = _clients()
    try:
        op = getattr(instances, verb)(project=s.project, zone=s.zone, instance=name)
    except gex.NotFound as exc:
        raise PlaygroundError(f"no instance {name} in project {s.project} zone {s.zone} "
                              "(see `playground list --provider gce`)") from exc
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, name) from exc
    wait(ops, s, op, report, f"{verb} {name}")


@reachable("compute")
def set_attributes(s: GceSettings, name: str, attributes: dict[str, str], report: Report) -> None:
    """instances.setMetadata with the instance's current fingerprint: Compute Engine refuses a stale or
    missing one with 412 conditionNotMet (Metadata.fingerprint in compute v1's discovery document), so a
    change made meanwhile by someone else is read again, not overwritten."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    check_name(name)
    s = locate(s, name, report)
    instances, _, ops = _clients()
    for attempt in range(3):
        try:
            inst = instances.get(project=s.project, zone=s.zone, instance=name)
            items = {i.key: i.value for i in inst.metadata.items}
            items.update(attributes)
            body = compute_v1.Metadata(fingerprint=inst.metadata.fingerprint,
                                       items=[compute_v1.Items(key=k, value=v) for k, v in sorted(items.items())])
            report(f"setting {', '.join(sorted(attributes))} on {name}")
            op = instances.set_metadata(project=s.project, zone=s.zone, instance=name, metadata_resource=body)
        except gex.NotFound as exc:
            raise PlaygroundError(f"no instance {name} in project {s.project} zone {s.zone} "
                                  "(see `playground list --provider gce`)") from exc
        except gex.PreconditionFailed as exc:
            if attempt == 2:
                raise PlaygroundError(f"the metadata of {name} kept changing meanwhile (412 conditionNotMet "
                                      "three times): try again") from exc
            continue  # changed between our read and write: read it again
        except gex.GoogleAPICallError as exc:
            raise explain(exc, s, name) from exc
        wait(ops, s, op, report, f"set metadata of {name}")
        return


def locate(s: GceSettings, name: str, report: Report = lambda m: None) -> GceSettings:
    """The settings with the instance's own zone: the zone given, else found across every zone."""
    import dataclasses

    if s.zone_chosen:
        return s
    report(f"looking for {name} in every zone of {s.project}")
    found = playgrounds(s, name)
    if not found:
        raise PlaygroundError(f"no playground {name} in project {s.project}, in any zone "
                              f"(see `playground list --project {s.project}`)")
    if len(found) > 1:
        raise PlaygroundError(f"playgrounds named {name} in several zones of {s.project} ("
                              + ", ".join(r["zone"] for r in found) + "): pass --zone")
    return dataclasses.replace(s, zone=found[0]["zone"], zone_chosen=True)


def stop(s: GceSettings, name: str, report: Report) -> None:
    _call(s, name, "stop", report)


def start(s: GceSettings, name: str, report: Report) -> None:
    _call(s, name, "start", report)


def destroy(s: GceSettings, name: str, report: Report) -> None:
    _call(s, name, "delete", report)


@reachable("compute")
def list_instances(s: GceSettings) -> list[dict]:
    """Every playground of the project, in every zone (instances.aggregatedList), by label: over REST, so
    that `list` and `status` need no client library (issue 40: 2.7 s, most of it importing compute_v1)."""
    from .google import api_error, rest

    rows: list[dict] = []
    params = {"filter": f'labels.{MANAGED_LABEL[0]} = "{MANAGED_LABEL[1]}"'}
    while True:
        code, doc = rest("GET", "compute", f"compute/v1/projects/{s.project}/aggregated/instances", params=params)
        if code != 200:
            raise explain(api_error(code, doc), s)
        for scoped in (doc.get("items") or {}).values():
            rows += [describe_json(i) for i in scoped.get("instances") or []]
        if not doc.get("nextPageToken"):
            break
        params["pageToken"] = doc["nextPageToken"]
    return sorted(rows, key=lambda r: (r["name"], r["zone"]))


@reachable("compute")
def family_image(s: GceSettings, project: str, family: str):
    """The newest non-deprecated image of a family in a project, or None (images.getFromFamily)."""
    from google.api_core import exceptions as gex

    _, images, _ = _clients()
    try:
        return images.get_from_family(project=project, family=family)
    except gex.NotFound:
        return None
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc


def playgrounds(s: GceSettings, name: Optional[str] = None) -> list[dict]:
    """The project's playgrounds in the chosen zone (every zone when none was chosen), or the one named."""
    return [r for r in list_instances(s) if (name is None or r["name"] == name)
            and (not s.zone_chosen or r["zone"] == s.zone)]


def workers_of(s: GceSettings, main: str) -> list[dict]:
    """The rows of a main's Celery workers (labelled playground-main=MAIN), in any zone."""
    import dataclasses

    return [r for r in playgrounds(dataclasses.replace(s, zone_chosen=False)) if r.get("main") == main]


def list_images(s: GceSettings, profile: str) -> list[dict]:
    """The profile's images in the image project (the family playground-PROFILE), oldest first; the
    newest is the one `launch` takes."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    _, images, _ = _clients()
    project = s.image_project or s.project
    request = compute_v1.ListImagesRequest(project=project, filter=f'labels.playground-profile = "{profile}"')
    try:
        found = [i for i in images.list(request=request) if i.family == f"playground-{profile}"]
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc
    return [{"name": i.name, "family": i.family, "created": i.creation_timestamp, "status": i.status,
             "airflow": i.labels.get("airflow", "").replace("-", "."),
             "mlflow": i.labels.get("mlflow", "").replace("-", "."),
             "disk_gb": i.disk_size_gb, "archive_bytes": i.archive_size_bytes, "project": project}
            for i in sorted(found, key=lambda i: i.creation_timestamp)]


