"""Deliver the spooled lineage events to MLflow.

    python -m playground_lineage.replay            # once, what is waiting (within PLAYGROUND_LINEAGE_REPLAY_S)
    python -m playground_lineage.replay --follow   # the lineage service: until SIGTERM, after each burst
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from . import spool
from .delivery import deliver_pending, follow


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--follow", action="store_true", help="keep delivering until SIGTERM (the service)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between looks at the spool")
    parser.add_argument("--quiet", type=float, default=2.0, help="deliver once no event came for this long")
    parser.add_argument("--max-wait", type=float, default=60.0, help="... or once the oldest waited this long")
    args = parser.parse_args(argv)
    budget = float(os.environ.get("PLAYGROUND_LINEAGE_REPLAY_S", "20"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.follow:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        follow(args.interval, budget, stop, args.quiet, args.max_wait)
        return 0
    before = len(spool.pending())
    done, left = deliver_pending(budget, expand=True)
    print("lineage replay: %d delivered, %d waiting (of %d)" % (done, left, before), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
