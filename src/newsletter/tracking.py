"""Signed tracking tokens, link rewriting and IP truncation. Pure: no I/O.

A token carries only ids (never an address) and a truncated HMAC-SHA256 over
its purpose and ids, so a token made for an open pixel cannot be replayed as
an unsubscribe, and nobody without the key can forge or enumerate one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import markupsafe

_VERSION = 1
_SIG_BYTES = 12  # 96 bits: far beyond online guessing, short enough for tidy URLs
_SMALL = [bytes((n,)) for n in range(0x80)]
_URLSAFE = bytes.maketrans(b"+/", b"-_")
PURPOSES = {"open": 1, "click": 2, "unsubscribe": 3, "view": 4, "preferences": 5}
# Double opt-in: "confirm" carries (consent id, subscriber id, issue time) and
# "form" the subscribe form's (0, network tag, issue time), so both can expire.
PURPOSES.update(confirm=20, form=21)


@dataclass(frozen=True)
class TokenData:
    purpose: str
    campaign_id: int
    subscriber_id: int
    link_id: int = 0


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]  # most link ids, and the zero of tokens without one
    if n < 0:
        raise ValueError("token ids must not be negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes) -> list[int]:
    values, current, shift = [], 0, 0
    for byte in data:
        current |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")
        else:
            values.append(current)
            current, shift = 0, 0
    if shift:
        raise ValueError("truncated varint")
    return values


class Signer:
    """Makes and checks tokens with one secret key."""

    def __init__(self, key: str | bytes):
        if not key:
            raise ValueError("a signing key is required")
        raw = key.encode() if isinstance(key, str) else key
        # Derive a key for tokens so the configured secret can serve other uses too.
        self._key = hashlib.sha256(b"newsletter-token\0" + raw).digest()
        # HMAC-SHA256 (RFC 2104) from the two keyed hash states, copied per token: half
        # the cost of copying an hmac object (its Python wrapper), and no one-shot
        # hmac.digest(), which releases the GIL on every token while a sender's other
        # threads wait for the interpreter, each hand-off costing more than the hash.
        block = self._key.ljust(64, b"\0")  # SHA-256's block; the key is 32 bytes
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def _sign(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_SIG_BYTES]

    def make(self, purpose: str, campaign_id: int, subscriber_id: int, link_id: int = 0) -> str:
        payload = (
            bytes((_VERSION, PURPOSES[purpose]))
            + _varint(campaign_id)
            + _varint(subscriber_id)
            + _varint(link_id)
        )
        raw = payload + self._sign(payload)
        # base64.urlsafe_b64encode, without its two Python-level calls.
        return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()

    def read(self, token: str, purpose: str) -> TokenData | None:
        """Return the token's ids if it is genuine and made for ``purpose``, else None."""
        if not token or len(token) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 2 + _SIG_BYTES:
            return None
        # One token, one spelling: refuse padded or re-spelled forms of a genuine token.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            return None
        payload, signature = raw[:-_SIG_BYTES], raw[-_SIG_BYTES:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        if payload[0] != _VERSION or payload[1] != PURPOSES[purpose]:
            return None
        try:
            ids = _read_varints(payload[2:])
        except ValueError:
            return None
        if len(ids) != 3:
            return None
        return TokenData(purpose, ids[0], ids[1], ids[2])


def truncate_ip(ip: str | None) -> str | None:
    """Keep only the network part of an address: /24 for IPv4, /48 for IPv6."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        # Dual-stack servers report IPv4 clients as ::ffff:a.b.c.d.
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def html_links(document: str) -> list[str]:
    """Every http(s) link target in an HTML document, in order, without repeats."""
    seen: dict[str, None] = {}
    for match in _HREF.finditer(document):
        url = html.unescape(match.group(3)).strip()
        if url.lower().startswith(("http://", "https://")):
            seen.setdefault(url, None)
    return list(seen)


class LinkRewriter:
    """Points a campaign's registered links at their click-tracking URLs.

    Built once per campaign: one pattern matching exactly the registered
    URLs (as they appear in HTML attributes and in plain text), so each
    message is rewritten in a single pass. Only registered URLs are touched,
    so the redirect target is always one the campaign contained; mailto and
    the subscriber's own unsubscribe and preference links are never
    registered.
    """

    def __init__(self, link_ids: Mapping[str, int]):
        self.link_ids = dict(link_ids)
        spellings: dict[str, int] = {}
        for url, link_id in self.link_ids.items():
            # As written by Jinja's autoescape, by an HTML serializer, or unescaped.
            for form in (str(markupsafe.escape(url)), html.escape(url), url):
                spellings.setdefault(form, link_id)
        self._html_ids = spellings
        self._text_ids = dict(self.link_ids)
        if self.link_ids:
            forms = sorted(spellings, key=len, reverse=True)
            alternatives = "|".join(re.escape(f) for f in forms)
            # A literal prefix lets the regex engine skip ahead fast; the HTML
            # templates pass through an HTML serializer, which writes href="…".
            self._html = re.compile(rf"""(href=)(["'])({alternatives})\2""")
            urls = "|".join(re.escape(u) for u in sorted(self.link_ids, key=len, reverse=True))
            # Whole URLs only, ending where text goes on (sentence punctuation may
            # follow); the start is checked in rewrite_text, which keeps the
            # pattern's literal prefix and so its speed.
            self._text = re.compile(rf"""({urls})(?=[.,;:!?]*(?:[\s<>"')\]]|$))""")

    @property
    def html_spellings(self) -> Mapping[str, int]:
        """Every form of a registered URL ``rewrite_html`` replaces, with its link id."""
        return MappingProxyType(self._html_ids)

    def rewrite_html(self, document: str, click_url: Callable[[int], str]) -> str:
        if not self.link_ids:
            return document
        urls: dict[int, str] = {}

        def replace(match: re.Match[str]) -> str:
            link_id = self._html_ids[match.group(3)]
            if link_id not in urls:
                urls[link_id] = html.escape(click_url(link_id))
            quote = match.group(2)
            return f"{match.group(1)}{quote}{urls[link_id]}{quote}"

        return self._html.sub(replace, document)

    def rewrite_text(self, text: str, click_url: Callable[[int], str]) -> str:
        if not self.link_ids:
            return text

        def replace(match: re.Match[str]) -> str:
            start = match.start()
            if start and (text[start - 1].isalnum() or text[start - 1] in "/.=?&%-_"):
                return match.group(0)  # part of a longer URL or word
            return click_url(self._text_ids[match.group(1)])

        return self._text.sub(replace, text)


def rewrite_html(
    document: str, link_ids: Mapping[str, int], click_url: Callable[[int], str]
) -> str:
    """Rewrite the registered links of one HTML document (see ``LinkRewriter``)."""
    return LinkRewriter(link_ids).rewrite_html(document, click_url)


def rewrite_text(text: str, link_ids: Mapping[str, int], click_url: Callable[[int], str]) -> str:
    """Rewrite registered URLs in a plain-text part (see ``LinkRewriter``)."""
    return LinkRewriter(link_ids).rewrite_text(text, click_url)


def pixel_tag(pixel_url: str) -> str:
    """The open pixel's <img> tag."""
    return (
        f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )


def add_pixel(document: str, pixel_url: str) -> str:
    """Put a 1x1 open pixel just before </body> (or at the end)."""
    tag = pixel_tag(pixel_url)
    index = document.rfind("</body>")
    if index == -1:
        index = document.lower().rfind("</body>")
    if index == -1:
        return document + tag
    return document[:index] + tag + document[index:]


# The 43-byte transparent GIF that every open-pixel request gets back.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
