"""Deliver the spooled lineage events MLflow could not take when they happened (a systemd timer runs this)."""
from __future__ import annotations

import os
import sys

from . import spool
from .listener import deliver_pending


def main() -> int:
    before = len(spool.pending())
    deliver_pending(float(os.environ.get("PLAYGROUND_LINEAGE_REPLAY_S", "20")))
    after = len(spool.pending())
    print("lineage replay: %d delivered, %d waiting" % (before - after, after), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
