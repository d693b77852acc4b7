"""Subscribers whose names a list may hold, for tests that build a campaign's messages
two ways (compiled and in full) and compare the bytes."""

from __future__ import annotations

from typing import Any

# Quotes, markup and entities: what HTML escaping must turn into text.
MARKUP = [
    ("quotes@example.org", 'O\'Brien "Jr"', "d'Arcy"),
    ("lt@example.org", "<b>Bold</b> & <i>co</i>", ">"),
    ("amp@example.org", "&amp; &lt; &#34;", "&"),
]
# Accents, right to left (and an override), emoji with joiners and flags.
SCRIPTS = [
    ("accents@example.org", "Zoë Ångström", "Ñúñez"),
    ("rtl@example.org", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627", "\u202eevil"),
    ("emoji@example.org", "\U0001f600\u0301 \U0001f1ef\U0001f1f5", "\u200d"),
]
# Empty names, an internationalised mailbox, and the splice's own private-use marks.
EDGES = [
    ("empty@example.org", "", ""),
    ("我@例え.jp", "名前", ""),
    ("pua@example.org", "\ue000deadbeef:0\ue001", "\ue001\ue000"),
]


def subscriber_row(n: int, email: str, first: str, last: str, **attributes: str) -> dict[str, Any]:
    """A subscriber as the send loop hands it to the mail: id, address, names, attributes."""
    return {
        "id": n,
        "email": email,
        "first_name": first,
        "last_name": last,
        "attributes": attributes,
    }
