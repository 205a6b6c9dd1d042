"""CLI start-up time: `playground --help` and `playground list` (issue 5).

    .venv/bin/python bench/cli.py [--repeat 10]
Aim: `--help` under 0.5 s (the Google libraries are imported lazily, only by the
commands that call Google). Each figure is a fresh process, as a user runs it.
`import google.cloud.compute_v1` alone is timed too, to show what laziness saves.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

AIM_HELP_S = 0.5
BIN = Path(sys.executable).parent


def timed(argv: list[str], repeat: int, env: dict) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        out.append(time.monotonic() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
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
        gce_list = timed([cli, "list", "--project", "bench-project"], args.repeat, gce_env)
    finally:
        fake.close()
    rows = [
        ("playground --help", timed([cli, "--help"], args.repeat, env), AIM_HELP_S),
        ("playground list (local)", timed([cli, "list"], args.repeat, env), None),
        ("playground list --project (GCE, local fake API)", gce_list, None),
        ("python -c 'import google.cloud.compute_v1'",
         timed([sys.executable, "-c", "import google.cloud.compute_v1"], args.repeat, env), None),
        ("python -c 'import google.cloud.scheduler_v1'",
         timed([sys.executable, "-c", "import google.cloud.scheduler_v1"], args.repeat, env), None),
    ]
    table = Table("figure", "median", "min", "max", "aim", "met", title=f"CLI start-up ({args.repeat} runs each)")
    for name, runs, aim in rows:
        med = statistics.median(runs)
        table.add_row(name, f"{med:.3f} s", f"{min(runs):.3f} s", f"{max(runs):.3f} s",
                      f"< {aim} s" if aim else "-", ("yes" if med < aim else "NO") if aim else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
