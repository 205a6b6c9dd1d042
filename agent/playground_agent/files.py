"""The files the agent writes and reads: env files, JSON state, any file written atomically with its mode
and group. Every job of the agent writes through here; none of them imports another job for it."""
from __future__ import annotations

import grp
import json
import os
import tempfile
from typing import Dict, List, NamedTuple, Optional, Union

ENV_HEADER = "# written by playground-agent from instance metadata; edits are overwritten"


class FileSpec(NamedTuple):
    content: str
    mode: int
    group: str  # "" keeps root's group


def gid_of(group: str) -> int:
    if not group:
        return 0 if os.geteuid() == 0 else os.getegid()
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0 if os.geteuid() == 0 else os.getegid()


def env_text(values: Dict[str, str], header: str = ENV_HEADER) -> str:
    """KEY="VALUE" lines, sorted, under a comment line (none when header is empty). Values were validated to
    be single-line and free of quotes that matter; quoting still keeps systemd and shells reading the same."""
    lines = [header] if header else []
    for key in sorted(values):
        lines.append('%s="%s"' % (key, values[key].replace("\\", "\\\\").replace('"', '\\"')))
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> Dict[str, str]:
    """KEY=VALUE lines (as env_text writes them, values in double quotes); comments skipped."""
    env: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        env[key] = value
    return env


def read_env(path: str) -> Dict[str, str]:
    with open(path, encoding="utf-8") as fh:
        return parse_env(fh.read())


def read_json(path: str) -> Optional[Dict]:
    """A JSON file the agent wrote, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def write_atomic(path: str, content: Union[str, bytes], mode: int, gid: Optional[int] = None) -> None:
    """content (text as UTF-8, or bytes) at path, root-owned with group gid when root, or not at all."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if gid is not None and os.geteuid() == 0:
                os.fchown(fh.fileno(), 0, gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _same(path: str, spec: FileSpec, gid: int) -> bool:
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            return fh.read() == spec.content and (st.st_mode & 0o7777) == spec.mode and st.st_gid == gid
    except OSError:
        return False


def write_all(files: Dict[str, FileSpec]) -> List[str]:
    """Write what differs; return the paths that changed."""
    changed = []
    for path, spec in sorted(files.items()):
        gid = gid_of(spec.group)
        if _same(path, spec, gid):
            continue
        write_atomic(path, spec.content, spec.mode, gid)
        changed.append(path)
    return changed
