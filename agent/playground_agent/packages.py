"""A project's Python packages: a layer beside the image's Airflow venv, never inside it.

The machines reach no package index (no external IP; locally, only the metadata server), so `playground
deploy` resolves requirements.txt on the laptop against this venv's own versions as constraints (Airflow's
pins never move) and sends the wheels this venv lacks. Here they are installed with pip's --prefix into
LAYERS/<sha256 of the requirements>, the packages the venv already has counting as installed, then the link
CURRENT is switched to it in one rename. A .pth file in the venv puts CURRENT's site-packages on sys.path
after the venv's own, so every new Airflow process (tasks, DAG parsing) sees the new set with no restart.
A layer once made is kept: the same requirements again (a re-deploy, a reboot) install nothing. A failed
install leaves CURRENT where it was: Airflow keeps the last good set, and STATE says what failed.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

from . import paths
from .files import read_json, write_atomic

LAYERS = paths.p("/var/lib/playground/packages")
CURRENT = LAYERS + "/current"
EMPTY = LAYERS + "/empty"  # CURRENT before any project package: an empty layer
STATE = LAYERS + "/state.json"
PTH_NAME = "playground-project-packages.pth"
VENV_ONLY = "PLAYGROUND_VENV_ONLY"


class PackagesError(Exception):
    pass


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _site_rel() -> str:
    """lib/pythonX.Y/site-packages, as the venv names it (and pip's --prefix lays out)."""
    found = sorted(glob.glob(paths.p(paths.AIRFLOW_VENV) + "/lib/python3*/site-packages"))
    if not found:
        raise PackagesError("no site-packages under %s" % paths.AIRFLOW_VENV)
    return os.path.relpath(found[0], paths.p(paths.AIRFLOW_VENV))


def _switch(layer: str) -> None:
    tmp = CURRENT + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(layer), tmp)
    os.replace(tmp, CURRENT)


def ensure_path() -> None:
    """The .pth and CURRENT exist before Airflow starts (site adds a .pth line only for a folder that
    exists), so a later switch reaches new processes without a restart. At every apply; idempotent."""
    rel = _site_rel()
    os.makedirs(os.path.join(EMPTY, rel), exist_ok=True)
    if not os.path.lexists(CURRENT):
        _switch(EMPTY)
    pth = os.path.join(paths.p(paths.AIRFLOW_VENV), rel, PTH_NAME)
    # An import line (site runs it): the layer goes last on sys.path, except for the pip that makes the next
    # layer (VENV_ONLY), which must see only the venv, or it would count the old layer's packages as present.
    line = ("import os, sys; d = %r; os.environ.get(%r) or d in sys.path or not os.path.isdir(d) or "
            "sys.path.append(d)\n" % (os.path.join(CURRENT.replace(paths.ROOT, "", 1), rel), VENV_ONLY))
    try:
        with open(pth, encoding="utf-8") as fh:
            if fh.read() == line:
                return
    except OSError:
        pass
    write_atomic(pth, line, 0o644, 0)


def state() -> Dict[str, Any]:
    return read_json(STATE) or {}


def _save(doc: Dict[str, Any]) -> None:
    write_atomic(STATE, json.dumps(doc, indent=2, sort_keys=True) + "\n", 0o644, 0)


def installed() -> List[str]:
    """name==version of every distribution in the Airflow venv (the constraints a project must keep)."""
    out = subprocess.run([paths.AIRFLOW_VENV + "/bin/python", "-c",
                          "import importlib.metadata as m, json, re; print(json.dumps(sorted({re.sub(r'[-_.]+', '-', "
                          "d.metadata['Name']).lower() + '==' + d.version for d in m.distributions() "
                          "if d.metadata['Name']})))"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", VENV_ONLY: "1"})
    if out.returncode != 0:
        raise PackagesError("could not list the Airflow venv's packages: %s" % out.stderr.strip()[-200:])
    return [p for p in json.loads(out.stdout) if "==" in p]


def active() -> Optional[str]:
    """The sha256 of the requirements whose layer is current (None: no project packages)."""
    try:
        name = os.readlink(CURRENT)
    except OSError:
        return None
    return None if name == os.path.basename(EMPTY) else name


def record_error(sha: str, error: str) -> None:
    doc = state()
    doc.update(error=error, failed_sha256=sha)
    _save(doc)


def _pip_error(output: str) -> str:
    """pip's own first ERROR line (it names the requirement), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    first = errors[0][len("ERROR:"):].strip() if errors else (lines[-1] if lines else "pip failed")
    return first[:400]


def install(requirements: str, wheels: str, names: List[str]) -> Dict[str, Any]:
    """Make and switch to the layer for these requirements, from the wheels in the folder wheels."""
    sha = digest(requirements)
    layer = os.path.join(LAYERS, sha)
    ensure_path()
    if not os.path.isfile(os.path.join(layer, ".complete")):
        work = tempfile.mkdtemp(prefix=".tmp-", dir=LAYERS)
        try:
            req = os.path.join(work, "requirements.txt")
            with open(req, "w", encoding="utf-8") as fh:
                fh.write(requirements)
            constraints = os.path.join(work, "constraints.txt")
            with open(constraints, "w", encoding="utf-8") as fh:
                fh.write("\n".join(installed()) + "\n")
            prefix = os.path.join(work, "layer")
            proc = subprocess.run(
                [paths.AIRFLOW_VENV + "/bin/python", "-m", "pip", "install", "--no-index", "--find-links", wheels,
                 "--prefix", prefix, "--no-warn-script-location", "--disable-pip-version-check", "--no-input",
                 "-r", req, "-c", constraints],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=1800,
                env={"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "PYTHONNOUSERSITE": "1",
                     "HOME": work, VENV_ONLY: "1"})
            if proc.returncode != 0:
                raise PackagesError(_pip_error(proc.stdout))
            os.makedirs(os.path.join(prefix, _site_rel()), exist_ok=True)
            open(os.path.join(prefix, ".complete"), "w").close()
            shutil.copy(req, os.path.join(prefix, "requirements.txt"))
            if os.path.isdir(layer):
                shutil.rmtree(layer)  # an incomplete one from an interrupted install
            os.rename(prefix, layer)
        except PackagesError as exc:
            record_error(sha, str(exc))
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        fresh = True
    else:
        fresh = False
    _switch(layer)
    _save({"active_sha256": sha, "requirements": names, "error": "", "failed_sha256": ""})
    _prune(keep={sha})
    return {"sha256": sha, "installed": fresh, "requirements": names}


def clear() -> None:
    """No requirements.txt any more: back to the empty layer."""
    ensure_path()
    _switch(EMPTY)
    _save({"active_sha256": "", "requirements": [], "error": "", "failed_sha256": ""})


def _prune(keep: set, most: int = 3) -> None:
    """Keep the current layer and the newest few others (a rollback is a re-deploy of an older file)."""
    layers = [d for d in os.listdir(LAYERS) if len(d) == 64 and os.path.isdir(os.path.join(LAYERS, d))]
    old = sorted((d for d in layers if d not in keep), key=lambda d: os.path.getmtime(os.path.join(LAYERS, d)))
    for name in old[:max(0, len(old) - most + 1)]:
        shutil.rmtree(os.path.join(LAYERS, name), ignore_errors=True)
