"""The CLI's commands: one module per group of them, registered here on one Typer app in working order,
each under the panel of the task it serves (what `playground --help` shows)."""
from __future__ import annotations

import inspect

import typer
from typer.models import OptionInfo

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
    for typer_app in (app, schedule.schedule_app, image.image_app, config.config_app):
        callbacks = [c.callback for c in typer_app.registered_commands]
        if typer_app.registered_callback is not None:
            callbacks.append(typer_app.registered_callback.callback)
        for callback in callbacks:
            name_values(callback)
    return app


def name_values(callback) -> None:
    """--help shows what a flag's value is (--name NAME, --port PORT), not Python's types (<str>, <bool>):
    an option's metavar, where it has none, is its long name in capitals, and a flag has none."""
    for param in inspect.signature(callback).parameters.values():
        info = param.default
        if not isinstance(info, OptionInfo) or info.metavar is not None:
            continue
        if isinstance(info.default, bool):
            info.metavar = ""
            continue
        longs = [d for d in info.param_decls if d.startswith("--")]
        info.metavar = (longs[0][2:] if longs else param.name).split("/")[0].replace("-", "_").upper()
