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


def deploy(target, project: Project, report: Report, storage: Callable[[str], object]) -> Deployed:
    """project onto the machine at target (remote.Target); storage(gcp_project) makes a google-cloud-storage
    client."""
    from . import remote

    conn = remote.connect(target, timeout=20 if target.proxy_command else 5)
    with remote.one_line_errors(target):
        report(f"reading {target.name}'s DAG folder")
        manifest = _agent(conn, "manifest", timeout=60)
        digests = project.digests()
        doc: dict = {"settings": project.settings, "expect": digests}
        bucket = manifest.get("dags_bucket") or ""
        settings = None
        if bucket:
            where = f"gs://{bucket}/{PREFIX}"
            if project.settings is not None:
                # Before the bucket changes: settings that Airflow refuses leave everything as it was.
                report(f"{target.name}: applying the settings")
                settings = _agent(conn, "receive", {"settings": project.settings, "check": False}).get("settings")
                doc["settings"] = None
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
        answer = _agent(conn, "receive", doc)
        if not bucket:
            settings = answer.get("settings")
    conn.close()
    return Deployed(name=target.name, where=where, added=added, changed=changed, removed=removed,
                    unchanged=unchanged, settings=settings, dags=answer.get("dags") or [],
                    import_errors=answer.get("import_errors") or {}, missing=answer.get("missing") or [])


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
