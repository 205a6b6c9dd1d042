"""The CLI's commands: one module per group of them, registered here on one Typer app in working order,
each under the panel of the task it serves (what `playground --help` shows)."""
from __future__ import annotations

import typer

from . import config, connect, image, launch, lifecycle, project, schedule, show

USE = "Use a playground"
RUN = "Run it: power, size, version"
DATA = "Its data"
SETUP = "Images and settings"


def build() -> typer.Typer:
    app = typer.Typer(help="A private Airflow + MLflow machine per project, on Google Cloud or here.",
                      no_args_is_help=True, add_completion=False)
    passes_args = {"allow_extra_args": True, "ignore_unknown_options": True}  # ssh NAME -- COMMAND...
    for func, name, panel, settings in (
            (launch.launch, "launch", USE, {}), (show.status, "status", USE, {}), (connect.tunnel, "tunnel", USE, {}),
            (connect.ssh, "ssh", USE, passes_args), (project.deploy, "deploy", USE, {}), (show.list_, "list", USE, {}),
            (lifecycle.stop, "stop", RUN, {}), (lifecycle.start, "start", RUN, {}),
            (lifecycle.autostop, "autostop", RUN, {}), (lifecycle.scale, "scale", RUN, {}),
            (lifecycle.upgrade, "upgrade", RUN, {}), (lifecycle.destroy, "destroy", RUN, {}),
            (project.backup, "backup", DATA, {}), (project.restore, "restore", DATA, {}),
            (show.lineage, "lineage", DATA, {})):
        app.command(name, rich_help_panel=panel, context_settings=settings or None)(func)
    app.add_typer(schedule.schedule_app, name="schedule", rich_help_panel=RUN)
    app.add_typer(image.image_app, name="image", rich_help_panel=SETUP)
    app.add_typer(config.config_app, name="config", rich_help_panel=SETUP)
    return app
