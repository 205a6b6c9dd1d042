"""playground: a private Airflow + MLflow machine per project.

The commands live in playground/commands/, one module per group. Google libraries are imported lazily
inside the commands that need them, so `playground --help` stays fast.
"""
from __future__ import annotations

import sys

from .commands import build

app = build()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
