"""playground: a private Airflow 2 + MLflow machine per project.

Google libraries are imported lazily inside the commands that need them, so
`playground --help` stays fast.
"""
from __future__ import annotations

import sys
import time


import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .errors import PlaygroundError

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False)
image_app = typer.Typer(help="Build and list golden images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
console = Console(stderr=True)


def fail(exc: PlaygroundError) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=False)


@image_app.command("build")
def image_build(
    profile: str = typer.Option("local", help="Image profile: local (built here), current or seed (GCE)."),
    local: bool = typer.Option(True, "--local/--gce", help="Build the local image here, or on GCE with Packer."),
) -> None:
    """Build the golden image with Packer, showing progress.

    The local build caches the debootstrap base and the pip wheels under
    PLAYGROUND_CACHE (default /var/cache/playground) so rebuilds are warm.
    """
    from .image import local_build, profiles

    try:
        profiles.check(profile)
        if not local:
            raise PlaygroundError("--gce: GCE image builds run `packer build -only=googlecompute.gce` "
                                  "with Application Default Credentials; see README 'GCE image'")
        with progress() as bar:
            task = bar.add_task("starting", total=None)
            t0 = time.monotonic()
            image = local_build.build_local(profile, report=lambda s: bar.update(task, description=s))
            bar.update(task, description=f"built {image.name} in {time.monotonic() - t0:.0f} s")
    except PlaygroundError as exc:
        fail(exc)
    print(image)


@image_app.command("list")
def image_list(profile: str = typer.Option("local", help="Image profile.")) -> None:
    """List the local images of a profile, newest last."""
    import json

    from rich.table import Table

    from . import paths

    table = Table("name", "built", "airflow", "mlflow", "size", "checksum")
    root = paths.images_dir(profile)
    for image in sorted(root.iterdir()) if root.is_dir() else []:
        mf = image / "manifest.json"
        if mf.is_file():
            m = json.loads(mf.read_text())
            table.add_row(m["name"], m["built_at"], m["components"]["airflow"], m["components"]["mlflow"],
                          f"{m['size_bytes'] / 2**30:.2f} GiB", m["checksum"][:19])
    Console().print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()



