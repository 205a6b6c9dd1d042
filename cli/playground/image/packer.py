"""Running Packer: one command line per source, a validate before every build
(a bad or missing variable fails in a second, before anything is made), the
build's progress, and Packer's errors turned into one line."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from typing import Callable, Optional, TextIO

from .. import paths
from ..errors import PlaygroundError
from . import profiles

Report = Callable[[str], None]
SOURCES = {"local": "null.local", "gce": "googlecompute.gce"}
# What a provisioning script writes, as Packer relays it: stdout, and stderr.
_OUTPUT = re.compile(r"^\s+(?:null\.local|googlecompute\.gce): (.*\S)")
_STDERR = re.compile(r"^==> (?:null\.local|googlecompute\.gce): (.*\S)")
_SCRIPT = re.compile(r"Provisioning with shell script: .*?/?(\d\d-[\w-]+\.sh)")


def command(verb: str, source: str, profile: str, variables: dict[str, str]) -> list[str]:
    """`packer build|validate` for one source of the template with the profile's var-file and `variables`."""
    cmd = ["packer", verb, "-machine-readable", "-only=" + SOURCES[source],
           "-var-file=" + str(profiles.var_file(profile))]
    for key, value in variables.items():
        cmd += ["-var", f"{key}={value}"]
    cmd.append(str(paths.PACKER_DIR / "template"))
    return cmd


def _env() -> dict[str, str]:
    return dict(os.environ, CHECKPOINT_DISABLE="1", PACKER_NO_COLOR="1")


def _unescape(text: str) -> str:
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")


def error_line(raw: str) -> str:
    """One line from a Packer error: what is wrong, where, and the name it concerns."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", _unescape(raw)) if p.strip()]
    what, where, more = "", "", ""
    for para in paragraphs:
        first = " ".join(para.split())
        if first == "(source code not available)" or re.fullmatch(r"Error: \d+ error\(s\) occurred:?", first):
            continue
        loc = re.match(r"on (\S+) line (\d+)", first)
        if loc:
            where = where or f"{loc.group(1)} line {loc.group(2)}"
            continue
        if not what:
            what = re.sub(r"^(Error: |\* |--> [\w.-]+: )", "", first)
        elif not more:
            more = first.split(". ")[0].rstrip(".")
    if not what:
        return " ".join(_unescape(raw).split())[:300]
    # "Unset variable "x"" names its field; "Undefined -var variable" says which only in the next paragraph.
    line = what if '"' in what or not more else f"{what}: {more}"
    return f"{line} ({where})" if where and where != "line" else line


def validate(source: str, profile: str, variables: dict[str, str]) -> None:
    """`packer validate` with exactly the build's inputs; a bad input is one line naming it."""
    proc = subprocess.run(command("validate", source, profile, variables), capture_output=True, text=True, env=_env())
    if proc.returncode == 0:
        return
    errors = [line.split(",", 4)[-1] for line in proc.stdout.splitlines() if ",ui,error," in line]
    detail = error_line(errors[0] if errors else proc.stdout + proc.stderr)
    if detail.startswith("Unset variable"):
        detail += f": set it in packer/profiles/{profile}.pkrvars.hcl"
    raise PlaygroundError(f"packer template ({profile} profile): {detail}")


def scripts() -> list[str]:
    """The numbered provisioning scripts, in the order the template runs them."""
    return sorted(p.name for p in (paths.PACKER_DIR / "scripts").glob("[0-9][0-9]-*.sh"))


def progress_of(line: str) -> Optional[str]:
    """Turn Packer's machine-readable lines into a short status, when they carry one."""
    parts = line.rstrip("\n").split(",")
    if len(parts) >= 5 and parts[2] == "ui" and parts[3] in ("say", "message"):
        text = _unescape(",".join(parts[4:])).replace("\n", " ")
        match = _SCRIPT.search(text)
        if match:
            steps = scripts()
            step = f" ({steps.index(match.group(1)) + 1}/{len(steps)})" if match.group(1) in steps else ""
            return f"provisioning: {match.group(1)}{step}"
        if "==>" in text:
            return text.split("==>", 1)[1].strip()[:100]
    return None


class BuildInterrupted(PlaygroundError):
    pass


@contextlib.contextmanager
def signals_raise():
    """SIGTERM and SIGHUP end a build through the same clean-up as an error (Python's default would
    leave Packer, and a local build's container, running on)."""
    def interrupted(signum, _frame):
        for sig in old:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise BuildInterrupted(f"image build interrupted ({signal.Signals(signum).name}): nothing was kept",
                               exit_code=128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class BuildOutput:
    """Follows `packer build -machine-readable` output: the progress, the script running, what it wrote
    last, and Packer's own errors, so that a failure is one line."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.script, self.said_out, self.said_err = "", "", ""

    def feed(self, line: str) -> Optional[str]:
        """Take one line; return a progress status when it carries one."""
        status = progress_of(line)
        if status and status.startswith("provisioning: "):
            self.script, self.said_out, self.said_err = status.split()[1], "", ""
        parts = line.rstrip("\n").split(",", 4)
        if len(parts) == 5 and parts[2] == "ui" and parts[4]:
            text = (_unescape(parts[4]).strip("\n").splitlines() or [""])[-1]
            # A running script's stdout comes as "    SOURCE: line" messages, its stderr as
            # "==> SOURCE: line" errors; Packer's own errors have neither form.
            out, err = _OUTPUT.match(text), _STDERR.match(text)
            if parts[3] == "message" and out:
                self.said_out = out.group(1)
            elif parts[3] == "error" and self.script and err:
                self.said_err = err.group(1)
            elif parts[3] == "error":
                self.errors.append(parts[4])
        return status

    def failure(self, code: int) -> str:
        """What went wrong: the failing script, its exit status and its last words, else Packer's error."""
        detail = error_line(self.errors[-1]) if self.errors else f"exit {code}"
        exited = re.search(r"non-zero exit status: (\d+)", detail)
        if not (self.script and exited):
            return detail
        said = self.said_err or self.said_out
        return f"{self.script} exited with status {exited.group(1)}" + (f": {said[:200]}" if said else "")


def build(source: str, profile: str, variables: dict[str, str], report: Report, log: TextIO) -> None:
    """`packer build` with progress; a failure is one line (BuildOutput.failure). Whatever ends this
    early (an error, Ctrl-C, SIGTERM turned into an exception) stops Packer first."""
    proc = subprocess.Popen(command("build", source, profile, variables), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env())
    output = BuildOutput()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            status = output.feed(line)
            if status:
                report(status)
        code = proc.wait()
    finally:
        # SIGINT is Packer's own clean cancel (it tears its build VM down).
        end_process(proc, signal.SIGINT)
    if code != 0:
        raise PlaygroundError(f"packer build failed: {output.failure(code)}; the build log is {log.name}")


def end_process(proc: subprocess.Popen, sig: int, timeout: float = 60) -> None:
    """Ask a child to finish with `sig`; kill it if it has not within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
