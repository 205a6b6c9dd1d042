"""`playground --help` and every command's: they render (help texts are rich markup, so a stray bracket
once crashed `backup --help`), group the commands by task in working order, and summarise each in a line."""
from __future__ import annotations

import re

import pytest
import typer
from playground.main import app
from typer.testing import CliRunner


def commands(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        found.append((*prefix, name))
        if getattr(cmd, "commands", None):  # a group: its subcommands too
            found += commands(cmd, (*prefix, name))
    return found


ALL = commands(typer.main.get_command(app))


def test_the_commands_are_the_known_ones_in_working_order():
    top = [c[0] for c in ALL if len(c) == 1]
    assert top == ["launch", "status", "tunnel", "ssh", "deploy", "list", "stop", "start", "autostop", "scale",
                   "upgrade", "destroy", "backup", "restore", "lineage", "schedule", "image", "config"]


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_help_renders(path):
    res = CliRunner().invoke(app, [*path, "--help"], prog_name="playground", catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "Usage: playground " + " ".join(path) in " ".join(res.output.split())
    # An option says what its value is (NAME, KEY=VALUE), not Python's type; --help's own flag is click's.
    noise = [line for line in res.output.splitlines() if re.search(r"<(str|int|bool|float|list\[\w+\]|Path)>", line)
             and "--" in line and "--help" not in line]
    assert noise == []


def test_the_top_help_groups_commands_by_task_with_one_line_summaries():
    out = CliRunner().invoke(app, ["--help"], prog_name="playground", env={"COLUMNS": "200"}).output
    panels = [line.strip("╭─╮ ") for line in out.splitlines() if line.startswith("╭─")]
    assert panels == ["Options", "Use a playground", "Run it: power, size, version", "Its data",
                      "Images and settings"]
    rows = [line for line in out.splitlines() if line.startswith("│ ") and line[2] != " "]
    assert all(line.rstrip("│ ").endswith(".") or "Show this message" in line for line in rows), rows
