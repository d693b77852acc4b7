"""A sending process for one shard of a large campaign; started by the delivery module."""

import sys

from newsletter.delivery import shard_main

if __name__ == "__main__":
    shard_main(int(sys.argv[1]))
