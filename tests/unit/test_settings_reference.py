"""The CLI's settings are one table (cli/playground/settings.py): the defaults, `config show`, the GCE
settings' defaults and docs/settings.md all come from it."""
from __future__ import annotations

import dataclasses

from playground import settings
from playground.gce.vm_settings import GceSettings
from support import REPO


def test_docs_settings_is_the_table():
    got = (REPO / "docs" / "settings.md").read_text()
    assert got == settings.reference(), "regenerate it: .venv/bin/python -m playground.settings > docs/settings.md"


def test_gce_settings_take_the_tables_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(GceSettings)}
    for key in settings.GCE_KEYS:
        assert fields[key] == settings.DEFAULTS[key], key
    assert fields["profile"] == settings.DEFAULTS["gce_profile"] and fields["zone"] == settings.DEFAULTS["zone"]


def test_config_show_lists_every_setting_with_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "playground.toml").write_text('zone = "us-east1-b"\n')
    monkeypatch.setenv("PLAYGROUND_MACHINE_TYPE", "e2-standard-4")
    shown = {key: (value, source) for key, value, source in settings.show()}
    assert list(shown) == [s.key for s in settings.SETTINGS]
    assert shown["zone"] == ("us-east1-b", str(tmp_path / "playground.toml"))
    assert shown["machine_type"] == ("e2-standard-4", "environment PLAYGROUND_MACHINE_TYPE")
    assert shown["disk_size_gb"] == (50, "default") and shown["project"] == (None, "unset")
