"""Every email the project sends is readable in light and dark mode, in real Chromium.

Each message's HTML part is loaded into headless Chromium with
``prefers-color-scheme`` light and then dark, at desktop and phone width.
For every visible text node the test computes the contrast of its colour
against the background actually behind it (the nearest painted backgrounds
of its ancestors, composited down to the page's canvas) and requires the
WCAG 2 minimum: 4.5 : 1, or 3 : 1 for text of 24 px and more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clocks import REAL_NOW as NOW
from conftest import ARTIFACTS
from emails import every_email_of

# Runs in the page: one entry per visible text node that is below the minimum.
CONTRAST = r"""
() => {
  const parse = (value) => {
    const m = value.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const channel = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const luminance = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  // The canvas behind everything, in the colour scheme the page is shown in.
  const probe = document.createElement("div");
  probe.style.backgroundColor = "Canvas";
  document.documentElement.appendChild(probe);
  const canvas = parse(getComputedStyle(probe).backgroundColor);
  probe.remove();
  const behind = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) {
        layers.push(c);
        if (c[3] >= 1) break;
      }
    }
    let colour = canvas;
    for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
    return colour;
  };
  const failures = [];
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/[\s\u034f\u200c]+/g, " ").trim();
    if (!text) continue;
    const element = node.parentElement;
    if (!element.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const boxes = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    if (!boxes.length) continue;
    const style = getComputedStyle(element);
    const background = behind(element);
    const colour = over(parse(style.color), background);
    const [light, dark] = [luminance(colour), luminance(background)].sort((a, b) => b - a);
    const ratio = (light + 0.05) / (dark + 0.05);
    const size = parseFloat(style.fontSize);
    const minimum = size >= 24 ? 3 : 4.5;
    checked += 1;
    if (ratio < minimum) {
      failures.push({
        text: text.slice(0, 50), ratio: Math.round(ratio * 100) / 100, minimum, size,
        color: style.color, background: `rgb(${background.slice(0, 3).map(Math.round)})`,
      });
    }
  }
  return { checked, failures };
}
"""

SIZES = {"desktop": {"width": 700, "height": 900}, "phone": {"width": 375, "height": 800}}


@pytest.fixture(scope="module")
def emails(tmp_path_factory) -> dict[str, str]:
    from newsletter.workspace import init_workspace

    root = tmp_path_factory.mktemp("contrast") / "ws"
    init_workspace(root)
    found = every_email_of(root, NOW, preheader="Five minutes a day for a calmer back")
    return {name: m.get_body(("html",)).get_content() for name, m in found.items()}


def _page(browser, scheme: str, size: str):
    context = browser.new_context(color_scheme=scheme, viewport=SIZES[size])
    # Offline: images and anything remote are refused, as a privacy-minded client does.
    context.route("**/*", lambda route: route.abort())
    return context, context.new_page()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_email_has_readable_text(browser, emails, scheme: str, size: str) -> None:
    assert set(emails) == {
        "announcement",
        "announcement-saved-page",
        "digest",
        "confirm",
        "welcome",
    }
    context, page = _page(browser, scheme, size)
    try:
        problems = {}
        for name, html in emails.items():
            page.set_content(html, wait_until="load")
            result = page.evaluate(CONTRAST)
            # Every email has text to check: a page that hid it all would pass vacuously.
            assert result["checked"] >= 8, (name, result)
            if result["failures"]:
                problems[name] = result["failures"]
        assert problems == {}
    finally:
        context.close()


def test_dark_mode_screenshots(browser, emails) -> None:
    """Pictures of each email in dark mode on a phone, for a person to look at."""
    folder = Path(ARTIFACTS).parent / "emails"
    folder.mkdir(parents=True, exist_ok=True)
    context, page = _page(browser, "dark", "phone")
    try:
        for name, html in emails.items():
            page.set_content(html, wait_until="load")
            path = folder / f"{name}-dark.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 10_000
    finally:
        context.close()


# -- Outlook and small screens -------------------------------------------------------

# Runs in the page: text under 14 px, the computed size of every heading, lang and dir.
LAYOUT = r"""
() => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/[\s\u034f\u200c]+/g, " ").trim();
    if (!text || !node.parentElement.checkVisibility({ opacityProperty: true })) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    if (![...range.getClientRects()].some((r) => r.width > 0 && r.height > 0)) continue;
    const size = parseFloat(getComputedStyle(node.parentElement).fontSize);
    if (size < 14) small.push({ text: text.slice(0, 40), size });
  }
  const headings = {};
  for (const level of ["h1", "h2", "h3", "h4"]) {
    headings[level] = [...document.querySelectorAll(level)].map(
      (h) => parseFloat(getComputedStyle(h).fontSize));
  }
  const root = document.documentElement;
  return { small, headings, lang: root.getAttribute("lang"), dir: root.getAttribute("dir") };
}
"""


@pytest.mark.parametrize("size", list(SIZES))
def test_text_size_and_heading_order(browser, emails, size: str) -> None:
    context, page = _page(browser, "light", size)
    try:
        for name, html in emails.items():
            page.set_content(html, wait_until="load")
            layout = page.evaluate(LAYOUT)
            assert layout["small"] == [], name  # footer and small print: 14 px at least
            headings = layout["headings"]
            assert len(headings["h1"]) == 1, (name, headings)
            # Each level smaller than the one above it, at this width too.
            levels = [sizes for sizes in headings.values() if sizes]
            for upper, lower in zip(levels, levels[1:], strict=False):
                assert min(upper) > max(lower), (name, size, headings)
            assert (layout["lang"], layout["dir"]) == ("en", "ltr"), name
    finally:
        context.close()
