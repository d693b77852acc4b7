"""Who is who among email addresses: one rule for every place that asks.

Pure: no I/O. The store keys subscribers, the suppression list and staff
accounts by ``mailbox_key``; imports and forms compare with it, so no two of
them can disagree about whether two spellings are one mailbox. Cleaning an
address up for storage or display is a different question, answered where the
address comes in (``subscriber_csv.normalize_email``, ``staff.clean_address``).
``erased_key`` is what stands for an address once its person is erased.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata

import idna


def mailbox_key(email: str) -> str:
    """The identity of a mailbox: one rule for every place that asks who is who.

    The subscribers' and staff accounts' ``email_key`` columns (unique), the
    suppression list, the erased-address hash, imports, the form,
    ``subscribers add``, sign-in and every lookup all use it, so no two of
    them can disagree. The local part is lower-cased with Unicode's rules
    (``JÜRGEN`` is ``jürgen``), not case-folded: case-folding also joins
    different strings (``straße`` and ``strasse``), which a mail server may
    deliver to two different people, and merging two people is worse than
    keeping one twice. The domain is in lower-case A-label (IDNA) form, so
    ``bücher.example`` and ``xn--bcher-kva.example`` are one. The spelling
    first given is kept apart for sending; this key is only compared.
    """
    local, at, domain = unicodedata.normalize("NFC", email).rpartition("@")
    if not at:
        return local.lower() if local else domain.lower()
    return f"{local.lower()}@{_domain_key(domain)}"


@functools.lru_cache(maxsize=4096)
def _domain_key(domain: str) -> str:
    """A domain's lower-case A-label form (a domain literal or a bad name: lower-cased)."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain.lower()


# An erased person's suppression entry: the hash of the address, never the address.
ERASED_PREFIX = "sha256:"


def erased_key(email: str) -> str:
    """The suppression key that stands for an address after its person was erased."""
    return ERASED_PREFIX + hashlib.sha256(mailbox_key(email).encode("utf-8")).hexdigest()


def suppression_keys(email: str) -> list[str]:
    """The suppression ``email_key`` values that stand for ``email``: its own, its erased hash.

    Before m011 the hash was of ``email.lower()``, which differs for an
    international domain: that one is looked for too, so a person erased
    earlier stays suppressed.
    """
    keys = [mailbox_key(email), erased_key(email)]
    legacy = ERASED_PREFIX + hashlib.sha256(email.lower().encode("utf-8")).hexdigest()
    return keys if legacy in keys else [*keys, legacy]
