"""Reading subscriber CSV files: encodings, delimiters, the export shapes of common tools.

Pure: bytes in, rows and problems out. Every bad row becomes a problem that
names its file and line; a file that cannot be a subscriber list at all raises
InputError in one line. ``normalize_email`` validates an address.

text.py turns bytes into text (binary refused, encoding and delimiter
guessed); shapes.py knows the tools' header names and status words;
statuses.py reads a row's status and knows which columns, cells and JSON
values say that someone opted out;
cells.py cleans one address, name or tag list; rows.py reads the header into
column roles and yields the rows.
"""

from __future__ import annotations

from newsletter.subscriber_csv.cells import NAME_LIMIT, clean_name, normalize_email
from newsletter.subscriber_csv.rows import ParsedFile, Progress, parse_csv, read_rows
from newsletter.subscriber_csv.shapes import (
    FORMATS,
    MAP_FIELDS,
    NoEmailColumn,
    OptOutColumn,
    detect_format,
    parse_mapping,
)
from newsletter.subscriber_csv.statuses import FILE_STATUSES
from newsletter.subscriber_csv.text import check_sample, decode, sniff_delimiter, sniff_encoding

__all__ = [
    "FILE_STATUSES",
    "FORMATS",
    "MAP_FIELDS",
    "NAME_LIMIT",
    "NoEmailColumn",
    "OptOutColumn",
    "ParsedFile",
    "Progress",
    "check_sample",
    "clean_name",
    "decode",
    "detect_format",
    "normalize_email",
    "parse_csv",
    "parse_mapping",
    "read_rows",
    "sniff_delimiter",
    "sniff_encoding",
]
