"""Signed tracking tokens, link rewriting, the open pixel and IP truncation."""

import base64
import hashlib
import hmac
import html
import ipaddress
import string
import struct

import pytest

from newsletter.tracking import (
    PIXEL_GIF,
    PURPOSES,
    Signer,
    TokenData,
    add_pixel,
    html_links,
    rewrite_html,
    rewrite_text,
    truncate_ip,
)

KEY = "a-test-signing-key"
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"


def decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def click_url(link_id: int) -> str:
    return f"https://news.example.com/c/{link_id}?s=1&t=2"


@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_token_round_trip(purpose):
    signer = Signer(KEY)
    token = signer.make(purpose, 17, 4242, 9)
    assert signer.read(token, purpose) == TokenData(purpose, 17, 4242, 9)


def test_link_id_defaults_to_zero():
    signer = Signer(KEY)
    token = signer.make("open", 3, 5)
    assert signer.read(token, "open") == TokenData("open", 3, 5, 0)


def test_a_new_signer_with_the_same_key_reads_the_token():
    token = Signer(KEY).make("view", 8, 13)
    assert Signer(KEY.encode()).read(token, "view") == TokenData("view", 8, 13, 0)


@pytest.mark.parametrize("made_for", sorted(PURPOSES))
def test_token_is_refused_for_every_other_purpose(made_for):
    signer = Signer(KEY)
    token = signer.make(made_for, 1, 2, 3)
    for other in PURPOSES:
        if other != made_for:
            assert signer.read(token, other) is None, other


# These ids give payloads of 17, 18 and 19 bytes, so every base64 tail shape is covered.
TAIL_SHAPES = [(3, 12, 0), (3, 1234, 0), (300, 1234, 0)]


@pytest.mark.parametrize("ids", TAIL_SHAPES)
def test_tampering_with_any_character_is_refused(ids):
    signer = Signer(KEY)
    token = signer.make("unsubscribe", *ids)
    accepted = []
    for index, original in enumerate(token):
        for replacement in URLSAFE_ALPHABET:
            if replacement == original:
                continue
            forged = token[:index] + replacement + token[index + 1 :]
            if signer.read(forged, "unsubscribe") is not None:
                accepted.append(forged)
    assert accepted == [], f"altered spellings of {token} were accepted"


@pytest.mark.parametrize("ids", TAIL_SHAPES)
def test_appended_padding_is_refused(ids):
    signer = Signer(KEY)
    token = signer.make("unsubscribe", *ids)
    assert signer.read(token, "unsubscribe") is not None
    for variant in (token + "=", token + "==", token + "A", "A" + token, token[:-1]):
        assert signer.read(variant, "unsubscribe") is None, variant


def test_tampering_with_any_byte_is_refused():
    signer = Signer(KEY)
    token = signer.make("click", 12, 345, 6)
    raw = decoded(token)
    for index in range(len(raw)):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        assert signer.read(encoded(bytes(flipped)), "click") is None, index


def test_changing_the_ids_without_the_key_is_refused():
    signer = Signer(KEY)
    genuine = decoded(signer.make("unsubscribe", 1, 100))
    other = decoded(signer.make("unsubscribe", 1, 101))
    # The payload of one subscriber's token with the signature of another's.
    spliced = other[:-12] + genuine[-12:]
    assert signer.read(encoded(spliced), "unsubscribe") is None


def test_token_made_with_another_key_is_refused():
    token = Signer("some-other-key").make("unsubscribe", 1, 2)
    assert Signer(KEY).read(token, "unsubscribe") is None


def test_token_carries_ids_only():
    email = "alice.moreno@example.com"
    signer = Signer(KEY)
    token = signer.make("unsubscribe", 42, 7)
    raw = decoded(token)
    assert b"@" not in raw
    assert email not in token and "alice" not in token.lower()
    # Version, purpose, three one-byte varints and a 12-byte signature: no room for an address.
    assert len(raw) == 2 + 3 + 12
    assert len(raw) < len(email)


@pytest.mark.parametrize(
    "garbage",
    ["", "A", "AAAA", "!!!!!!!!!!!!!!!!!!!!!!!!", "é" * 24, "A" * 65, "A" * 1000, "AQEB AgBZ"],
)
def test_garbage_is_refused(garbage):
    assert Signer(KEY).read(garbage, "open") is None


def test_overlong_input_is_refused_even_when_it_starts_with_a_token():
    signer = Signer(KEY)
    token = signer.make("open", 1, 2)
    assert signer.read(token + "A" * (65 - len(token)), "open") is None


@pytest.mark.parametrize("big", [2**31, 2**32 + 1, 2**53 + 1, 2**63 - 1])
def test_large_ids_round_trip(big):
    signer = Signer(KEY)
    token = signer.make("click", big, big - 1, big // 2)
    assert signer.read(token, "click") == TokenData("click", big, big - 1, big // 2)


def _documented_token(key: str, purpose: str, ids: tuple[int, int, int]) -> str:
    """A token as tracking.py's docstring defines it, with the standard library's hmac:
    version, purpose and ids as varints, then HMAC-SHA256 (of the derived key) cut to 12
    bytes, all in URL-safe base64 without padding."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n >= 0x80 else 0))
            n >>= 7
            if not n:
                return bytes(out)

    token_key = hashlib.sha256(b"newsletter-token\0" + key.encode()).digest()
    payload = bytes((1, PURPOSES[purpose])) + b"".join(varint(n) for n in ids)
    signature = hmac.new(token_key, payload, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(payload + signature).rstrip(b"=").decode()


@pytest.mark.parametrize("key", [KEY, "k", "a much longer signing key, " * 5, "ключ"])
@pytest.mark.parametrize(
    "ids", [(0, 0, 0), (1, 2, 0), (127, 128, 129), (5, 123456, 7), (2**40, 2**63 - 1, 300)]
)
def test_tokens_are_the_documented_hmac(key: str, ids: tuple[int, int, int]) -> None:
    """Tokens already sent must keep working: the signing is HMAC-SHA256, however made."""
    signer = Signer(key)
    for purpose in PURPOSES:
        token = signer.make(purpose, *ids)
        assert token == _documented_token(key, purpose, ids)
        assert signer.read(token, purpose) == TokenData(purpose, *ids)


def test_negative_ids_cannot_be_signed():
    with pytest.raises(ValueError):
        Signer(KEY).make("open", -1, 2)


def test_a_key_is_required():
    with pytest.raises(ValueError):
        Signer("")


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.77", 24),
        ("198.51.100.255", 24),
        ("10.1.2.3", 24),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", 48),
        ("2a00:1450:4001:82b::200e", 48),
    ],
)
def test_truncate_ip_keeps_only_the_network(ip, prefix):
    truncated = truncate_ip(ip)
    assert truncated is not None
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    assert ipaddress.ip_address(truncated) == network.network_address
    assert truncated != ip


def test_truncate_ip_examples():
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::"


@pytest.mark.parametrize(
    "garbage", [None, "", "not-an-ip", "256.1.1.1", "1.2.3", "::g", "1.2.3.4/24"]
)
def test_truncate_ip_refuses_garbage(garbage):
    assert truncate_ip(garbage) is None


def test_html_links_dedupes_and_keeps_only_absolute_http_links():
    document = (
        '<p><a href="https://clinic.example.com/a?x=1&amp;y=2">one</a>'
        "<a class='b' href='http://clinic.example.com/b'>two</a>"
        '<a href="mailto:desk@clinic.example.com">mail</a>'
        '<a href="/relative/path">rel</a>'
        '<a href="#top">top</a>'
        '<a href="https://clinic.example.com/a?x=1&y=2">again</a>'
        '<A HREF="https://clinic.example.com/c">caps</A></p>'
    )
    assert html_links(document) == [
        "https://clinic.example.com/a?x=1&y=2",
        "http://clinic.example.com/b",
        "https://clinic.example.com/c",
    ]


def test_html_links_of_a_document_without_links():
    assert html_links("<p>No links here, just https://clinic.example.com in text.</p>") == []


def test_rewrite_html_rewrites_only_registered_links():
    registered = "https://clinic.example.com/post/knees?utm=1&ref=mail"
    document = (
        f'<a href="{html.escape(registered)}">double</a>'
        f"<a class='x' href='{html.escape(registered)}'>single</a>"
        '<a href="https://elsewhere.example.org/">unregistered</a>'
        '<a href="mailto:desk@clinic.example.com">mail</a>'
    )
    result = rewrite_html(document, {registered: 7}, click_url)

    escaped_click = html.escape(click_url(7))
    assert f'href="{escaped_click}">double</a>' in result
    assert f"href='{escaped_click}'>single</a>" in result
    assert '<a href="https://elsewhere.example.org/">unregistered</a>' in result
    assert '<a href="mailto:desk@clinic.example.com">mail</a>' in result
    assert registered not in html.unescape(result)
    assert html_links(result) == [click_url(7), "https://elsewhere.example.org/"]


def test_rewrite_html_uses_each_links_own_id():
    first, second = "https://clinic.example.com/1", "https://clinic.example.com/2"
    document = f'<a href="{first}">1</a> <a href="{second}">2</a>'
    result = rewrite_html(document, {first: 11, second: 22}, click_url)
    assert html_links(result) == [click_url(11), click_url(22)]


def test_rewrite_html_with_nothing_registered_changes_nothing():
    document = '<a href="https://clinic.example.com/">home</a>'
    assert rewrite_html(document, {}, click_url) == document


def test_rewrite_text_rewrites_only_registered_urls():
    registered = "https://clinic.example.com/post/knees"
    text = (
        f"Read more: {registered}\n"
        "Elsewhere: https://elsewhere.example.org/page\n"
        "Write to mailto:desk@clinic.example.com\n"
    )
    result = rewrite_text(text, {registered: 5}, click_url)
    assert f"Read more: {click_url(5)}\n" in result
    assert "Elsewhere: https://elsewhere.example.org/page\n" in result
    assert "mailto:desk@clinic.example.com" in result
    assert registered not in result


def test_add_pixel_goes_just_before_the_closing_body_tag():
    pixel = "https://news.example.com/o/TOKEN.gif?a=1&b=2"
    document = "<html><body><p>Hello</p></BODY></html>"
    result = add_pixel(document, pixel)
    img = result.index("<img")
    assert result.index("<p>Hello</p>") < img < result.index("</BODY>")
    assert f'src="{html.escape(pixel)}"' in result
    assert 'width="1"' in result and 'height="1"' in result
    assert result.endswith("</BODY></html>")


def test_add_pixel_appends_when_there_is_no_body():
    pixel = "https://news.example.com/o/TOKEN.gif"
    document = "<p>A fragment</p>"
    result = add_pixel(document, pixel)
    assert result.startswith(document)
    assert result[len(document) :].startswith("<img")
    assert pixel in result


def test_pixel_gif_is_a_43_byte_one_pixel_gif():
    assert len(PIXEL_GIF) == 43
    assert PIXEL_GIF.startswith(b"GIF89a")
    width, height = struct.unpack("<HH", PIXEL_GIF[6:10])
    assert (width, height) == (1, 1)
    assert PIXEL_GIF.endswith(b";")
