"""Rendering speed: complete personalised messages (wire bytes) per second on one core.

A five-article digest is rendered for every subscriber — template, tracking
links, open pixel, MIME — and compared with the ceiling measured in the same
run: a bare jinja2 render of the same two templates (HTML and text) with the
same data, nothing else. Then the same messages as a send builds them: the
templates rendered once and spliced, the HTML and text parts compiled once
(compiled_html.py, compiled_text.py). Memory is sampled to show it does not grow with the
number of recipients.
"""

from __future__ import annotations

import datetime as dt
import resource
import shutil
import tempfile
import time
from pathlib import Path

import jinja2

from newsletter import campaigns, jobs
from newsletter.workspace import Workspace, init_workspace

RECIPIENTS = 5000
NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    root = work / "ws"
    init_workspace(root)
    articles = sorted((root / "articles").glob("*.md"))
    for n, path in enumerate(articles[:2]):
        text = path.read_text().replace(
            'url: "https://clinic.example.com/post/',
            f'url: "https://clinic.example.com/post/more-{n}-',
        )
        (root / "articles" / f"extra-{n}.md").write_text(text)
    ws = Workspace.open(root, env={"NEWSLETTER_SECRET_KEY": "bench"})
    store = ws.store
    jobs.fetch_sources(ws, store, NOW)
    rows = [
        {
            "email": f"reader{i}@example.com",
            "first_name": f"Reader{i}",
            "last_name": "Test",
            "status": "confirmed",
            "attributes": {"city": "Springfield"},
        }
        for i in range(RECIPIENTS)
    ]
    store.add_subscribers(rows, None, "bench", "bench", NOW)
    campaign_id = campaigns.create(
        store, ws.settings, "Five new articles", "new", "digest", None, NOW
    )
    mail, transport = jobs.prepare_send(ws, store, campaign_id, NOW)
    transport.close()
    assert len(mail.articles) == 5, len(mail.articles)
    subscribers = store.subscribers("confirmed")
    contexts = [mail.context(s) for s in subscribers]

    bare = jinja2.Environment(
        loader=jinja2.FileSystemLoader(mail.templates.env.loader.searchpath),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    html_t, text_t = bare.get_template("digest/body.html"), bare.get_template("digest/body.txt")
    start = time.perf_counter()
    for context in contexts:
        html_t.render(context)
        text_t.render(context)
    ceiling = len(contexts) / (time.perf_counter() - start)

    size = 0
    rss_half = 0.0
    start = time.perf_counter()
    for n, subscriber in enumerate(subscribers):
        size += len(mail.message(subscriber, f"c{campaign_id}-d{n}", NOW)[1])
        if n == len(subscribers) // 2:
            rss_half = rss_mb()
    rate = len(subscribers) / (time.perf_counter() - start)
    rss_end = rss_mb()

    # As a send builds them: rendered once and spliced, the HTML part compiled once.
    mail.templates.splice()
    mail.compile_html()
    start = time.perf_counter()
    for n, subscriber in enumerate(subscribers):
        mail.message(subscriber, f"c{campaign_id}-d{n}", NOW)
    send_rate = len(subscribers) / (time.perf_counter() - start)

    print(f"bare jinja2 render (html + text), same template and data: {ceiling:.0f} per second")
    print(
        f"complete messages (render, tracking, MIME): {rate:.0f} per second on one core "
        f"= {rate / ceiling:.2f} x ceiling; {size / len(subscribers) / 1024:.1f} KB each"
    )
    compiled = [
        part
        for part, reason in (("HTML", mail.compile_reason), ("text", mail.text_reason))
        if not reason
    ]
    how = f", {' and '.join(compiled)} compiled" if compiled else ""
    print(
        f"as a send builds them (spliced{how}): "
        f"{send_rate:.0f} per second = {1e6 / send_rate:.0f} µs each"
    )
    print(
        f"peak memory: {rss_half:.0f} MB after {len(subscribers) // 2} messages, "
        f"{rss_end:.0f} MB after {len(subscribers)}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
