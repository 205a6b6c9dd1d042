"""The host's own package settings, used as build inputs and never written to the repo.

The build container reaches the package registries exactly as this machine
does: with its apt sources, its pip index and its CA bundle.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..errors import PlaygroundError

# The release this machine's apt sources name; a local profile on another release
# (bullseye for seed-local) gets the same archives with the suite names swapped.
SUITE = "bookworm"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def apt_source_files() -> list[Path]:
    files = []
    main = Path("/etc/apt/sources.list")
    if main.is_file() and main.read_text().strip():
        files.append(main)
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    return files


def apt_sources_for(suite: str) -> list[tuple[str, str]]:
    """(file name, text) of this machine's apt sources, for `suite` instead of bookworm: the suites
    bookworm, bookworm-updates and bookworm-security become SUITE, SUITE-updates and SUITE-security.
    Sources for other distributions (nothing Debian's archive serves for `suite`) are left out."""
    out = []
    for path in apt_source_files():
        text = path.read_text()
        if suite == SUITE:
            out.append((path.name, text))
        elif SUITE in text:
            out.append((path.name, re.sub(rf"\b{SUITE}\b", suite, text)))
    return out


def debian_mirror() -> str:
    """The host's Debian archive URI for bookworm (PLAYGROUND_DEBIAN_MIRROR overrides); the same
    archive serves the other releases a local profile may use."""
    if os.environ.get("PLAYGROUND_DEBIAN_MIRROR"):
        return os.environ["PLAYGROUND_DEBIAN_MIRROR"]
    for path in apt_source_files():
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
                    if k.strip()
                )
                if SUITE in fields.get("suites", "").split() and fields.get("uris"):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1] if not parts[1].startswith("[") else parts[2]
    raise PlaygroundError(
        f"no Debian {SUITE} archive in this machine's apt sources: set PLAYGROUND_DEBIAN_MIRROR to its URI"
    )


def ca_bundle() -> str:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"), *CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return candidate
    raise PlaygroundError("no CA bundle found on this machine (looked for " + ", ".join(CA_BUNDLES) + ")")


def pip_index_url() -> str:
    """The index pip uses here, if configured; empty means pip's default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    try:
        out = subprocess.run(["pip", "config", "get", "global.index-url"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
