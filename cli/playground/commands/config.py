"""`playground config show`: the resolved settings and where each came from."""
from __future__ import annotations

import typer
from rich.console import Console

from .common import JSON, one_line

config_app = typer.Typer(help="Show the resolved settings.", no_args_is_help=True)


@config_app.command("show")
def config_show(as_json: bool = JSON) -> None:
    """Every setting, its value and where it came from (flag, environment, playground.toml, default)."""
    import json

    from rich.table import Table

    from .. import settings

    with one_line():
        rows = settings.show()
    if as_json:
        print(json.dumps({k: {"value": v, "source": src} for k, v, src in rows}, indent=2))
        return
    table = Table("setting", "value", "from")
    for key, value, source in rows:
        table.add_row(key, "" if value is None else str(value), source)
    Console().print(table)
