"""SendGrid's webhook below the web: its key, its signature, its event batch."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from newsletter import delivery_key
from newsletter.feedback import common, sendgrid


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_text(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, pem: bool = False) -> str:
    public = key.public_key()
    if pem:
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def test_the_key_loads_as_sendgrid_shows_it_or_as_pem_and_nothing_else(private_key) -> None:
    shown = sendgrid.load_key(" " + public_text(private_key) + "\n")
    pem = sendgrid.load_key(public_text(private_key, pem=True))
    assert (
        shown.public_numbers() == pem.public_numbers() == private_key.public_key().public_numbers()
    )
    with pytest.raises(ValueError, match="not a public key"):
        sendgrid.load_key("not base64 at all!")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="not an elliptic-curve public key"):
        sendgrid.load_key(public_text(rsa_key))


def test_the_signature_covers_timestamp_and_body(private_key) -> None:
    key = private_key.public_key()
    body, stamp = b'[{"event":"delivered"}]', "1700000000"
    signature = sign(private_key, stamp, body)
    assert sendgrid.signature_ok(key, signature, stamp, body)
    assert not sendgrid.signature_ok(key, signature, "1700000001", body)
    assert not sendgrid.signature_ok(key, signature, stamp, body + b" ")
    assert not sendgrid.signature_ok(key, "not base64!", stamp, body)
    other = ec.generate_private_key(ec.SECP256R1())
    assert not sendgrid.signature_ok(key, sign(other, stamp, body), stamp, body)


def test_a_signed_timestamp_is_fresh_for_five_minutes_either_way() -> None:
    now = dt.datetime.now(dt.UTC)
    stamp = now.timestamp()
    assert common.fresh(str(int(stamp)), now)
    assert common.fresh(str(stamp - common.MAX_AGE + 1), now)
    assert common.fresh(str(stamp + common.MAX_AGE - 1), now)
    for stale in (stamp - common.MAX_AGE - 1, stamp + common.MAX_AGE + 1):
        assert not common.fresh(str(stale), now)
    for nonsense in ("", "soon", "nan", "inf"):
        assert not common.fresh(nonsense, now)


def test_a_batch_becomes_events_with_our_key_and_sendgrids_reasons() -> None:
    key = delivery_key.build(3, 41)
    batch = [
        {
            "event": "delivered",
            "sg_event_id": "ev-1",
            "sg_message_id": "abc123.filter0001.4242",
            "timestamp": 1700000000,
            "email": "ann@example.com",
            delivery_key.FIELD: key,
            "response": "250 OK",
        },
        {"event": "bounce", "type": "blocked", "sg_event_id": "ev-2", "reason": "try later"},
        {"event": "bounce", "type": "bounce", "sg_event_id": "ev-3"},
        {"event": "dropped", "sg_event_id": "ev-4", "reason": "Unsubscribed Address"},
        {"event": "click", "sg_event_id": "ev-5", "url": "https://example.com/a"},
        {"event": "group_resubscribe"},
    ]
    events = sendgrid.events(batch)
    assert [e["kind"] for e in events] == [
        "delivered",
        "soft_bounce",
        "bounce",
        "unsubscribe",
        "provider_click",
        "other",
    ]
    first = events[0]
    assert first["key"] == key and delivery_key.parse(first["key"]) == (3, 41)
    assert first["provider_id"] == "abc123"
    assert first["at"] == dt.datetime.fromtimestamp(1700000000, dt.UTC).isoformat()
    assert (first["email"], first["detail"]) == ("ann@example.com", "250 OK")
    assert json.loads(first["raw"]) == batch[0]
    assert events[4]["detail"] == "https://example.com/a"
    # No id from SendGrid: the event's own content names it, the same on a retry.
    assert events[5]["event_id"] == sendgrid.events([batch[5]])[0]["event_id"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"event": "delivered"}, "expected a JSON array"),
        (["delivered"], "event 0: expected a JSON object"),
        ([{"event": "open"}, {"email": "a@example.com"}], "event 1: no event name"),
    ],
)
def test_what_sendgrid_never_sends_is_refused_by_name(payload, message) -> None:
    with pytest.raises(ValueError, match=message):
        sendgrid.events(payload)
