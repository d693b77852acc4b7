"""Images staff upload for their campaigns: which bytes are taken, and the name they get.

An upload is taken only when its bytes are built as a PNG, JPEG, GIF or
WebP image: the file's name and the browser's Content-Type say nothing (a
page renamed .png is refused, and so is a page behind a PNG's first bytes).
What a camera writes into a photo besides the picture (Exif, with the place
it was taken; XMP; PNG text chunks; GIF comments) is taken out before it is
kept: the image is served to every reader. It is named by the SHA-256 of the bytes kept and the
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


# GIF application extensions kept: the ones that say how an animation loops. Any
# other (XMP with its camera and place data, ICC profiles, a program's own) goes.
_GIF_KEPT_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _gif_blocks(data: bytes, at: int) -> int | None:
    """Where a run of GIF data sub-blocks starting at ``at`` ends (past its 0 terminator)."""
    while at < len(data):
        size = data[at]
        at += 1 + size
        if size == 0:
            return at
    return None


def _gif(data: bytes) -> bytes | None:
    """A GIF walked block by block to its trailer; comments and application extensions
    other than an animation's loop count (XMP) left out."""
    if len(data) < 13:
        return None
    width, height, packed = struct.unpack("<HHB", data[6:11])
    if not width or not height:
        return None
    at = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)  # global colour table
    kept = [data[:at]]
    while at < len(data):
        kind = data[at]
        if kind == 0x3B:  # trailer: whatever follows the image is not kept
            kept.append(b"\x3b")
            return b"".join(kept)
        if kind == 0x2C:  # an image: descriptor, local colour table, LZW code size, data
            if at + 10 > len(data):
                return None
            local = data[at + 9]
            start = at + 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            end = _gif_blocks(data, start + 1)
        elif kind == 0x21 and at + 2 < len(data):  # an extension: label, then sub-blocks
            label, start = data[at + 1], at + 2
            end = _gif_blocks(data, start)
            if (
                end is not None
                and (
                    label == 0xFE  # a comment
                    or (label == 0xFF and data[start + 1 : start + 12] not in _GIF_KEPT_APPS)
                )
            ):
                at = end
                continue
        else:
            return None
        if end is None or end > len(data):
            return None
        kept.append(data[at:end])
        at = end
    return None


# WebP chunks left out: the Exif (with the place a photo was taken) and XMP metadata.
_WEBP_METADATA = (b"EXIF", b"XMP ")
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def _webp(data: bytes) -> bytes | None:
    """A RIFF file of WEBP whose first chunk is an image (VP8, VP8L or VP8X), walked chunk
    by chunk; its EXIF and XMP chunks left out, and the VP8X flags that announce them."""
    (size,) = struct.unpack("<I", data[4:8])
    if data[12:16] not in (b"VP8 ", b"VP8L", b"VP8X") or not 4 < size <= len(data) - 8:
        return None
    end_of_file = 8 + size
    at, kept = 12, []
    while at < end_of_file:
        if at + 8 > end_of_file:
            return None
        kind = data[at : at + 4]
        (length,) = struct.unpack("<I", data[at + 4 : at + 8])
        end = at + 8 + length + (length & 1)  # chunks are padded to an even size
        if not all(32 <= c < 127 for c in kind) or end > end_of_file:
            return None
        chunk = data[at:end]
        if kind == b"VP8X" and length >= 10:
            flags = chunk[8] & ~(_VP8X_EXIF | _VP8X_XMP)
            chunk = chunk[:8] + bytes([flags]) + chunk[9:]
        if kind not in _WEBP_METADATA:
            kept.append(chunk)
        at = end
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body  # what follows the RIFF is not kept


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
    """The name an uploaded image is kept under and the bytes kept (no Exif, XMP, text
    chunks or comments); InputError for anything not taken.

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
