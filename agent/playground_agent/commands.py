"""Running the machine's programs for the agent's jobs: one failure type, stdin for secrets, psql as its
owners."""
from __future__ import annotations

import secrets
import string
import subprocess
from typing import Dict, List, Optional

PSQL = ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qtAX"]
# psql as airflow over the socket (peer authentication). setpriv, not runuser: runuser opens a PAM session,
# two journal lines each time, and the health timer and autostop ask every few seconds.
PSQL_AS_AIRFLOW = ["setpriv", "--reuid=airflow", "--regid=airflow", "--init-groups",
                   "psql", "-qtAX", "-d", "airflow", "-c"]


class CommandError(Exception):
    """A program the agent ran failed; the message names what and says its last words."""


def run(cmd: List[str], env: Optional[Dict[str, str]] = None, what: str = "", timeout: int = 600,
        secret_input: Optional[str] = None) -> str:
    """Run cmd; secret_input goes to its stdin (never its argv, which `ps` and runuser's journal line show),
    from a session of its own: with no controlling terminal, getpass reads stdin, even when the agent was
    started from a shell."""
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, input=secret_input,
                          universal_newlines=True, timeout=timeout, start_new_session=secret_input is not None)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CommandError("%s failed (exit %d): %s" % (what or cmd[0], proc.returncode, " | ".join(tail)))
    return proc.stdout


def new_password(length: int = 24) -> str:
    """Letters and digits only (~143 bits): never read as a command-line option, easy to paste."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))
