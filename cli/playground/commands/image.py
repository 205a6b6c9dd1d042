"""`playground image`: build, list and push the golden images."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import PlaygroundError
from ..ui import console
from .common import JSON, one_line, provider_for, working

image_app = typer.Typer(help="Build, list and push golden images.", no_args_is_help=True)


@image_app.command("build")
def image_build(
    profile: Optional[str] = typer.Option(
        None, help="Image profile: local (built here; the default) or seed-local (the seed's Airflow 2.0 on "
                   "Debian 11, built here), or seed / current for --gce "
                   "(default: gce_profile in the settings, else seed)."),
    local: bool = typer.Option(True, "--local/--gce", help="Build the local image here, or a GCE image with Packer."),
    project: Optional[str] = typer.Option(None, help="--gce: project to build in and keep the image "
                                                     "(else PLAYGROUND_PROJECT, playground.toml)."),
    zone: Optional[str] = typer.Option(None, help="--gce: zone of the build VM (else PLAYGROUND_ZONE, "
                                                  "playground.toml, europe-west2-b)."),
) -> None:
    """Build the golden image with Packer, showing progress.

    Local: a Debian 12 rootfs provisioned in a systemd-nspawn container; the
    debootstrap base and the pip wheels are cached under PLAYGROUND_CACHE
    (default /var/cache/playground) so rebuilds are warm. Prints the image folder.

    --gce: `packer build -only=googlecompute.gce` with Application Default
    Credentials; the image joins the family playground-PROFILE that `launch`
    takes. Prints the image name.

    Either way the template is validated first, and a failed or interrupted build
    leaves no image behind.
    """
    with one_line():
        chosen = provider_for("local" if local else "gce", project, zone)
        profile = chosen.profile(profile)
        with working("starting") as report:
            t0 = time.monotonic()
            notice = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
            built = chosen.build_image(profile, report, notice)
            report(f"built {Path(built).name} in {time.monotonic() - t0:.0f} s")
    print(built)


@image_app.command("list")
def image_list(
    profile: Optional[str] = typer.Option(None, help="Image profile (default: local, or seed-local; with --gce, "
                                                     "gce_profile in the settings, else seed)."),
    gce: bool = typer.Option(False, "--gce", help="List the GCE images of the profile's family instead."),
    project: Optional[str] = typer.Option(None, help="--gce: the project (else PLAYGROUND_PROJECT, playground.toml; "
                                                     "images are read from image_project when set)."),
    as_json: bool = JSON,
) -> None:
    """List the images of a profile, newest last: the one `launch` takes.

    Local images are read from PLAYGROUND_HOME; --gce lists the family
    playground-PROFILE in the project, with the versions from the image labels.
    """
    import json

    from rich.table import Table

    with one_line():
        chosen = provider_for("gce" if gce else "local", project, None)
        profile = chosen.profile(profile)
        rows, columns = chosen.images(profile)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no {profile} images for the {chosen.name} provider: `playground image build"
                      f"{' --gce' if gce else ''}` makes one", highlight=False)
        return
    # The names carry the build time; --json adds when, the checksum and where.
    table = Table()
    for c in columns:
        table.add_column(c, no_wrap=True)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    Console().print(table)


@image_app.command("push")
def image_push(
    gce: bool = typer.Option(False, "--gce", help="Push to Google Compute Engine (the one destination)."),
    project: Optional[str] = typer.Option(None, help="The GCP project that keeps the image (else image_project, "
                                                     "PLAYGROUND_PROJECT, playground.toml)."),
    profile: str = typer.Option("local", help="The local profile whose image is pushed: local or seed-local."),
    image: Optional[str] = typer.Option(None, help="The local image's name (default: the profile's newest; "
                                                   "`playground image list`)."),
    bucket: Optional[str] = typer.Option(None, help="Cloud Storage bucket the archive goes through (default "
                                                    "PROJECT-playground-images, made if missing)."),
    zone: Optional[str] = typer.Option(None, help="A zone whose region holds a new bucket (else PLAYGROUND_ZONE, "
                                                  "playground.toml, europe-west2-b)."),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the disk archive in the bucket after "
                                                                    "the import (it is removed by default)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was made as JSON."),
) -> None:
    """Push the local image's bootable disk, the one the tests boot here, to GCE as an image.

    The disk is archived as disk.raw in a sparse tar.gz, uploaded to a bucket, and imported with
    images.insert into the family playground-PROFILE, labelled with the image's Airflow and MLflow
    versions and marked UEFI-compatible for Shielded VM. Then `playground launch --provider gce
    --profile PROFILE` boots it. A failed push removes the archive and any failed image.
    """
    import json

    from ..image import profiles, push

    with one_line():
        if not gce:
            raise PlaygroundError("image push: --gce is required (Google Compute Engine is the one destination)")
        profiles.check(profile)
        if not profiles.debian_suite(profile):
            raise PlaygroundError(f"--profile: {profile} is built on GCE already; push one of "
                                  f"{', '.join(profiles.local_profiles())}")
        chosen = provider_for("gce", project, zone)
        folder = push.newest_pushable(profile, image)
        target = chosen.s.image_project or chosen.s.project
        with working(f"pushing {folder.name}") as report:
            made = push.push(chosen.s, profile, folder, bucket or push.default_bucket(target), report,
                             keep_archive=keep_archive)
            report(f"pushed {made['image']} in {made['seconds']:.0f} s")
    if as_json:
        print(json.dumps(made, indent=2))
        return
    console.print(f"[green]{made['image']}[/green] is in family {made['family']} of project {made['project']} "
                  f"(archive {made['archive_bytes'] / 2**20:.0f} MiB of a {made['disk_bytes'] / 2**30:.0f} GiB disk)",
                  highlight=False)
    console.print(f"  launch it: playground launch --provider gce --profile {profile} --project {made['project']}",
                  highlight=False)
    print(made["image"])
