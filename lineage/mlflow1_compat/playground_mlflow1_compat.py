"""An MLflow 1.x client (the seed's mlflow-skinny 1.19) against the image's MLflow 2.x server.

Two things a 1.x client cannot do there, both found by booting the seed's stack:
- Artifacts. The server proxies them (`--serve-artifacts`) and gives every run an artifact URI
  `mlflow-artifacts:/<experiment>/<run>/artifacts`, resolved against the tracking server's
  `/api/2.0/mlflow-artifacts/artifacts/` endpoints. Clients from 1.22 carry that repository; older ones
  raise "Could not find a registered artifact repository for: mlflow-artifacts:/..." on every
  log_artifact. `MlflowArtifactsRepository` is that repository.
- The model registry. 1.x clients call `/api/2.0/preview/mlflow/registered-models/...`; MLflow 2.0
  removed the `preview` routes (404). `registry_store` is 1.x's REST store on the routes without it.

Both are registered through MLflow's own plugin entry points (`mlflow.artifact_repository`,
`mlflow.model_registry_store`); the image installs this only into an Airflow venv whose MLflow is 1.x
(packer/scripts/35-lineage.sh).
"""
import os
import posixpath
import urllib.parse

import requests
from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.tracking._tracking_service.utils import get_tracking_uri

TIMEOUT_S = 120


class MlflowArtifactsRepository(ArtifactRepository):
    def __init__(self, artifact_uri):
        super().__init__(artifact_uri)
        parsed = urllib.parse.urlparse(artifact_uri)
        if parsed.netloc:
            raise ValueError("mlflow-artifacts URIs with a host are not supported: %s" % artifact_uri)
        tracking = get_tracking_uri()
        if not tracking.startswith(("http://", "https://")):
            raise ValueError("mlflow-artifacts:/ needs an http(s) tracking URI, got %r" % tracking)
        self.base = tracking.rstrip("/") + "/api/2.0/mlflow-artifacts/artifacts"
        self.root = parsed.path.strip("/")

    def _url(self, path=""):
        rel = posixpath.join(self.root, path) if path else self.root
        return self.base + "/" + urllib.parse.quote(rel.strip("/"))

    def log_artifact(self, local_file, artifact_path=None):
        dest = posixpath.join(artifact_path or "", os.path.basename(local_file))
        with open(local_file, "rb") as fh:
            resp = requests.put(self._url(dest), data=fh, timeout=TIMEOUT_S)
        resp.raise_for_status()

    def log_artifacts(self, local_dir, artifact_path=None):
        for dirpath, _, filenames in os.walk(local_dir):
            rel = os.path.relpath(dirpath, local_dir)
            dest = artifact_path or ""
            if rel != ".":
                dest = posixpath.join(dest, *rel.split(os.sep))
            for name in filenames:
                self.log_artifact(os.path.join(dirpath, name), dest or None)

    def list_artifacts(self, path=None):
        rel = posixpath.join(self.root, path) if path else self.root
        resp = requests.get(self.base, params={"path": rel}, timeout=TIMEOUT_S)
        resp.raise_for_status()
        infos = []
        for f in resp.json().get("files", []):
            full = posixpath.join(path, f["path"]) if path else f["path"]
            infos.append(FileInfo(full, f.get("is_dir", False), int(f["file_size"]) if "file_size" in f else None))
        return sorted(infos, key=lambda i: i.path)

    def _download_file(self, remote_file_path, local_path):
        with requests.get(self._url(remote_file_path), stream=True, timeout=TIMEOUT_S) as resp:
            resp.raise_for_status()
            with open(local_path, "wb") as out:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)

    def delete_artifacts(self, artifact_path=None):
        requests.delete(self._url(artifact_path or ""), timeout=TIMEOUT_S).raise_for_status()


def registry_store(store_uri, **kwargs):
    """The model registry store for http(s) tracking URIs: 1.x's own, on the routes MLflow 2.x serves."""
    from mlflow.store.model_registry import rest_store
    from mlflow.tracking._model_registry.utils import _get_rest_store
    from mlflow.utils.rest_utils import call_endpoint

    class RegistryRestStore(rest_store.RestStore):
        def _call_endpoint(self, api, json_body):
            endpoint, method = rest_store._METHOD_TO_INFO[api]
            endpoint = endpoint.replace("/api/2.0/preview/mlflow/", "/api/2.0/mlflow/", 1)
            return call_endpoint(self.get_host_creds(), endpoint, method, json_body, api.Response())

    return RegistryRestStore(_get_rest_store(store_uri, **kwargs).get_host_creds)
