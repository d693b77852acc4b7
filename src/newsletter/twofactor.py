"""Two-factor sign-in for staff: TOTP codes (RFC 6238) from an authenticator app, recovery codes.

Pure functions; the dashboard and the store do the I/O. The TOTP secret is
stored encrypted with a key derived from the workspace's secret key, so a
copy of the database alone does not give away the second factor; each code
works once (the time step of the last one used is stored). Recovery codes
are random and high-entropy, so a SHA-256 of each is all that is kept.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken

RECOVERY_CODES = 10
ISSUER = "newsletter"


def new_secret() -> str:
    return pyotp.random_base32()


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"newsletter staff totp\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def unseal(sealed: str, secret_key: str) -> str | None:
    """The secret, or None if the secret key changed since it was sealed."""
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer or ISSUER)


def qr_data_uri(uri: str) -> str:
    """The otpauth URI as a QR code, an SVG in a data: URI (the dashboard allows img data:)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=4)


def code_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code this is (this one or either neighbour), or None."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for candidate in (step, step - 1, step + 1):  # a clock a little fast or slow
        expected = totp.generate_otp(candidate)
        if hmac.compare_digest(expected, code):
            return candidate
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes of 10 characters from an alphabet without look-alikes, shown once."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_hash(code: str) -> str:
    normal = "".join(code.lower().split()).replace("-", "")
    return hashlib.sha256(normal.encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    normal = "".join(code.split()).replace("-", "")
    return len(normal) == 10 and not normal.isdigit()
