"""The agent is version-aware: for each profile's Airflow, every setting it renders is an option of that
version's own configuration reference (config.yml in the locked apache-airflow wheel), and the migration
command it runs is one that version has."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from playground import paths
from playground.image import profiles
from playground_agent import render, versions
from playground_agent.config import parse
from support import metadata_doc


def locked_airflow(profile: str) -> str:
    return profiles.variables(profile)["airflow_version"]


@lru_cache(maxsize=None)
def wheel(version: str, dist: str = "apache-airflow") -> Path:
    """The wheel of that distribution and version, downloaded once into the build cache."""
    where = paths.cache_dir() / "airflow-wheels"
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    found = sorted(where.glob(pattern))
    if not found:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary=:all:", "-d", str(where), f"{dist}=={version}"],
                       check=True, timeout=600)
        found = sorted(where.glob(pattern))
    return found[0]


def read(version: str, name: str) -> str:
    with zipfile.ZipFile(wheel(version)) as whl:
        return whl.read(name).decode()


def options(version: str) -> set[tuple[str, str]]:
    """(section, option) pairs of config.yml: a list of sections up to 2.6, a mapping since."""
    doc = yaml.safe_load(read(version, "airflow/config_templates/config.yml"))
    if isinstance(doc, list):
        return {(s["name"], o["name"]) for s in doc for o in (s.get("options") or [])}
    return {(section, option) for section, body in doc.items() for option in (body.get("options") or {})}


def cli_source(version: str) -> str:
    with zipfile.ZipFile(wheel(version)) as whl:
        names = [n for n in whl.namelist() if n.startswith("airflow/cli/") and n.endswith(".py")]
        return "\n".join(whl.read(n).decode() for n in names)


PROFILES = profiles.known()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_rendered_setting_is_an_option_of_that_airflow(profile):
    version = locked_airflow(profile)
    known = options(version)
    cfg = parse(metadata_doc(**{"logs-bucket": "team-logs", "dags-bucket": "team-dags",
                                "airflow-secrets": "secret-manager"}))
    env = render.airflow_env(cfg, 2, versions.Airflow(version))
    rendered = [k for k in env if k.startswith("AIRFLOW__")]
    assert len(rendered) > 15
    unknown = [k for k in rendered if tuple(k.lower().split("__")[1:3]) not in known]
    assert not unknown, f"Airflow {version} ({profile}) has no such options: {unknown}"


@pytest.mark.parametrize("profile", PROFILES)
def test_the_migration_command_is_one_that_airflow_has(profile):
    version = locked_airflow(profile)
    sub = versions.Airflow(version).migrate_args[1]
    assert re.search(rf"""name=['"]{sub}['"]""", cli_source(version)), f"airflow db {sub} missing in {version}"


def test_the_table_tells_the_seed_from_the_newest():
    seed, newest = versions.Airflow(locked_airflow("seed")), versions.Airflow(locked_airflow("local"))
    assert (seed.sql_alchemy_conn_key, newest.sql_alchemy_conn_key) == (
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    assert (seed.migrate_args, newest.migrate_args) == (["db", "upgrade"], ["db", "migrate"])
    assert (seed.lineage_hook, newest.lineage_hook) == ("cluster-policy", "listener")
    assert (seed.has_triggerer, newest.has_triggerer) == (False, True)
    assert versions.Airflow("2.2.5").idle_sleep_key == "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"
    with pytest.raises(ValueError):
        versions.Airflow("latest")


@pytest.mark.parametrize("profile", PROFILES)
def test_the_secret_manager_backend_is_in_that_profile_s_google_provider(profile):
    """airflow-secrets=secret-manager names a class and arguments: the locked provider must have both."""
    import ast
    import json

    lock = (paths.PACKER_DIR / "locks" / profile / "airflow.txt").read_text()
    version = re.search(r"^apache-airflow-providers-google==(\S+)$", lock, re.M).group(1)
    env = render.airflow_env(parse(metadata_doc(**{"airflow-secrets": "secret-manager"})), 2,
                             versions.Airflow(locked_airflow(profile)))
    module, _, cls = env["AIRFLOW__SECRETS__BACKEND"].rpartition(".")
    with zipfile.ZipFile(wheel(version, "apache-airflow-providers-google")) as whl:
        tree = ast.parse(whl.read(module.replace(".", "/") + ".py").decode())
    init = next(f for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls for f in c.body
                if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    accepted = {a.arg for a in init.args.args + init.args.kwonlyargs}
    assert set(json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"])) <= accepted, (profile, version, accepted)
