"""A subscriber file's bytes as text: binary refused, the encoding and delimiter guessed. Pure."""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterable

from newsletter.errors import InputError

_MAGIC = (
    (b"PK\x03\x04", "a zip archive or Excel workbook"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _refuse_known_binary(head: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputError(
                f"{name}: binary content ({what}), not CSV text; save or export the list "
                f"as CSV (UTF-8) and import that file"
            )


def _marked_encoding(data: bytes) -> str | None:
    """The encoding a BOM names, or UTF-16 seen in the zero bytes of the start, or None."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return codec
    if len(data) >= 4:
        head = data[:512]
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    return None


def check_sample(sample: str, name: str) -> None:
    """Refuse text whose start is full of control characters (a binary file read as text)."""
    controls = len(_CONTROL.findall(sample))
    if "\0" in sample or (sample and controls > max(2, len(sample) // 100)):
        raise InputError(
            f"{name}: binary content, not CSV text (control characters); "
            f"export the list as CSV (UTF-8)"
        )


def sniff_encoding(chunks: Iterable[bytes], name: str) -> tuple[str, int]:
    """The encoding ``decode`` would choose for these bytes, and how many lines they hold.

    For a file read a chunk at a time (the first chunk at least 512 bytes):
    memory does not grow with the file. Refuses binary content as ``decode`` does.
    """
    chunks = iter(chunks)
    head = next(chunks, b"")
    _refuse_known_binary(head, name)
    marked = _marked_encoding(head)
    decoders = {
        codec: codecs.getincrementaldecoder(codec)()
        for codec in ([marked] if marked else ["utf-8", "cp1252"])
    }
    lines = 0
    for chunk in itertools.chain([head], chunks, [None]):
        final = chunk is None
        data = b"" if chunk is None else chunk
        lines += data.count(b"\n")
        if marked is None and b"\0" in data:
            raise InputError(
                f"{name}: binary content, not CSV text (it contains NUL bytes); "
                f"export the list as CSV (UTF-8)"
            )
        for codec, decoder in list(decoders.items()):
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError:
                del decoders[codec]
                continue
            if "\0" in text:
                raise InputError(
                    f"{name}: binary content, not CSV text (control characters); "
                    f"export the list as CSV (UTF-8)"
                )
        if marked and not decoders:
            raise InputError(
                f"{name}: binary content, not CSV text ({marked} that does not decode); "
                f"export the list as CSV (UTF-8)"
            )
    # UTF-8 if it decodes, else Windows-1252, else Latin-1 (see ``decode``).
    return next(iter(decoders), "latin-1"), lines + 1


def decode(data: bytes, name: str) -> str:
    """Turn a file's bytes into text: BOMs, UTF-16 without one, UTF-8, else Windows-1252.

    Refuses binary content (spreadsheets, archives, images, random bytes)
    with one line naming the file.
    """
    _refuse_known_binary(data, name)
    # Excel's "Unicode text" without a BOM: every other byte is zero.
    encoding = _marked_encoding(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise InputError(
                f"{name}: binary content, not CSV text ({encoding} that does not decode); "
                f"export the list as CSV (UTF-8)"
            ) from None
    elif b"\0" in data:
        raise InputError(
            f"{name}: binary content, not CSV text (it contains NUL bytes); "
            f"export the list as CSV (UTF-8)"
        )
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Windows-1252 is what spreadsheets write when they do not write
            # UTF-8; the five bytes it leaves undefined fall back to Latin-1.
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    if "\0" in text:
        check_sample("\0", name)
    check_sample(text[:65536], name)
    return text


def sniff_delimiter(text: str) -> tuple[str, bool]:
    """Guess the delimiter from the first lines; True if an Excel ``sep=`` line names it."""
    first = text[:8].strip().lower()
    if first.startswith("sep=") and len(first) >= 5 and first[4] in ",;\t|":
        return first[4], True
    lines = [line for line in text[:65536].splitlines()[:30] if line.strip()][:20]
    best, best_score = ",", (0.0, 1)
    for delimiter in (",", ";", "\t", "|"):
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        rest = counts[1:]
        consistent = sum(c == counts[0] for c in rest) / len(rest) if rest else 1.0
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best, False
