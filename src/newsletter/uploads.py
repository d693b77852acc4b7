"""Images staff upload for their campaigns: which bytes are taken, and the name they get.

An upload is taken only when its first bytes are those of a PNG, JPEG, GIF or
WebP image: the file's name and the browser's Content-Type say nothing (a
page renamed .png is refused). It is named by the SHA-256 of its bytes and
the type its bytes show, so no part of the name comes from the person, the
same image uploaded twice is stored once, and its URL can be cached forever.
SVG is never taken: it can hold script. Pure: the web edge reads and writes
the files.
"""

from __future__ import annotations

import hashlib
import re

from newsletter.errors import InputError

# Larger images make heavy emails; mail clients clip messages past ~100 KB of HTML anyway.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FOLDER = "uploads"
# (extension, Content-Type, how its bytes start); WebP is RIFF....WEBP.
_KINDS = (
    ("png", "image/png", re.compile(rb"\A\x89PNG\r\n\x1a\n", re.DOTALL)),
    ("jpg", "image/jpeg", re.compile(rb"\A\xff\xd8\xff", re.DOTALL)),
    ("gif", "image/gif", re.compile(rb"\AGIF8[79]a", re.DOTALL)),
    ("webp", "image/webp", re.compile(rb"\ARIFF....WEBP", re.DOTALL)),
)
CONTENT_TYPES = {ext: content_type for ext, content_type, _ in _KINDS}
# The only names the web server serves from the folder: a hash and a known type.
STORED_NAME = re.compile(r"\A[0-9a-f]{64}\.(png|jpg|gif|webp)\Z")


def stored_name(data: bytes, label: str = "the file") -> str:
    """The name an uploaded image is kept under; InputError for anything not taken.

    ``label`` names the upload in the message (its file name as sent).
    """
    if not data:
        raise InputError(f"{label}: the file is empty; choose a PNG, JPEG, GIF or WebP image")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(
            f"{label}: {len(data) / 1024 / 1024:.1f} MB is too large; an image may be at "
            f"most {MAX_IMAGE_BYTES // 1024 // 1024} MB (make it smaller and upload it again)"
        )
    for ext, _, magic in _KINDS:
        if magic.match(data):
            return f"{hashlib.sha256(data).hexdigest()}.{ext}"
    raise InputError(
        f"{label}: not a PNG, JPEG, GIF or WebP image (its contents say so, whatever its "
        f"name); choose an image in one of those formats"
    )


def content_type(name: str) -> str | None:
    """The Content-Type of a stored image by its name; None for a name never stored."""
    found = STORED_NAME.match(name)
    return CONTENT_TYPES[found.group(1)] if found else None


def public_url(base_url: str, name: str) -> str:
    """The address an email shows a stored image at: absolute, on ``[site] base_url``."""
    return f"{base_url.rstrip('/')}/{FOLDER}/{name}"
