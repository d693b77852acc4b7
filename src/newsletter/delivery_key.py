"""The delivery key: the name of one delivery, wherever it travels. Pure.

A campaign's message to one subscriber is ``c<campaign id>-d<delivery id>``.
The key names the outbox file, is part of the Message-ID, is the idempotency
key a transport can ask about (``was_sent``), and goes to the email APIs under
the name ``FIELD`` (a custom argument, variable, metadata or tag), which they
echo in every webhook event; ``parse`` finds the delivery again from it.

A test send (``campaign test --to``) is not a delivery: its key,
``test-c<campaign id>-<time>``, parses to nothing, so no event about it can
touch a delivery row.
"""

from __future__ import annotations

import datetime as dt
import re

# The name the key travels under in provider API requests and their events.
FIELD = "newsletter_delivery"
_KEY = re.compile(r"^c(?P<campaign>\d+)-d(?P<delivery>\d+)$")


def build(campaign_id: int, delivery_id: int) -> str:
    """The key of one delivery row of a campaign."""
    return f"c{campaign_id}-d{delivery_id}"


def for_test_send(campaign_id: int, now: dt.datetime) -> str:
    """A key for a one-off test message of a campaign: unique per send, never a delivery's."""
    return f"test-c{campaign_id}-{now:%Y%m%d%H%M%S%f}"


def parse(key: str | None) -> tuple[int, int] | None:
    """(campaign id, delivery id) of a delivery's key; None for anything else."""
    match = _KEY.match(key or "")
    if match is None:
        return None
    return int(match["campaign"]), int(match["delivery"])
