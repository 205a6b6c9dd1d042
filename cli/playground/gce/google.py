"""Credentials and endpoints shared by every Google API client the CLI builds.

PLAYGROUND_<API>_ENDPOINT (e.g. PLAYGROUND_COMPUTE_ENDPOINT) or, for all APIs at
once, PLAYGROUND_GOOGLE_ENDPOINT points the clients at another server: a private
endpoint, or the test server in tests/fakegoogle.py. PLAYGROUND_GOOGLE_ANONYMOUS=1
(honoured only together with such an endpoint) sends no credentials.
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import PlaygroundError

ROOTS = {"compute": "https://compute.googleapis.com", "cloudscheduler": "https://cloudscheduler.googleapis.com",
         "cloudresourcemanager": "https://cloudresourcemanager.googleapis.com",
         "serviceusage": "https://serviceusage.googleapis.com", "storage": "https://storage.googleapis.com",
         "secretmanager": "https://secretmanager.googleapis.com"}


def endpoint(api: str) -> Optional[str]:
    """The overriding endpoint for one API, or None for Google's own."""
    return os.environ.get(f"PLAYGROUND_{api.upper()}_ENDPOINT") or os.environ.get("PLAYGROUND_GOOGLE_ENDPOINT")


def root(api: str) -> str:
    return (endpoint(api) or ROOTS[api]).rstrip("/")


def credentials():
    if os.environ.get("PLAYGROUND_GOOGLE_ANONYMOUS") == "1" and any(endpoint(api) for api in ROOTS):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        raise PlaygroundError("no Google credentials: run `gcloud auth application-default login` "
                              "(Application Default Credentials)") from exc
    return creds


def client_kwargs(api: str) -> dict:
    """Keyword arguments for a google-cloud-* client: REST transport, our endpoint and credentials."""
    options = {"api_endpoint": endpoint(api)} if endpoint(api) else {}
    return {"credentials": credentials(), "client_options": options, "transport": "rest"}


def storage_client(project: str):
    """google-cloud-storage's client (its own JSON transport; PLAYGROUND_STORAGE_ENDPOINT points it elsewhere)."""
    from google.cloud import storage

    options = {"api_endpoint": endpoint("storage")} if endpoint("storage") else {}
    return storage.Client(project=project, credentials=credentials(), client_options=options)


def session():
    """An authorized requests session for the few REST calls without a client library here
    (permission and API checks)."""
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(credentials())


def rest(verb: str, api: str, path: str, body: Optional[dict] = None,
         params: Optional[dict] = None) -> tuple[int, dict]:
    """One REST call with the user's credentials and no client library (importing google.cloud.compute_v1
    alone takes about 3 s here): (HTTP status, the answer's JSON, {} when there is none)."""
    resp = session().request(verb, f"{root(api)}/{path}", json=body, params=params, timeout=30)
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    return resp.status_code, doc if isinstance(doc, dict) else {}


def api_error(code: int, doc: dict):
    """A REST error answer as the client libraries raise it (google.api_core's), so one explain() reads both."""
    from google.api_core import exceptions as gex

    err = doc.get("error") or {}
    return gex.from_http_status(code, str(err.get("message", "")), errors=err.get("errors") or [])


def network_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when Google cannot be reached at all (no API answer to explain)."""
    import requests
    from google.auth.exceptions import GoogleAuthError

    return (requests.RequestException, GoogleAuthError)


def unreachable(api: str, exc: BaseException) -> PlaygroundError:
    reason = str(exc).split("(Caused by ")[-1].rstrip(")")[:160]
    return PlaygroundError(f"cannot reach the {api} API at {root(api)}: {reason}; check the network, the "
                           f"credentials, or PLAYGROUND_{api.upper()}_ENDPOINT")


def reachable(api: str):
    """Decorator: a call that cannot reach Google at all fails with one line, not a traceback."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except network_errors() as exc:
                raise unreachable(api, exc) from exc
        return call
    return wrap
