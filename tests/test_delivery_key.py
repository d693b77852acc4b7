"""The delivery key: built in one place, read back in one place."""

from __future__ import annotations

import datetime as dt

from newsletter import delivery_key


def test_a_delivery_key_reads_back_as_its_campaign_and_delivery() -> None:
    key = delivery_key.build(12, 3456)
    assert delivery_key.parse(key) == (12, 3456)


def test_test_send_keys_and_foreign_values_name_no_delivery() -> None:
    now = dt.datetime.now(dt.UTC)
    first = delivery_key.for_test_send(7, now)
    later = delivery_key.for_test_send(7, now + dt.timedelta(microseconds=1))
    assert first != later
    for value in (first, None, "", "c1-d", "c1-dx", "x1-d2", "c1-d2 ", "c1-d2-d3"):
        assert delivery_key.parse(value) is None, value
