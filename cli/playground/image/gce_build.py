"""Build a GCE image: `packer build -only=googlecompute.gce` with Application Default Credentials.

The build VM has no external IP and is reached through IAP; the image joins the
family playground-PROFILE, which `playground launch --provider gce` takes. On
failure or Ctrl-C Packer deletes its build VM and disk itself; no image is
created unless every provisioning script succeeded.
"""
from __future__ import annotations

import time
from typing import Optional

from .. import paths
from ..errors import PlaygroundError
from ..prereqs import require_tools
from . import packer, profiles

Report = packer.Report


def variables(project: str, zone: str, version: str) -> dict[str, str]:
    return {"project_id": project, "zone": zone, "image_version": version}


# The template's default base project (variables.pkr.hcl), when a profile does not name one.
DEFAULT_BASE_PROJECT = "ubuntu-os-cloud"

# Families whose OS left standard support, and the way left. Google: at end of support the family's
# latest image is deprecated or deleted and the family becomes unusable
# (https://cloud.google.com/compute/docs/images/os-image-lifecycle). Canonical: an LTS release's images
# are not deleted at end of standard support and a deprecated image can still be launched by name
# (canonical/ubuntu-cloud-docs, google/google-explanation/gce-image-retention-policy.rst); Ubuntu Pro
# keeps 18.04 updated (ESM) as a premium image billed on top of the machine.
PAST_STANDARD_SUPPORT = {
    "ubuntu-1804-lts": "Ubuntu 18.04 left standard support on 2023-05-31; Canonical's Pro family "
                       "ubuntu-pro-1804-lts in ubuntu-os-pro-cloud is updated and billed per hour on top of "
                       "the machine",
}


def check_base_image(gce, profile: str, report: Report) -> None:
    """The profile's base image family answers in its project, before anything is made: a family lookup
    skips deprecated images (https://cloud.google.com/compute/docs/images/image-families-best-practices),
    so an end-of-support base such as Ubuntu 18.04's ubuntu-1804-lts in ubuntu-os-cloud is not found."""
    from ..gce import compute

    values = profiles.variables(profile)
    family = values.get("source_image_family", "")
    project = values.get("source_image_project", DEFAULT_BASE_PROJECT)
    report(f"base image family {family} in {project}")
    if compute.family_image(gce, project, family) is None:
        hint = ""
        if family in PAST_STANDARD_SUPPORT:
            hint = f" ({PAST_STANDARD_SUPPORT[family]})"
        raise PlaygroundError(f"the {profile} profile's base image family {family} was not found in project "
                              f"{project} (a family lookup skips deprecated images){hint}: set "
                              f"source_image_family and source_image_project in "
                              f"packer/profiles/{profile}.pkrvars.hcl")


def build_gce(profile: str, project: str, zone: str, report: Report = print, notice: Optional[Report] = None) -> str:
    """Build the profile's image in `project`; return the image's name. `report` gets the progress,
    `notice` (default: report) what a user should read afterwards."""
    from ..attributes import check_project
    from ..gce import iap_firewall
    from ..gce.compute import GceSettings

    profiles.check(profile)
    check_project(project)
    gce = GceSettings(project=project, zone=zone)
    gce.check()
    require_tools("packer")
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    inputs = variables(project, zone, version)
    packer.validate("gce", profile, inputs)
    check_base_image(gce, profile, report)
    # Packer reaches the build VM (no external IP, tag allow-iap-ssh) through IAP, like every playground VM.
    warning = iap_firewall.ensure(gce, report)
    if warning:
        (notice or report)(warning)
    log_dir = paths.user_logs_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"playground-{profile}-{version}"
    with packer.signals_raise(), open(log_dir / f"image-build-{name}.log", "w") as log:
        report(f"packer build of {name} in project {project}, zone {zone}")
        try:
            packer.build("gce", profile, inputs, report, log)
        except PlaygroundError as exc:
            if "credentials" in str(exc):
                raise PlaygroundError(f"{exc} (Packer uses Application Default Credentials: "
                                      "`gcloud auth application-default login`)") from exc
            raise
    return name
