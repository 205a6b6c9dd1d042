"""`playground deploy`: a project folder onto a running playground, as `gsutil rsync -d` would.

Where the machine reads its DAGs from a dags bucket (the `dags-bucket` attribute; gcsfuse or the agent's
sync), the folder goes to gs://BUCKET/dags/ with google-cloud-storage: new and changed files uploaded
(compared by MD5, which GCS keeps for every uploaded object), files gone from the folder deleted. Otherwise
it goes over SSH into the machine's DAG folder. Either way the DAG folder then holds exactly the project's
DAGs (the image's example DAGs included: deploy them from your folder to keep them). The settings go over
SSH, and the machine answers with Airflow's own parse of the folder: DAG ids and import errors.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import PlaygroundError
from .project import Project

Report = Callable[[str], None]
PREFIX = "dags/"


@dataclass
class Deployed:
    name: str
    where: str  # the DAG folder, or gs://BUCKET/dags/
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    settings: Optional[dict] = None  # names applied and removed (never values)
    dags: list[str] = field(default_factory=list)
    import_errors: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # in the bucket but not (yet) on the machine
    packages: Optional[dict] = None  # what receive said of requirements.txt (None: unchanged or none)
    workers: dict = field(default_factory=dict)  # worker name -> what its receive said of the packages

    def as_json(self) -> dict:
        return dict(self.__dict__)


def _agent(conn, action: str, doc: Optional[dict] = None, timeout: float = 600) -> dict:
    from .remote import run_input

    code, stdout, stderr = run_input(conn, f"sudo -n playground-agent project {action}",
                                     json.dumps(doc) if doc is not None else "", timeout)
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (stderr or stdout).strip()[-300:]
        if "invalid choice" in tail:
            raise PlaygroundError("this machine's agent has no `project` command: its image predates deploy "
                                  "(`playground image build`, then a new instance)") from None
        raise PlaygroundError(f"the machine's agent gave no answer to `project {action}`: {tail}") from None
    if code != 0 or "error" in out:
        raise PlaygroundError(f"deploy: {out.get('error') or 'the agent failed'}")
    return out


def plan(local: dict[str, str], remote: dict[str, str]) -> tuple[list[str], list[str], list[str], int]:
    """added, changed, removed, unchanged count: what makes remote equal local."""
    added = sorted(set(local) - set(remote))
    changed = sorted(rel for rel in set(local) & set(remote) if local[rel] != remote[rel])
    removed = sorted(set(remote) - set(local))
    return added, changed, removed, len(set(local) & set(remote)) - len(changed)


def md5_b64(path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def sync_bucket(client, bucket: str, project: Project, report: Report) -> tuple[list[str], list[str], list[str], int]:
    """gs://bucket/dags/ made equal to the project's DAGs."""
    remote = {blob.name[len(PREFIX):]: blob.md5_hash for blob in client.list_blobs(bucket, prefix=PREFIX)
              if not blob.name.endswith("/")}
    local = {rel: md5_b64(path) for rel, path in project.files.items()}
    added, changed, removed, unchanged = plan(local, remote)
    target = client.bucket(bucket)
    for i, rel in enumerate(added + changed, 1):
        report(f"uploading {rel} ({i}/{len(added) + len(changed)})")
        target.blob(PREFIX + rel).upload_from_filename(str(project.files[rel]))
    for rel in removed:
        report(f"deleting gs://{bucket}/{PREFIX}{rel}")
        target.blob(PREFIX + rel).delete()
    return added, changed, removed, unchanged


def platform_tags(glibc: str, machine: str) -> list[str]:
    """The manylinux tags a machine with this C library takes, newest first (pip takes --platform literally)."""
    major, minor = (int(x) for x in (glibc or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{machine}" for m, name in legacy.items() if m <= minor]


def wheel_key(filename: str) -> str:
    """name==version of a wheel file (names normalized as PyPA does)."""
    import re

    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def resolve(requirements: str, machine: dict, folder, report: Report) -> list:
    """The wheels the machine's venv lacks for requirements, downloaded into folder on this machine (with its
    own pip configuration), the venv's versions as constraints: a requirement that needs another version of
    one of Airflow's packages fails here, in pip's own words."""
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(folder)
    (folder / "requirements.txt").write_text(requirements)
    (folder / "constraints.txt").write_text("\n".join(machine["venv"]) + "\n")
    python = machine["python"]
    abi = "cp" + "".join(python.split(".")[:2])
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "-q",
           "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", abi,
           "--abi", "abi3", "--abi", "none", "-r", str(folder / "requirements.txt"),
           "-c", str(folder / "constraints.txt"), "-d", str(folder / "wheels")]
    for tag in platform_tags(machine.get("glibc", ""), machine.get("machine", "x86_64")):
        cmd += ["--platform", tag]
    report(f"resolving requirements.txt for Python {python} against the machine's {len(machine['venv'])} "
           "installed packages")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError as exc:
        raise PlaygroundError(f"requirements.txt: cannot run pip ({exc})") from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        if "No module named pip" in proc.stderr:
            raise PlaygroundError(f"requirements.txt: {sys.executable} has no pip to resolve it with")
        first = errors[0].removeprefix("ERROR:").strip() if errors else (lines[-1] if lines else "pip failed")
        raise PlaygroundError("requirements.txt: " + first)
    have = set(machine["venv"])
    return sorted(w for w in (folder / "wheels").glob("*.whl") if wheel_key(w.name) not in have)


def _packages(conn, target, project: Project, manifest: dict, report: Report) -> Optional[dict]:
    """The receive document's packages part: wheels uploaded, or why they could not be, or none any more."""
    import tempfile

    from .project import requirement_names

    state = manifest.get("packages") or {}
    if project.requirements is None:
        return {"clear": True} if state.get("active_sha256") else None
    sha = hashlib.sha256(project.requirements.encode()).hexdigest()
    if state.get("active_sha256") == sha and not state.get("error"):
        return None  # installed already: nothing to send
    with tempfile.TemporaryDirectory(prefix="playground-deploy-") as tmp:
        try:
            wheels = resolve(project.requirements, _agent(conn, "venv", timeout=120), tmp, report)
        except PlaygroundError as exc:
            _agent(conn, "receive", {"packages": {"error": str(exc), "sha256": sha}, "check": False})
            raise
        remote_dir = conn.run("mktemp -d /tmp/playground-wheels-XXXXXXXX", hide=True, in_stream=False).stdout.strip()
        for i, wheel in enumerate(wheels, 1):
            report(f"{target.name}: sending {wheel.name} ({i}/{len(wheels)})")
            conn.put(str(wheel), f"{remote_dir}/{wheel.name}")
    return {"requirements": project.requirements, "names": requirement_names(project.requirements),
            "wheels": remote_dir}


def to_worker(target, project: Project, report: Report) -> Optional[dict]:
    """The project's packages onto a Celery worker (its tasks import them as the main's do); the DAGs and
    settings are the main's. What its agent said, or None when it has them already."""
    from . import remote

    conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
    with remote.one_line_errors(target):
        report(f"reading {target.name}'s packages")
        pkgs = _packages(conn, target, project, _agent(conn, "manifest", timeout=60), report)
        if pkgs:
            report(f"{target.name}: installing the project's packages beside Airflow's")
            pkgs = _agent(conn, "receive", {"packages": pkgs, "check": False}).get("packages")
    conn.close()
    return pkgs


def deploy(target, project: Project, report: Report, storage: Callable[[str], object], workers=()) -> Deployed:
    """project onto the machine at target (remote.Target); storage(gcp_project) makes a google-cloud-storage
    client. workers: the targets of its Celery workers, which get the packages first (before a DAG that
    imports them reaches the DAG folder they share)."""
    from . import remote

    on_workers = {w.name: to_worker(w, project, report) for w in workers}
    conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
    with remote.one_line_errors(target):
        report(f"reading {target.name}'s DAG folder")
        manifest = _agent(conn, "manifest", timeout=60)
        digests = project.digests()
        doc: dict = {"settings": project.settings, "expect": digests}
        bucket = manifest.get("dags_bucket") or ""
        pkgs = _packages(conn, target, project, manifest, report)
        if pkgs and "wheels" in pkgs:
            report(f"{target.name}: installing the project's packages beside Airflow's")
        settings = packages = None
        if bucket:
            where = f"gs://{bucket}/{PREFIX}"
            if project.settings is not None or pkgs:
                # Before the bucket changes: packages or settings that the machine refuses change nothing.
                report(f"{target.name}: applying the packages and settings")
                first = _agent(conn, "receive", {"settings": project.settings, "packages": pkgs, "check": False})
                settings, packages = first.get("settings"), first.get("packages")
                doc["settings"], pkgs = None, None
            added, changed, removed, unchanged = _bucket(lambda: storage(manifest.get("project") or ""), bucket,
                                                         project, report)
        else:
            where = manifest["dags_folder"]
            added, changed, removed, unchanged = plan(digests, manifest.get("files") or {})
            doc["put"] = {rel: base64.b64encode(project.files[rel].read_bytes()).decode() for rel in added + changed}
            doc["delete"] = removed
        sending = f"{len(added) + len(changed)} file(s) to write, {len(removed)} to remove"
        report(f"{target.name}: {sending}; Airflow parses the folder" + (", once the bucket's copy arrives"
                                                                          if bucket else ""))
        if pkgs:
            doc["packages"] = pkgs
        answer = _agent(conn, "receive", doc)
        if not bucket:
            settings, packages = answer.get("settings"), answer.get("packages")
    conn.close()
    return Deployed(name=target.name, where=where, added=added, changed=changed, removed=removed,
                    unchanged=unchanged, settings=settings, dags=answer.get("dags") or [],
                    import_errors=answer.get("import_errors") or {}, missing=answer.get("missing") or [],
                    packages=packages, workers=on_workers)


def _bucket(storage, bucket: str, project: Project, report: Report):
    from .gce.google import unreachable

    try:
        return sync_bucket(storage(), bucket, project, report)
    except PlaygroundError:
        raise
    except Exception as exc:  # google.api_core errors and transport failures: one line
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.Forbidden):
            raise PlaygroundError(f"gs://{bucket}: permission denied writing DAGs (needs storage.objects.create "
                                  "and .delete on the bucket)") from exc
        if isinstance(exc, gexc.NotFound):
            raise PlaygroundError(f"gs://{bucket}: no such bucket (the machine's dags-bucket attribute)") from exc
        if isinstance(exc, gexc.GoogleAPICallError):
            raise PlaygroundError(f"gs://{bucket}: {exc.message}") from exc
        raise unreachable("storage", exc) from exc
