"""A sending process for one shard of a large campaign; started by newsletter.delivery.shards."""

import signal
import sys

# Before the imports, which take a moment: a stop from the parent in that moment is
# remembered, and Ctrl-C is left to the parent, which stops its children in order.
_stopped: list[bool] = []
signal.signal(signal.SIGTERM, lambda *_: _stopped.append(True))
signal.signal(signal.SIGINT, signal.SIG_IGN)

from newsletter.delivery import shard_main  # noqa: E402

if __name__ == "__main__":
    shard_main(int(sys.argv[1]), _stopped)
