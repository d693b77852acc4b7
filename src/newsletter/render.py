"""Render a campaign for one subscriber: Jinja2 templates to (subject, html, text).

Templates are staff-authored, so they run in Jinja's immutable sandbox with
autoescape on for HTML and receive only plain data (dicts, lists, strings).
The CSS of an HTML template is inlined into the template itself when the set
is loaded, so it is done once per campaign, never once per subscriber.
Apart from loading template files when a ``TemplateSet`` is made, nothing here
does I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from newsletter.errors import TemplateError
from newsletter.rows import Article, ArticleContext, Subscriber
from newsletter.splice import PERSONAL, NotSpliceable, Splicer
from newsletter.textify import html_to_text, wrap_lines

PARTS = ("subject.txt", "body.html", "body.txt")
DEFAULTS_DIR = Path(__file__).parent / "defaults"
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.DOTALL)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
# Private-use characters never appear in templates, so they make safe markers.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(
    rf"<!--{_OPEN}(\d+){_CLOSE}-->|&lt;!--{_OPEN}(\d+){_CLOSE}--&gt;|{_OPEN}(\d+){_CLOSE}(?:=\"\")?"
)


def _html_states(source: str, spans: list[tuple[int, int]]) -> list[str]:
    """For each Jinja span, say whether it sits in text, inside a tag, or in a comment.

    A deliberately small HTML scanner: it only needs to know where a marker
    may be an HTML comment (between elements, where text inside a table would
    be moved by the parser) and where it must be plain text (in a tag, an
    attribute, a comment, or raw text such as <style>).
    """
    states = []
    state, quote, raw_end = "text", "", ""
    i, span_index = 0, 0
    lowered = source.lower()
    while span_index < len(spans):
        start, end = spans[span_index]
        if i >= start:
            states.append(state)
            i = end
            span_index += 1
            continue
        ch = source[i]
        if state == "text":
            if source.startswith("<!--", i):
                state, i = "comment", i + 4
                continue
            if (
                ch == "<"
                and i + 1 < len(source)
                and (source[i + 1].isalpha() or source[i + 1] in "/!")
            ):
                name = re.match(r"<\s*([a-zA-Z0-9]+)", source[i:])
                if name and name.group(1).lower() in ("style", "script", "title", "textarea"):
                    raw_end = f"</{name.group(1).lower()}"
                state = "tag"
        elif state == "tag":
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == ">":
                state = "raw" if raw_end else "text"
        elif state == "comment":
            if source.startswith("-->", i):
                state, i = "text", i + 3
                continue
        elif state == "raw" and lowered.startswith(raw_end, i):
            raw_end = ""
            state = "tag"
        i += 1
    return states


def inline_template(source: str) -> str:
    """Inline a template's <style> rules into its own markup, keeping the Jinja code intact.

    Jinja constructs are swapped for markers the HTML parser leaves alone,
    the document is inlined, and the constructs are put back. Selectors are
    matched against the template's markup, so classes must be written
    literally, not computed by an expression.
    """
    matches = list(_JINJA.finditer(source))
    if not matches:
        return _inliner.inline(source)
    states = _html_states(source, [m.span() for m in matches])
    pieces, last = [], 0
    for n, (match, state) in enumerate(zip(matches, states, strict=True)):
        pieces.append(source[last : match.start()])
        marker = f"{_OPEN}{n}{_CLOSE}"
        pieces.append(f"<!--{marker}-->" if state == "text" else marker)
        last = match.end()
    pieces.append(source[last:])
    inlined = _inliner.inline("".join(pieces))
    originals = [m.group(0) for m in matches]

    seen: list[int] = []

    def restore(found: re.Match[str]) -> str:
        seen.append(int(found.group(1) or found.group(2) or found.group(3)))
        return originals[seen[-1]]

    restored = _MARKER.sub(restore, inlined)
    if sorted(seen) != list(range(len(originals))):
        # The HTML parser dropped or duplicated Jinja code (inside <style>, or where
        # it rebuilds the document): better no template than a silently wrong one.
        lost = sorted(set(range(len(originals))) - set(seen))
        first = originals[lost[0]] if lost else originals[0]
        raise TemplateError(
            f"the CSS inliner cannot keep the Jinja code {first[:40]!r} in place (inside "
            f"<style>, or outside <html>?); move it, or write that CSS inline"
        )
    return restored


class _InliningLoader(jinja2.FileSystemLoader):
    """Loads templates from the search path, inlining the CSS of full HTML documents."""

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html") and "<html" in source.lower():
            try:
                source = inline_template(source)
            except TemplateError as exc:
                raise TemplateError(f"template {template}: {exc}") from None
        return source, filename, uptodate


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a short way to the keys of the plain dicts templates are given."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `article.title` on a dict makes getattr() raise AttributeError before the
        # key is looked up: some ninety times a message. A key that is not a dict
        # attribute's name comes out the same either way, so look it up first.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja gives each template a ChainMap over the environment's globals, copied
        # into a new dict for every render and include (seven times a message, a tenth
        # of its rendering). Nothing changes these globals once a set is loaded, so
        # one flat dict per template holds the same names and values.
        return {**self.globals, **(d or {})}


_OPTIONS: dict[str, Any] = {
    "autoescape": jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    "keep_trailing_newline": False,
    # A TemplateSet lives for one send or one page; checking the files' times
    # on every include would cost a stat() (and a GIL hand-off) per message.
    "auto_reload": False,
}


def _environment(loader: jinja2.BaseLoader) -> ImmutableSandboxedEnvironment:
    return _Sandbox(loader=loader, **_OPTIONS)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class SplicedHtml:
    """A spliced HTML part in its pieces: the campaign's text (even items) and the
    index of a personal value (odd ones), with one subscriber's values by index
    (those of the text part too)."""

    pieces: list[Any]
    values: Mapping[int, str]
    # The text part's pieces, and its text as spliced, before ``plain_text``.
    text_pieces: list[Any]
    spliced_text: str


class TemplateSet:
    """One template set (subject, HTML body, text body), workspace files first."""

    def __init__(self, name: str, workspace_templates: Path | None = None):
        search = [str(DEFAULTS_DIR / "templates")]
        if workspace_templates is not None:
            search.insert(0, str(workspace_templates))
        self.name = name
        self.search = search
        self.env = _environment(_InliningLoader(search))
        self._splicer: Splicer | None = None
        self.splice_reason = "not asked for (one-off renders)"
        self.templates = {}
        for part in PARTS:
            path = f"{name}/{part}"
            try:
                self.templates[part] = self.env.get_template(path)
            except jinja2.TemplateNotFound:
                raise TemplateError(
                    f"template {name!r}: {path} not found in the workspace's templates/ "
                    f"or the built-in templates"
                ) from None
            except jinja2.TemplateSyntaxError as exc:
                line = self._source_line(part, None) or exc.lineno
                raise TemplateError(f"template {exc.name or path}:{line}: {exc.message}") from None

    def _source_line(self, part: str, context: Mapping[str, Any] | None) -> int | None:
        """The line of an error in the file as written (inlining moves lines about)."""
        if part != "body.html":
            return None
        env = _environment(jinja2.FileSystemLoader(self.search))
        try:
            template = env.get_template(f"{self.name}/{part}")
            if context is not None:
                template.render(context)
        except jinja2.TemplateSyntaxError as exc:
            return exc.lineno
        except Exception as exc:  # noqa: BLE001
            line = _error_line(exc, template)
            return line if isinstance(line, int) else None
        return None

    def campaign_fields(self, part: str) -> set[str]:
        """The ``campaign`` fields a part names, in its own file and what it includes.

        Read from the templates' syntax, not by rendering: a workspace copy of a
        design made before a field existed names none of it.
        """
        env = self.env
        found: set[str] = set()
        todo, seen = [f"{self.name}/{part}"], {f"{self.name}/{part}"}
        while todo:
            source = env.loader.get_source(env, todo.pop())[0] if env.loader else ""
            tree = env.parse(source)
            for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
                assert isinstance(node, (jinja2.nodes.Getattr, jinja2.nodes.Getitem))
                if not (isinstance(node.node, jinja2.nodes.Name) and node.node.name == "campaign"):
                    continue
                if isinstance(node, jinja2.nodes.Getattr):
                    found.add(node.attr)
                elif isinstance(node.arg, jinja2.nodes.Const):
                    found.add(str(node.arg.value))
            for name in jinja2.meta.find_referenced_templates(tree):
                if name is not None and name not in seen:
                    seen.add(name)
                    todo.append(name)
        return found

    @property
    def stylesheet(self) -> str:
        """The CSS of the HTML template, for styling article bodies the same way."""
        assert self.templates["body.html"].filename is not None
        source = Path(self.templates["body.html"].filename).read_text(encoding="utf-8")
        return "\n".join(_STYLE.findall(source))

    def subject(self, context: Mapping[str, Any]) -> str:
        """Render only the subject line, e.g. to name an automatic campaign."""
        try:
            return " ".join(self.templates["subject.txt"].render(context).split())
        except Exception as exc:  # noqa: BLE001 - any failure of a staff template is theirs to fix
            raise TemplateError(f"template {self.name}/subject.txt: {_reason(exc)}") from None

    def splice(self) -> bool:
        """Render by splicing from now on where the set allows it (see ``splice.py``):
        for a send, where one campaign context serves many subscribers. Says whether
        it does; ``splice_reason`` says why not."""
        try:
            self._splicer = Splicer(self.env, _OPTIONS, [f"{self.name}/{p}" for p in PARTS])
        except NotSpliceable as exc:
            self.splice_reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - the full render reports template errors
            self.splice_reason = f"the templates do not compile for splicing ({exc})"
        else:
            self.splice_reason = ""
        return self._splicer is not None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Render all three parts; a failure names the template file and line."""
        return self.render_spliced(context)[0]

    def render_spliced(
        self, context: Mapping[str, Any], text: bool = True
    ) -> tuple[Rendered, SplicedHtml | None]:
        """Render all three parts, and the HTML part's pieces and values where it was
        spliced (None where it was rendered in full).

        ``text=False``: a spliced message's text part is left empty, for a caller
        that builds it from the pieces (``compiled_text.py``); ``plain_text`` of
        ``spliced_text`` is what it would be.
        """
        spliced = self._spliced(context) if self._splicer is not None else None
        out = spliced[0] if spliced is not None else self._render_parts(context)
        subject = " ".join(out["subject.txt"].split())
        made = text or spliced is None
        body_text = plain_text(out["body.txt"]) if made else ""
        rendered = Rendered(subject=subject, html=out["body.html"], text=body_text)
        return rendered, spliced[1] if spliced is not None else None

    def html_pieces(self, context: Mapping[str, Any]) -> list[Any] | None:
        """The spliced pieces of the HTML part for this campaign context, before any
        message proved them; None where the set is not spliced."""
        if self._splicer is None:
            return None
        try:
            return self._splicer.plan(context)[0][f"{self.name}/body.html"]
        except Exception:  # noqa: BLE001 - the full render says what is wrong, with the line
            return None

    def text_pieces(self, context: Mapping[str, Any]) -> list[Any] | None:
        """The spliced pieces of the text part, as ``html_pieces`` those of the HTML."""
        if self._splicer is None:
            return None
        try:
            return self._splicer.plan(context)[0][f"{self.name}/body.txt"]
        except Exception:  # noqa: BLE001 - the full render says what is wrong, with the line
            return None

    def _spliced(self, context: Mapping[str, Any]) -> tuple[dict[str, str], SplicedHtml] | None:
        """The three parts by splicing, or None where the full render must do it."""
        splicer = self._splicer
        if splicer is None or not all(name in context for name in PERSONAL):
            return None
        try:
            pieces, new = splicer.plan(context)
            values: dict[int, str] = {}
            out = {
                part: splicer.render(pieces[f"{self.name}/{part}"], context, values)
                for part in PARTS
            }
        except NotSpliceable as exc:
            self._splicer, self.splice_reason = None, str(exc)
            return None
        except Exception:  # noqa: BLE001 - the full render says what is wrong, with the line
            splicer.forget(context)
            return None
        html = SplicedHtml(
            pieces[f"{self.name}/body.html"],
            values,
            pieces[f"{self.name}/body.txt"],
            out["body.txt"],
        )
        if not new:
            return out, html
        try:
            full = self._render_parts(context)
        except Exception:
            splicer.forget(context)  # not proven yet: the next message tries again
            raise
        if out != full:
            # The proof on the first message of each campaign context: a set whose
            # spliced render ever differs from the full one is never spliced again.
            self._splicer = None
            self.splice_reason = "a spliced message differed from the full render"
            return None
        splicer.proven(context)
        return out, html

    def _render_parts(self, context: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for part, template in self.templates.items():
            try:
                out[part] = template.render(context)
            except Exception as exc:  # noqa: BLE001 - 1/0 in a staff template is a template error
                line = self._source_line(part, context) or _error_line(exc, template)
                raise TemplateError(f"template {self.name}/{part}:{line}: {_reason(exc)}") from None
        return out


def plain_text(body: str) -> str:
    """A rendered body.txt as the text part carries it: stripped, lines wrapped."""
    return wrap_lines(body.strip()) + "\n"


# The built-in design that shows one article in full, and the one that shows several.
SINGLE_ARTICLE_DESIGN, MANY_ARTICLES_DESIGN = "announcement", "digest"


def _reason(exc: Exception) -> str:
    """What went wrong in a template, in its author's terms.

    Jinja's own words for a missing include list the search path, the
    package's install folder included; the author needs the name.
    """
    if isinstance(exc, jinja2.TemplatesNotFound):
        names = ", ".join(repr(str(n)) for n in exc.templates)
        return (
            f"none of the included templates {names} is found; put one in the "
            f"workspace's templates/ folder or fix the name"
        )
    if isinstance(exc, jinja2.TemplateNotFound):
        return (
            f"the included template {str(exc.name)!r} is not found in the workspace's "
            f"templates/ or the built-in templates; add it or fix the name"
        )
    return str(exc)


def choose_template(name: str, article_count: int) -> str:
    """Resolve "auto" to the design that fits the number of articles.

    The announcement shows one article: given several, the campaign uses the
    digest design, so every article it carries (and counts as sent) is in the
    email. Any other set is used as named.
    """
    if name == "auto" or (name == SINGLE_ARTICLE_DESIGN and article_count > 1):
        return SINGLE_ARTICLE_DESIGN if article_count == 1 else MANY_ARTICLES_DESIGN
    return name


def _error_line(exc: Exception, template: jinja2.Template) -> int | str:
    """Find the template line of a runtime error from its traceback.

    Jinja rewrites the traceback so that template frames already carry
    template line numbers.
    """
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def inline_css(document: str) -> str:
    """Inline the <style> rules of a whole document; media queries stay in the head."""
    return _inliner.inline(document)


def inline_fragment(fragment: str, css: str) -> str:
    """Inline a stylesheet into an HTML fragment such as an article body."""
    if not fragment or not css.strip():
        return fragment
    return css_inline.inline_fragment(fragment, css)


def display_date(value: str | None) -> str:
    if not value:
        return ""
    day = dt.date.fromisoformat(value[:10])
    return f"{day.day} {day.strftime('%B %Y')}"


_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_ARTICLE_H1 = re.compile(r"<(/?)h1\b", re.IGNORECASE)


def article_slug(article: Article) -> str:
    """The last part of an article's own page: its id, then its title in plain letters.

    The id alone finds the article; the words make the link readable and are
    checked by the page, which redirects a stale slug to the current one.
    """
    ascii_title = (
        unicodedata.normalize("NFKD", article.get("title") or "").encode("ascii", "ignore").decode()
    )
    words = _SLUG_JUNK.sub("-", ascii_title.lower()).strip("-")[:60].rstrip("-")
    return f"{article['id']}-{words}" if words else str(article["id"])


def article_page_url(base_url: str, article: Article) -> str:
    """The public page the web server keeps for an article that has no URL of its own."""
    return f"{base_url.rstrip('/')}/articles/{article_slug(article)}"


def styled_block(body: str, css: str) -> str:
    """Clean HTML (an article's body, a campaign's intro) as the email shows it.

    The email's own title is its one h1: a heading of the block's is one level
    down. Styled by the template's ``.article-body`` rules, inlined once per campaign.
    """
    body = _ARTICLE_H1.sub(r"<\1h2", body)
    return inline_fragment(f'<div class="article-body">{body}</div>', css)


def article_context(article: Article, css: str = "", base_url: str | None = None) -> ArticleContext:
    """Template data for one article; its body is sanitized HTML, marked safe to insert.

    With ``base_url``, an article with no URL of its own (a folder file, a
    saved page) links to its page on the web server, so no link is ever empty.
    """
    body = article.get("body_html") or ""
    if body:
        body = styled_block(body, css)
    url = article.get("url") or ""
    own_page = bool(not url and base_url)
    if own_page:
        url = article_page_url(base_url or "", article)
    return {
        "id": article["id"],
        "title": article["title"],
        "url": url,
        # The link is the article's page on our web server, not a blog post.
        "own_page": own_page,
        "summary": article.get("summary") or "",
        "image": article.get("image"),
        "image_alt": article.get("image_alt"),
        "author": article.get("author"),
        "published": article.get("published") or "",
        "published_display": display_date(article.get("published")),
        "tags": list(article.get("tags") or []),
        "body_html": Markup(body),
        "body_text": html_to_text(body),
    }


# Preview text past this many characters is cut by every inbox anyway.
PREHEADER_LENGTH = 140


def _shorten(text: str, limit: int = PREHEADER_LENGTH) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:·-") + "…"


def default_preheader(articles: Sequence[ArticleContext], setting: str, lead: str = "") -> str:
    """The inbox preview of a campaign that sets none, by ``[templates] preheader``.

    "auto": the summary of a single article (or its opening words), the
    titles of several, the opening words of ``lead`` (a campaign's own body)
    when there is no article; "" (or "none"): none; any other text is used as it is.
    Without one, inboxes preview whatever text comes first ("View in browser").
    """
    if setting.strip().lower() in ("", "none"):
        return ""
    if setting.strip().lower() != "auto":
        return _shorten(setting)
    if not articles:
        return _shorten(lead)
    if len(articles) == 1:
        article = articles[0]
        return _shorten(article.get("summary") or article.get("body_text") or article["title"])
    return _shorten(" · ".join(a["title"] for a in articles))


# Scripts written right to left (ISO 639 codes of their main languages).
_RTL_LANGUAGES = frozenset(
    ("ar", "arc", "ckb", "dv", "fa", "ha", "he", "iw", "ks", "ku", "ps", "sd", "ug", "ur", "yi")
)


def text_direction(language: str) -> str:
    """ "rtl" for a language written right to left, else "ltr"."""
    primary = language.split("-")[0].lower()
    script = language.split("-")[1].lower() if "-" in language else ""
    if script in ("arab", "hebr", "thaa", "syrc", "nkoo"):
        return "rtl"
    if script in ("latn", "cyrl"):
        return "ltr"
    return "rtl" if primary in _RTL_LANGUAGES else "ltr"


def sender_context(
    name: str, address: str, postal_address: str, reply_to: str
) -> dict[str, str | None]:
    """What every email template knows about who sends it ([sender] settings)."""
    return {
        "name": name,
        "address": address,
        "postal_address": postal_address,
        "reply_to": reply_to or None,
    }


def site_context(base_url: str, language: str) -> dict[str, str]:
    """What every email template knows about the site: its URL, language and direction."""
    return {"base_url": base_url, "language": language, "direction": text_direction(language)}


def subscriber_context(subscriber: Subscriber) -> dict[str, Any]:
    """Template data for one subscriber; empty fields are left out.

    Leaving them out (rather than passing None) is what makes
    ``{{ subscriber.first_name | default("there") }}`` work as staff expect.
    """
    first, last = subscriber.get("first_name"), subscriber.get("last_name")
    attributes = dict(subscriber.get("attributes") or {})
    context = {k: v for k, v in attributes.items() if v not in (None, "")}
    context.update(
        email=subscriber["email"],
        name=" ".join(p for p in (first, last) if p),
        attributes=attributes,
    )
    if first:
        context["first_name"] = first
    if last:
        context["last_name"] = last
    return context


def message_id(campaign_id: int, delivery_key: str, domain: str) -> str:
    """A Message-ID that is the same every time the same delivery is rendered.

    Determinism lets a resumed sender, or a provider's log, tell whether an
    in-flight message was the one already handed over.
    """
    digest = hashlib.sha256(f"{campaign_id}:{delivery_key}".encode()).hexdigest()[:16]
    return f"<c{campaign_id}.{delivery_key}.{digest}@{domain}>"
