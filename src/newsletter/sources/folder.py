"""A folder of articles: Markdown with YAML front matter, HTML files, plain text."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from newsletter.errors import SourceError
from newsletter.sources import content_hash, plain_text, sanitize_html, summarize

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
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")


def fetch(folder: Path) -> list[tuple[str, str]]:
    """Read every article file in the folder: (relative name, text)."""
    if not folder.is_dir():
        raise SourceError(
            f"{folder}: article folder does not exist; create it or fix [sources] folders"
        )
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.suffix.lower() in SUFFIXES and path.is_file() and not hidden:
            try:
                files.append(
                    (path.relative_to(folder).as_posix(), path.read_text(encoding="utf-8-sig"))
                )
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"{path}: cannot read article ({exc})") from None
    return files


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


def parse(name: str, text: str) -> dict[str, Any]:
    """Turn one file's text into an article dict. Pure."""
    kind = SUFFIXES[Path(name).suffix.lower()]
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
                raise SourceError(f"{name}{line}: invalid YAML front matter ({exc})") from None
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
        lines = [line.strip() for line in text.splitlines()]
        paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
        if paragraphs:
            meta.setdefault("title", paragraphs[0].splitlines()[0])
            paragraphs = paragraphs[1:]
        body_html = "".join(f"<p>{_escape(p)}</p>" for p in paragraphs)
    body_html = sanitize_html(body_html)
    if kind == "markdown" and body_html.lstrip().startswith("<h1>") and "title" not in meta:
        meta["title"] = plain_text(body_html.split("</h1>", 1)[0])
    title = str(meta.get("title") or "").strip()
    if not title:
        raise SourceError(f"{name}: article has no title; add `title:` to its front matter")
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    article = {
        # Identity: an explicit guid, else the canonical URL, else the file's path.
        "key": str(meta.get("guid") or meta.get("url") or name),
        "url": meta.get("url"),
        "title": title,
        "author": meta.get("author"),
        "published": _date(meta.get("date"), f"{name}: date"),
        "updated": _date(meta.get("updated"), f"{name}: updated"),
        "summary": str(meta.get("summary") or summarize(plain_text(body_html))),
        "body_html": body_html,
        "image": meta.get("image"),
        "image_alt": meta.get("image_alt"),
        "tags": [str(t) for t in tags],
        "views": meta.get("views"),
        "comments": meta.get("comments"),
    }
    article["content_hash"] = content_hash(article)
    return article


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")
