"""A team's project folder, as astro CLI lays one out: its DAGs, `requirements.txt`, `airflow_settings.yaml`.

PROJECT/dags/ holds the DAGs when it exists; otherwise PROJECT itself is the DAG folder (without the two
files above). Everything is read and checked here, before anything is sent: a bad settings file is one line
naming the field.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import PlaygroundError

SETTINGS_FILE = "airflow_settings.yaml"
REQUIREMENTS_FILE = "requirements.txt"
IGNORE_FILE = ".airflowignore"
SKIP_DIRS = {"__pycache__"}
MAX_FILE_BYTES = 10 * 2**20  # a DAG folder holds code, not data: a larger file is almost surely a mistake
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")  # Airflow's own rule for connection ids and keys


@dataclass
class Project:
    root: Path
    dags: Path
    files: dict[str, Path] = field(default_factory=dict)  # path in the DAG folder -> file here
    settings: Optional[dict] = None  # checked, in the shape the agent applies; None: no settings file
    requirements: Optional[str] = None  # requirements.txt's text; None: no such file

    def digests(self) -> dict[str, str]:
        return {rel: sha256(path) for rel, path in self.files.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(folder: Path) -> Project:
    root = folder.expanduser()
    if not root.is_dir():
        raise PlaygroundError(f"project folder {folder}: expected a folder holding DAGs (or a dags/ folder)")
    dags = root / "dags" if (root / "dags").is_dir() else root
    project = Project(root=root.resolve(), dags=dags.resolve())
    for path in sorted(dags.rglob("*")):
        rel = path.relative_to(dags)
        parts = rel.parts
        if any(p in SKIP_DIRS or (p.startswith(".") and p != IGNORE_FILE) for p in parts):
            continue
        if dags == root and rel.as_posix() in (SETTINGS_FILE, REQUIREMENTS_FILE):
            continue
        if path.is_symlink():
            raise PlaygroundError(f"{path}: a symbolic link; expected regular files in the DAG folder")
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PlaygroundError(f"{path}: {path.stat().st_size / 2**20:.0f} MiB; expected DAG files of at "
                                  f"most {MAX_FILE_BYTES >> 20} MiB (data belongs in a bucket or the warehouse)")
        project.files[rel.as_posix()] = path
    req_path = root / REQUIREMENTS_FILE
    if req_path.is_file():
        project.requirements = read_requirements(req_path)
    settings_path = root / SETTINGS_FILE
    if settings_path.is_file():
        project.settings = read_settings(settings_path)
    return project


# What a requirements line may hold here: a name with extras and a version specifier, or a comment. Options
# (-r, -e, --index-url ...), URLs and paths are refused: the machine installs only the wheels deploy resolved.
REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?\s*"
                            r"((===?|~=|!=|<=?|>=?)\s*[A-Za-z0-9.*+!_-]+\s*(,\s*(===?|~=|!=|<=?|>=?)\s*"
                            r"[A-Za-z0-9.*+!_-]+\s*)*)?(;.*)?$")


def read_requirements(path: Path) -> str:
    """requirements.txt checked line by line; its text as given."""
    text = path.read_text()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and not REQUIREMENT_RE.match(line):
            raise PlaygroundError(f"{path.name} line {number}: expected NAME[extras][specifier] such as "
                                  f"pandas>=2.1 (got {line[:80]!r}); options, URLs and paths are not supported")
    return text


def requirement_names(text: str) -> list[str]:
    names = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            names.append(re.split(r"[\[\s;=<>!~]", line, maxsplit=1)[0])
    return names


# astro's airflow_settings.yaml: its field names, and the agent's.
CONNECTION_FIELDS = {"conn_id": "conn_id", "conn_type": "conn_type", "conn_host": "host", "conn_schema": "schema",
                     "conn_login": "login", "conn_password": "password", "conn_port": "port", "conn_extra": "extra"}
VARIABLE_FIELDS = {"variable_name": "key", "variable_value": "value"}
POOL_FIELDS = {"pool_name": "name", "pool_slot": "slots", "pool_description": "description"}


def read_settings(path: Path) -> dict:
    """The file's connections, variables and pools, checked; entries with no id (astro's blank template rows)
    are skipped."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PlaygroundError(f"{path.name}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(doc, dict) or set(doc) - {"airflow"}:
        raise PlaygroundError(f"{path.name}: expected one top-level key `airflow:` (astro's layout)")
    body = doc.get("airflow") or {}
    if not isinstance(body, dict) or set(body) - {"connections", "variables", "pools"}:
        extra = sorted(set(body) - {"connections", "variables", "pools"}) if isinstance(body, dict) else ["?"]
        raise PlaygroundError(f"{path.name}: airflow.{extra[0]}: expected connections, variables or pools")
    out: dict[str, list] = {"connections": [], "variables": [], "pools": []}
    for section, fields, id_field in (("connections", CONNECTION_FIELDS, "conn_id"),
                                      ("variables", VARIABLE_FIELDS, "variable_name"),
                                      ("pools", POOL_FIELDS, "pool_name")):
        entries = body.get(section)
        entries = [] if entries is None else entries
        if not isinstance(entries, list):
            raise PlaygroundError(f"{path.name}: airflow.{section}: expected a list")
        seen = set()
        for i, entry in enumerate(entries):
            where = f"{path.name}: airflow.{section}[{i}]"
            if not isinstance(entry, dict):
                raise PlaygroundError(f"{where}: expected a mapping of {', '.join(fields)}")
            unknown = sorted(set(entry) - set(fields))
            if unknown:
                raise PlaygroundError(f"{where}.{unknown[0]}: unknown field; expected one of {', '.join(fields)}")
            if entry.get(id_field) in (None, ""):
                continue
            ident = entry[id_field]
            if not isinstance(ident, str) or not ID_RE.match(ident):
                raise PlaygroundError(f"{where}.{id_field}: expected 1-250 of A-Z a-z 0-9 _ . - (got {ident!r})")
            if ident in seen:
                raise PlaygroundError(f"{where}.{id_field}: {ident!r} appears twice")
            seen.add(ident)
            out[section].append(_entry(section, entry, fields, where))
    return out


def _entry(section: str, entry: dict, fields: dict, where: str) -> dict:
    item: dict[str, Any] = {fields[k]: v for k, v in entry.items()}
    if section == "connections":
        if not isinstance(item.get("conn_type"), str) or not item["conn_type"]:
            raise PlaygroundError(f"{where}.conn_type: expected a connection type such as postgres or http")
        for key in ("host", "schema", "login", "password"):
            value = item.get(key)
            if value is not None and not isinstance(value, (str, int)):
                raise PlaygroundError(f"{where}.conn_{key}: expected text")
            item[key] = None if value is None else str(value)
        port = item.get("port")
        if port not in (None, "") and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise PlaygroundError(f"{where}.conn_port: expected a port number 1-65535 (got {port!r})")
        item["port"] = port or None
        extra = item.get("extra")
        if isinstance(extra, str) and extra.strip():
            import json

            try:
                extra = json.loads(extra)
            except ValueError:
                raise PlaygroundError(f"{where}.conn_extra: expected a mapping or a JSON object") from None
        if extra not in (None, "") and not isinstance(extra, dict):
            raise PlaygroundError(f"{where}.conn_extra: expected a mapping or a JSON object")
        item["extra"] = extra or None
    elif section == "variables":
        value = item.get("value")
        if value is None:
            raise PlaygroundError(f"{where}.variable_value: expected a value")
        item["value"] = value if isinstance(value, (str, dict, list)) else str(value)
    else:
        slots = item.get("slots")
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
            raise PlaygroundError(f"{where}.pool_slot: expected a number of slots, 0 or more (got {slots!r})")
        item["description"] = str(item.get("description") or "")
    return item
