"""`playground upgrade` on GCE: a new boot disk made from the profile's newer image, swapped onto the stopped
VM in place of the old one (the data disk stays), and the old disk deleted once the VM is healthy."""
from __future__ import annotations

import re
import time
from typing import Optional

from ..errors import PlaygroundError
from .compute import (
    BOOT_DEVICE,
    DATA_DEVICE,
    Report,
    _clients,
    check_name,
    describe,
    locate,
)
from .google import reachable
from .operations import explain, wait
from .vm_settings import GceSettings


def _disks_client():
    from google.cloud import compute_v1

    from .google import client_kwargs

    return compute_v1.DisksClient(**client_kwargs("compute"))


def image_versions(image) -> dict:
    """A GCE image as upgrade.check reads a manifest: its labels (2-11-2 for 2.11.2, as Packer's template and
    `image push` write them) and its creation time."""
    labels = dict(image.labels)
    return {"name": image.name, "built_at": image.creation_timestamp, "checksum": image.self_link,
            "components": {part: labels.get(part, "").replace("-", ".") for part in ("airflow", "mlflow",
                                                                                      "postgresql")}}


def _image_of_link(images, link: str):
    """images.get for a .../projects/P/global/images/NAME link (a disk's sourceImage)."""
    match = re.search(r"projects/([^/]+)/global/images/([^/]+)$", link or "")
    if not match:
        raise PlaygroundError(f"the boot disk says no image it was made from ({link!r}): what it runs cannot be "
                              "compared")
    return images.get(project=match.group(1), image=match.group(2))


@reachable("compute")
def upgrade(s: GceSettings, name: str, image_name: Optional[str], report: Report) -> dict:
    """A new boot disk of the new image for the VM, its data disk left as it is: made first (a failure then
    changes nothing), then the VM stopped, the boot disks swapped (only a stopped VM's boot disk can be
    detached: https://cloud.google.com/compute/docs/instances/stop-start-instance), and the VM started.
    Returns the row, the change, and the old boot disk, which the caller deletes once the machine is healthy."""
    from google.api_core import exceptions as gex
    from google.cloud import compute_v1

    from .. import upgrade as rules

    check_name(name)
    s = locate(s, name, report)
    instances, images, ops = _clients()
    disks = _disks_client()
    try:
        inst = instances.get(project=s.project, zone=s.zone, instance=name)
        boot = next((d for d in inst.disks if d.boot), None)
        if boot is None:
            raise PlaygroundError(f"{name} has no boot disk attached: an earlier upgrade stopped half-way? "
                                  f"`gcloud compute instances attach-disk {name} --boot --disk DISK`")
        if not any(d.device_name == DATA_DEVICE for d in inst.disks):
            raise PlaygroundError(f"{name} keeps its data on its boot disk (launched before data volumes): a new "
                                  "image would lose it; `playground backup`, launch a new playground and "
                                  "`playground restore` onto it")
        old_disk = disks.get(project=s.project, zone=s.zone, disk=boot.source.rsplit("/", 1)[-1])
        current = _image_of_link(images, old_disk.source_image)
        image_project = s.image_project or s.project
        # The VM's own profile, not the settings' default: its image family and its new disk's label.
        profile = inst.labels.get("playground-profile", s.profile)
        family = f"playground-{profile}"
        new = (images.get(project=image_project, image=image_name) if image_name
               else images.get_from_family(project=image_project, family=family))
    except gex.NotFound as exc:
        raise PlaygroundError(f"--image: {image_name or 'family ' + family} not found in project "
                              f"{s.image_project or s.project}: see `playground image list --provider gce`"
                              if "images" in str(exc) else explain(exc, s, name).args[0]) from exc
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, name) from exc
    if new.self_link == current.self_link:
        return {"row": describe(inst), "change": f"{name} already runs {new.name}", "old_disk": None}
    changes = rules.check(name, image_versions(current), image_versions(new))
    what = rules.summary(image_versions(current), image_versions(new), changes)
    disk_name = f"{name[:40]}-boot-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    try:
        report(f"upgrade {what}: making the boot disk {disk_name}")
        op = disks.insert(project=s.project, zone=s.zone, disk_resource=compute_v1.Disk(
            name=disk_name, source_image=new.self_link, size_gb=old_disk.size_gb, type_=old_disk.type_,
            labels=dict(s.labels(), **{"playground-profile": profile})))
        wait(ops, s, op, report, f"create disk {disk_name}")
        new_link = disks.get(project=s.project, zone=s.zone, disk=disk_name).self_link
        if inst.status != "TERMINATED":
            wait(ops, s, instances.stop(project=s.project, zone=s.zone, instance=name), report, f"stop {name}")
        wait(ops, s, instances.detach_disk(project=s.project, zone=s.zone, instance=name,
                                           device_name=boot.device_name), report, "detach the old boot disk")
        attached = compute_v1.AttachedDisk(source=new_link, boot=True, auto_delete=True, device_name=BOOT_DEVICE)
        try:
            wait(ops, s, instances.attach_disk(project=s.project, zone=s.zone, instance=name,
                                               attached_disk_resource=attached), report, "attach the new boot disk")
        except (PlaygroundError, gex.GoogleAPICallError):
            report("attaching the new boot disk failed: putting the old one back")
            back = compute_v1.AttachedDisk(source=old_disk.self_link, boot=True, auto_delete=True,
                                           device_name=boot.device_name)
            wait(ops, s, instances.attach_disk(project=s.project, zone=s.zone, instance=name,
                                               attached_disk_resource=back), report, "attach the old boot disk")
            raise
        wait(ops, s, instances.start(project=s.project, zone=s.zone, instance=name), report, f"start {name}")
        row = describe(instances.get(project=s.project, zone=s.zone, instance=name))
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s, name) from exc
    return {"row": row, "change": what, "old_disk": old_disk.name}


@reachable("compute")
def delete_disk(s: GceSettings, disk: str, report: Report) -> None:
    from google.api_core import exceptions as gex

    _, _, ops = _clients()
    try:
        wait(ops, s, _disks_client().delete(project=s.project, zone=s.zone, disk=disk), report, f"delete disk {disk}")
    except gex.NotFound:
        pass
    except gex.GoogleAPICallError as exc:
        raise explain(exc, s) from exc
