"""Images staff upload for their campaigns: which bytes are taken, and the name they get.

An upload is taken only when its bytes are built as a PNG, JPEG, GIF or
WebP image: the file's name and the browser's Content-Type say nothing (a
page renamed .png is refused, and so is a page behind a PNG's first bytes).
What a camera writes into a photo besides the picture (Exif, with the place
it was taken; PNG text chunks) is taken out before it is kept: the image is
served to every reader. It is named by the SHA-256 of the bytes kept and the
type its bytes show, so no part of the name comes from the person, the same
image uploaded twice is stored once, and its URL can be cached forever. SVG
is never taken: it can hold script. Pure: the web edge reads and writes the
files.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable

from newsletter.errors import InputError

# Larger images make heavy emails; mail clients clip messages past ~100 KB of HTML anyway.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FOLDER = "uploads"
# The most the uploads folder may hold: uploads are kept for good (sent emails show
# them), so a full disk is not left to whoever holds a staff account.
MAX_FOLDER_BYTES = 500 * 1024 * 1024


def _png(data: bytes) -> bytes | None:
    """A PNG walked chunk by chunk, IHDR first, to IEND; its text and Exif chunks left out."""
    at, kept = 8, [data[:8]]
    first = True
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data) or not kind.isalpha() or (first and kind != b"IHDR"):
            return None
        first = False
        if kind not in (b"eXIf", b"tEXt", b"iTXt", b"zTXt"):
            kept.append(data[at:end])
        at = end
        if kind == b"IEND":
            return b"".join(kept)  # whatever follows the image is not kept either
    return None


def _jpeg(data: bytes) -> bytes | None:
    """A JPEG walked segment by segment up to its image data; APP1 (Exif, XMP) left out."""
    at, kept = 2, [data[:2]]
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            kept.append(data[at : at + 2])
            at += 2
            continue
        if marker in (0x00, 0xD8) or at + 4 > len(data):
            return None
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        end = at + 2 + length
        if length < 2 or end > len(data):
            return None
        if marker == 0xDA:  # start of scan: the picture itself, kept as it is
            return b"".join(kept) + data[at:]
        if marker != 0xE1:
            kept.append(data[at:end])
        at = end
    return None


def _gif(data: bytes) -> bytes | None:
    """A GIF with its logical screen descriptor: a width and a height."""
    if len(data) < 13:
        return None
    width, height = struct.unpack("<HH", data[6:10])
    return data if width and height else None


def _webp(data: bytes) -> bytes | None:
    """A RIFF file of WEBP whose first chunk is an image (VP8, VP8L or VP8X)."""
    (size,) = struct.unpack("<I", data[4:8])
    if data[12:16] not in (b"VP8 ", b"VP8L", b"VP8X") or not 4 < size <= len(data) - 8:
        return None
    return data


# (extension, Content-Type, how its bytes start, its structure checked and the
# bytes kept, or None); WebP is RIFF....WEBP.
_KINDS: tuple[tuple[str, str, re.Pattern[bytes], Callable[[bytes], bytes | None]], ...] = (
    ("png", "image/png", re.compile(rb"\A\x89PNG\r\n\x1a\n", re.DOTALL), _png),
    ("jpg", "image/jpeg", re.compile(rb"\A\xff\xd8\xff", re.DOTALL), _jpeg),
    ("gif", "image/gif", re.compile(rb"\AGIF8[79]a", re.DOTALL), _gif),
    ("webp", "image/webp", re.compile(rb"\ARIFF....WEBP", re.DOTALL), _webp),
)
CONTENT_TYPES = {ext: content_type for ext, content_type, _, _ in _KINDS}
# The only names the web server serves from the folder: a hash and a known type.
STORED_NAME = re.compile(r"\A[0-9a-f]{64}\.(png|jpg|gif|webp)\Z")


def stored_name(data: bytes, label: str = "the file") -> str:
    """The name an uploaded image is kept under; InputError for anything not taken."""
    return taken(data, label)[0]


def taken(data: bytes, label: str = "the file") -> tuple[str, bytes]:
    """The name an uploaded image is kept under and the bytes kept (no Exif, no text
    chunks); InputError for anything not taken.

    ``label`` names the upload in the message (its file name as sent).
    """
    if not data:
        raise InputError(f"{label}: the file is empty; choose a PNG, JPEG, GIF or WebP image")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(
            f"{label}: {len(data) / 1024 / 1024:.1f} MB is too large; an image may be at "
            f"most {MAX_IMAGE_BYTES // 1024 // 1024} MB (make it smaller and upload it again)"
        )
    for ext, _, magic, walk in _KINDS:
        if magic.match(data):
            kept = walk(data)
            if kept is None:
                break  # its first bytes say image; the rest does not
            return f"{hashlib.sha256(kept).hexdigest()}.{ext}", kept
    raise InputError(
        f"{label}: not a PNG, JPEG, GIF or WebP image (its contents say so, whatever its "
        f"name); choose an image in one of those formats"
    )


def check_room(used: int, adding: int, limit: int = MAX_FOLDER_BYTES) -> None:
    """Refuse an image the uploads folder (``used`` bytes now) has no room left for."""
    if used + adding > limit:
        raise InputError(
            f"The uploads folder holds {used / 1024 / 1024:.0f} MB of images, and may hold "
            f"at most {limit // 1024 // 1024} MB; reuse an image uploaded before, or link "
            f"to one by its address"
        )


def content_type(name: str) -> str | None:
    """The Content-Type of a stored image by its name; None for a name never stored."""
    found = STORED_NAME.match(name)
    return CONTENT_TYPES[found.group(1)] if found else None


def public_url(base_url: str, name: str) -> str:
    """The address an email shows a stored image at: absolute, on ``[site] base_url``."""
    return f"{base_url.rstrip('/')}/{FOLDER}/{name}"
