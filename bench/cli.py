"""CLI start-up time: `playground --help` and `playground list` (issue 5).

    .venv/bin/python bench/cli.py [--repeat 10]
Aim: `--help` under 0.5 s (the Google libraries are imported lazily, only by the
commands that call Google). Each figure is a fresh process, as a user runs it.
`import google.cloud.compute_v1` alone is timed too, to show what laziness saves.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import Row, print_rows

AIM_HELP_S = 0.5
BIN = Path(sys.executable).parent


def timed(argv: list[str], repeat: int, env: dict) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        out.append(time.monotonic() - t0)
    return out


def measure(repeat: int = 10) -> list[Row]:
    # `list` without a project lists local instances only: no Google call leaves this machine.
    env = {k: v for k, v in os.environ.items() if k != "PLAYGROUND_PROJECT"}
    cli = str(BIN / "playground")
    # `list --project` against the local fake Google server (tests/fakegoogle.py): the cost of the
    # Compute client, with no network in the figure.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fakegoogle import FakeGoogle

    fake = FakeGoogle()
    gce_env = dict(env, PLAYGROUND_GOOGLE_ENDPOINT=fake.endpoint, PLAYGROUND_GOOGLE_ANONYMOUS="1")
    try:
        gce_list = timed([cli, "list", "--project", "bench-project"], repeat, gce_env)
    finally:
        fake.close()
    return [
        Row("cli: playground --help (s)", timed([cli, "--help"], repeat, env), AIM_HELP_S),
        Row("cli: playground list, local (s)", timed([cli, "list"], repeat, env)),
        Row("cli: playground list --project, GCE on the local fake API (s)", gce_list),
        Row("cli: python -c 'import google.cloud.compute_v1' (s)",
            timed([sys.executable, "-c", "import google.cloud.compute_v1"], repeat, env)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print_rows(measure(args.repeat), f"CLI start-up ({args.repeat} runs each)")


if __name__ == "__main__":
    main()
