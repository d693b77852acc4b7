"""A folder of articles: Markdown with YAML front matter, HTML files, plain text.

An HTML file that is a whole page (it has ``<html>`` or ``<body>``), such as
a page saved from a browser, is read like a page address: its article is
extracted from the menus, sign-up boxes and cookie notices around it, with
its title, date, author, lead image and counters, and the address the page
names for itself (``<link rel=canonical>``, ``og:url``, or the "saved from"
mark browsers write) is the article's URL and the base of its relative links.
An HTML fragment (no ``<html>``, no ``<body>``) is content its author wrote by
hand for the newsletter, so it is taken whole.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from newsletter.errors import SourceError
from newsletter.sources import (
    canonical_url,
    content_hash,
    page,
    plain_text,
    sanitize_html,
    summarize,
    textpage,
)

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>", re.I | re.DOTALL)
_HTML_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.I | re.DOTALL)
_WHOLE_PAGE = re.compile(r"<(html|body)[\s>]", re.I)
# What Internet Explorer, Chrome and Edge write at the top of a page they save.
_SAVED_FROM = re.compile(r"<!--\s*saved from url=\(\d+\)(\S+?)\s*-->", re.I)
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass(frozen=True)
class FolderFile:
    """One article file as read from disk."""

    name: str  # relative to the folder, with forward slashes
    text: str
    # When the file was last written. A page saved from a blog shows dates
    # without a year ("Updated: Dec 20"); they are read as of this moment,
    # which stays the same from poll to poll, so the date does not drift.
    modified: dt.datetime


def fetch(folder: Path) -> tuple[list[FolderFile], list[str]]:
    """Read every article file in the folder; return the files and one line per unreadable one.

    A file that cannot be read (permissions, not UTF-8 nor the charset a
    saved page declares) is reported by its relative name and the others are
    still read.
    """
    if not folder.is_dir():
        raise SourceError(
            f"{folder}: article folder does not exist; create it or fix [sources] folders"
        )
    files, problems = [], []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.suffix.lower() not in SUFFIXES or hidden or not path.is_file():
            continue
        name = relative.as_posix()
        try:
            modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            text = _decode(path.read_bytes(), SUFFIXES[path.suffix.lower()])
        except UnicodeDecodeError as exc:
            problems.append(
                f"{name}: cannot read article: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                f"at offset {exc.start}); save the file as UTF-8"
            )
            continue
        except OSError as exc:
            problems.append(f"{name}: cannot read article ({exc.strerror or exc})")
            continue
        files.append(FolderFile(name, text, modified))
    return files, problems


def _decode(data: bytes, kind: str) -> str:
    """A file's text: UTF-8, or for a saved page the charset its own ``<meta>`` names.

    Browsers save a page in the encoding it was served in (windows-1252,
    Shift_JIS, ...) and the page says which; any other file must be UTF-8.
    Raises UnicodeDecodeError (of the UTF-8 reading) when neither fits.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        charset = page.declared_charset(data) if kind == "html" else None
        if charset:
            try:
                return data.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise


def _date(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        raise SourceError(f"{where}: date {value!r} is not YYYY-MM-DD") from None


def _http_url(value: Any, base: str | None, where: str, hint: str = "") -> str | None:
    """A front matter address as an absolute http(s) URL; SourceError if it is not one."""
    if value is None or value == "":
        return None
    url = canonical_url(str(value), base)
    if url is None:
        raise SourceError(
            f"{where} {value!r} is not an http(s) address{hint}; fix it or remove the line"
        )
    return url


def parse(name: str, text: str, modified: dt.datetime | None = None) -> dict[str, Any]:
    """Turn one file's text into an article dict. Pure.

    ``modified`` (the file's modification time) resolves dates a saved blog
    page gives without a year ("Updated: Feb 4") or relative to the day it was
    saved ("3 days ago"); without it such a date is an error.

    Front matter ``url`` must be an http(s) address: it is the article's link
    and identity, relative links and images in the body are made absolute
    against it, and so is ``image``.
    """
    kind = SUFFIXES[Path(name).suffix.lower()]
    if kind == "html" and _WHOLE_PAGE.search(text):
        return _saved_page(name, text)
    meta: dict[str, Any] = {}
    body = text
    if kind == "markdown":
        match = _FRONT_MATTER.match(text)
        if match:
            try:
                loaded = yaml.safe_load(match.group(1))
            except (yaml.YAMLError, ValueError) as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f":{mark.line + 2}" if mark else ""
                # PyYAML's message spans several lines; its "problem" is the reason alone.
                reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise SourceError(f"{name}{line}: invalid YAML front matter ({reason})") from None
            if not isinstance(loaded, dict):
                raise SourceError(f"{name}:2: front matter must be key: value pairs")
            meta = loaded
            body = text[match.end() :]
        body_html = _markdown.render(body)
    elif kind == "html":
        match = _HTML_BODY.search(text)
        body_html = match.group(1) if match else text
        if "title" not in meta:
            title_match = _HTML_TITLE.search(text)
            if title_match:
                meta["title"] = plain_text(title_match.group(1) or title_match.group(2))
    else:
        page = textpage.parse(name, text, modified)
        for field_name in ("title", "date", "updated", "views", "comments", "likes"):
            if page.get(field_name) is not None:
                meta.setdefault(field_name, page[field_name])
        body_html = page["body_html"]
    url = _http_url(meta.get("url"), None, f"{name}: url")
    image = _http_url(
        meta.get("image"),
        url,
        f"{name}: image",
        "" if url else " (a relative image needs the article's `url:` in the front matter)",
    )
    body_html = sanitize_html(body_html, url)
    if kind == "markdown" and body_html.lstrip().startswith("<h1>") and "title" not in meta:
        meta["title"] = plain_text(body_html.split("</h1>", 1)[0])
    title = str(meta.get("title") or "").strip()
    if not title:
        raise SourceError(f"{name}: article has no title; add `title:` to its front matter")
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    elif not isinstance(tags, list):
        tags = [tags]
    article = {
        # Identity: an explicit guid, else the canonical URL, else the file's path.
        "key": str(meta.get("guid") or url or name),
        "url": url,
        "title": title,
        "author": meta.get("author"),
        "published": _date(meta.get("date"), f"{name}: date"),
        "updated": _date(meta.get("updated"), f"{name}: updated"),
        "summary": str(meta.get("summary") or summarize(plain_text(body_html))),
        "body_html": body_html,
        "image": image,
        "image_alt": meta.get("image_alt"),
        "tags": [str(t) for t in tags],
        "views": meta.get("views"),
        "comments": meta.get("comments"),
        "likes": meta.get("likes"),
    }
    article["content_hash"] = content_hash(article)
    return article


# "Save page, complete" keeps a page's images in a folder beside it
# ("Title_files/photo.jpg"): on disk only, so no reader could load them.
_LOCAL_FILE = re.compile(r"^(\./)?[^/:?#]*_files/", re.I)


def _drop_local_files(tree: Any) -> int:
    """Remove images and unwrap links that point into a saved page's own files folder."""
    found = 0
    for element in list(tree.iter("img", "a")):
        attribute = "src" if element.tag == "img" else "href"
        if _LOCAL_FILE.match((element.get(attribute) or "").strip()):
            found += 1
            if element.tag == "img":
                element.drop_tree()
            else:
                element.drop_tag()
    return found


def _saved_page(name: str, text: str) -> dict[str, Any]:
    """A whole HTML page in the folder, read as the page at its own address would be."""
    tree = page.load(text, name)
    saved_from = _SAVED_FROM.search(text[:2048])
    url = page.page_address(tree) or canonical_url(saved_from.group(1) if saved_from else None)
    local = _drop_local_files(tree)
    # With local files gone from the tree, the fallbacks read the tree, not the text.
    article = page.parse_article(tree, url, html=None if local else text, where=name)
    if article["url"] is None:
        article["body_html"] = page.drop_relative_links(article["body_html"])
    # Identity: the page's own address, else the file's path.
    article["key"] = article["url"] or name
    article["content_hash"] = content_hash(article)
    return article
