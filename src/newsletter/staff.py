"""Staff accounts of the dashboard: roles, password hashing, sign-in sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low
memory profile). A session is a random token in an HttpOnly cookie; the
database keeps only its SHA-256, so a leaked copy of the database signs
nobody in.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from newsletter.errors import InputError
from newsletter.store import Store

ROLES = ("admin", "editor")
# What each role may open: editors run campaigns and subscribers, admins also
# the settings and the staff accounts.
ROLE_RIGHTS = {"editor": {"editor"}, "admin": {"editor", "admin"}}
MIN_PASSWORD = 12
SESSION_LIFETIME = dt.timedelta(hours=12)

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the address is unknown, so a wrong address takes as
    long as a wrong password and sign-in does not reveal which accounts exist."""
    return _hasher.hash(secrets.token_urlsafe(16))


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"--role: {role!r} is not a role; use admin or editor")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(
            f"password: at least {MIN_PASSWORD} characters, please (a passphrase of a few words)"
        )
    return password


def clean_address(email: str) -> str:
    """The address as a staff account stores and shows it: trimmed, the domain lower-cased.

    Only a syntax check and a tidy-up: whether two spellings are one account
    is decided by ``addresses.mailbox_key`` in the store.
    """
    address = email.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in address):
        raise InputError(f"{email!r}: not an email address")
    return local + "@" + domain.lower()


def add_user(store: Store, email: str, role: str, password: str, now: dt.datetime) -> int:
    """Create a staff account; the password is stored only as an argon2id hash."""
    address = clean_address(email)
    check_role(role)
    check_password(password)
    return store.add_staff_user(address, role, _hasher.hash(password), now)


def authenticate(store: Store, email: str, password: str) -> dict[str, Any] | None:
    """The account if the address and password match, else None (same work either way)."""
    user = store.staff_user(email.strip())
    try:
        _hasher.verify(user["password_hash"] if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(store: Store, user_id: int, now: dt.datetime) -> str:
    """Open a session and return the token that goes into the cookie."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    store.add_staff_session(token_hash(token), user_id, csrf, now, now + SESSION_LIFETIME)
    return token


def session(store: Store, token: str | None, now: dt.datetime) -> dict[str, Any] | None:
    """The live session of a cookie token with its user (email, role, csrf), or None."""
    if not token:
        return None
    return store.staff_session(token_hash(token), now)


def end_session(store: Store, token: str | None) -> None:
    if token:
        store.end_staff_session(token_hash(token))


def may(role: str, needed: str) -> bool:
    return needed in ROLE_RIGHTS.get(role, set())
