"""Secrets the services need, read from Secret Manager with the instance's own token.

Like Google's client libraries on GCE: an access token from the metadata server
(`instance/service-accounts/default/token`), then Secret Manager's REST call
`GET v1/{name}:access`. The value is written only to a root-only file under
/var/lib/playground/secrets, never logged and never into the shared env files.
PLAYGROUND_SECRETMANAGER_ENDPOINT points the agent at another server (tests).
"""
from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List

from . import paths
from .config import Config, ConfigError
from .files import FileSpec, env_text
from .metadata import MetadataClient, MetadataError

ENDPOINT = "https://secretmanager.googleapis.com"
# versions.access accepts only this scope; a VM with narrower scopes gets 403 "Request had insufficient
# authentication scopes" whatever its roles (https://cloud.google.com/secret-manager/docs/accessing-the-api).
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SCOPE_FIX = ("the instance's service account needs the cloud-platform scope (Secret Manager accepts no other): "
             "stop it, then gcloud compute instances set-service-account INSTANCE --scopes=cloud-platform")


def _scopes(client: MetadataClient) -> List[str]:
    """The scopes of the instance's token, as the metadata server lists them (empty when it does not say)."""
    try:
        text, _ = client.get("instance/service-accounts/default/scopes", recursive=False)
    except MetadataError:
        return []
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def access(client: MetadataClient, name: str, timeout: float = 10.0, attr: str = "mlflow-db-password-secret",
           one_line: bool = True, patience: float = 0.0, log=lambda msg: None) -> str:
    """The secret version's payload as text; ConfigError naming the attribute when it cannot be read.
    patience: seconds to keep retrying a 403 or 404 (a grant or a version made moments ago)."""
    if "/versions/" not in name:
        name += "/versions/latest"
    scopes = _scopes(client)
    if scopes and CLOUD_PLATFORM not in scopes:
        raise ConfigError(attr, "a secret the instance can read; %s (it has %s)" % (
            SCOPE_FIX, ", ".join(s.rsplit("/", 1)[-1] for s in scopes)), name)
    deadline, delay = time.monotonic() + patience, 5.0
    while True:
        try:
            value = _access_once(client, name, timeout, attr)
            break
        except _Refused as exc:
            if exc.code not in (403, 404) or exc.scopes or time.monotonic() + delay > deadline:
                raise exc.error from None
            log("%s: Secret Manager answered %d; retrying in %.0f s (IAM grants take minutes to reach every "
                "server)" % (attr, exc.code, delay))
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    if not value or (one_line and "\n" in value.strip("\n")):
        raise ConfigError(attr, "a one-line password, not %s" % ("nothing" if not value else "several lines"),
                          name)
    return value.strip("\n") if one_line else value


class _Refused(Exception):
    def __init__(self, code: int, scopes: bool, error: ConfigError) -> None:
        super().__init__(str(error))
        self.code, self.scopes, self.error = code, scopes, error


def _access_once(client: MetadataClient, name: str, timeout: float, attr: str) -> str:
    try:
        token_doc, _ = client.get("instance/service-accounts/default/token", recursive=False)
        token = json.loads(token_doc)["access_token"]
    except (MetadataError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(attr, "an instance service account with an access token (%s)" % exc, name) from None
    root = os.environ.get("PLAYGROUND_SECRETMANAGER_ENDPOINT", ENDPOINT).rstrip("/")
    req = urllib.request.Request("%s/v1/%s:access" % (root, name),
                                 headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read().decode("utf-8"))
        return base64.b64decode(doc["payload"]["data"]).decode("utf-8")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read().decode("utf-8"))["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc.reason)
        hint = {403: "grant the instance's service account roles/secretmanager.secretAccessor on it",
                404: "create the secret and a version"}.get(exc.code, "retry later")
        scopes = exc.code == 403 and "insufficient authentication scopes" in message.lower()
        if scopes:
            hint = SCOPE_FIX
        raise _Refused(exc.code, scopes, ConfigError(
            attr, "a secret the instance can read; Secret Manager answered %d (%s): %s"
            % (exc.code, message[:120], hint), name)) from None
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(attr, "a secret Secret Manager returns (%s)" % exc, name) from None


def remove_unneeded(files: Dict[str, FileSpec]) -> List[str]:
    """Remove the secrets env files no setting needs any more (a unit would still read them)."""
    removed = []
    for path in [paths.SECRETS_DIR + "/mlflow.env"]:
        if path not in files and os.path.exists(path):
            os.unlink(path)
            removed.append(path)
    return removed


def files(cfg: Config, client: MetadataClient) -> Dict[str, FileSpec]:
    """The root-only env files holding secrets, for the settings that need them."""
    if cfg.mlflow_backend != "cloudsql":
        return {}
    password = access(client, cfg.mlflow_db_password_secret)
    uri = "mysql+pymysql://%s:%s@127.0.0.1:%d/%s" % (
        cfg.mlflow_db_user, urllib.parse.quote(password, safe=""), cfg.cloudsql_proxy_port, cfg.mlflow_db_name)
    # Read by systemd (as root) before it drops to the mlflow user; later EnvironmentFile= wins.
    return {paths.SECRETS_DIR + "/mlflow.env": FileSpec(env_text({"MLFLOW_BACKEND_STORE_URI": uri}), 0o600, "")}
