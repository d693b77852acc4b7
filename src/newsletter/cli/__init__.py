"""The command line: parse options, call the core, print. Errors become one line and exit 1.

Each command group lives in its own module; importing them registers their commands.
"""

from newsletter.cli import campaign, ops, setup, stats, subscribers, upcoming, users  # noqa: F401
from newsletter.cli.base import cli, main

__all__ = ["cli", "main"]
