"""Staff read the opens-and-clicks chart of a campaign: drawn over the hours something
happened, named in the workspace's time zone, each line told apart without colour, with
the values under the pointer and a text for those who do not see it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from clocks import Clock
from conftest import Dashboard, dashboard_served
from newsletter import jobs
from newsletter.workspace import Workspace
from test_dashboard_access import PHONE, serious_violations
from workspaces import new_campaign

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def clock() -> Clock:
    """The server's clock, started at the real now and moved by the test."""
    return Clock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def tokyo(ws_dir: Path, clock: Clock) -> Iterator[Dashboard]:
    """The dashboard of a workspace in Asia/Tokyo, on the test's clock."""
    with dashboard_served(ws_dir, clock, NEWSLETTER_SCHEDULE__TIMEZONE="Asia/Tokyo") as served:
        yield served


@pytest.fixture
def page(browser, tokyo: Dashboard):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(15_000)
    tokyo.sign_in(page)
    yield page
    context.close()


def opens(ws: Workspace, campaign_id: int, *times: dt.datetime, kind: str = "open") -> None:
    """A reader's opens (or clicks) of the campaign at these times."""
    reader = ws.store.subscribers("confirmed")[0]["id"]
    ws.store.insert_events(
        [
            {
                "at": when.isoformat(timespec="seconds"),
                "kind": kind,
                "campaign_id": campaign_id,
                "subscriber_id": reader,
                "method": "GET",
                "user_agent": "Mozilla/5.0",
                "ip": None,
                "classification": "human",
                "reason": None,
            }
            for when in times
        ]
    )


def label(when: dt.datetime) -> str:
    local = when.astimezone(TOKYO)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def chart_of(page, tokyo: Dashboard, campaign_id: int) -> dict:
    answer = page.request.get(f"{tokyo.url}/campaigns/{campaign_id}/results/chart.json")
    assert answer.status == 200
    return answer.json()


def test_a_sent_campaigns_chart_spans_the_first_send_to_the_last_event_in_tokyo_time(
    page, tokyo: Dashboard, clock: Clock
) -> None:
    ws = tokyo.ws
    sent_at = clock() - dt.timedelta(hours=10)
    cid = new_campaign(ws, sent_at, "Winter hours")
    jobs.send_campaign(ws, ws.store, cid, lambda: sent_at)
    first = dt.datetime.fromisoformat(ws.store.first_sent_at(cid))
    opens(ws, cid, first + dt.timedelta(minutes=70), first + dt.timedelta(hours=3, minutes=20))

    chart = chart_of(page, tokyo, cid)
    # Hours 0 to 3: the last event's hour ends it, ten hours after the send it is now.
    hours = [first + dt.timedelta(hours=h) for h in range(4)]
    assert chart["x"] == [int(h.timestamp()) for h in hours]
    assert chart["labels"] == [label(h) for h in hours]
    assert chart["zone"] == "Asia/Tokyo"
    assert dict(chart["series"])["opens human"] == [0, 1, 0, 1]
    assert chart["ticks"][0] == f"{first.astimezone(TOKYO):%a %H:%M}"

    # The page tells it in words too, with the same names of hours.
    page.goto(f"{tokyo.url}/campaigns/{cid}/results")
    expect(page.locator("#chart-summary")).to_contain_text(
        f"From {label(hours[0])} to the hour from {label(hours[3])} (Asia/Tokyo)."
    )
    expect(page.locator("#chart-summary")).to_contain_text("Opens human: 2")


def test_while_sending_the_chart_ends_at_the_hour_it_is_now(
    page, tokyo: Dashboard, clock: Clock
) -> None:
    ws = tokyo.ws
    started = clock() - dt.timedelta(hours=5, minutes=30)
    cid = new_campaign(ws, started, "Winter hours")
    sends = iter(range(100))
    # Stopped after the first messages: the campaign is still sending.
    jobs.send_campaign(ws, ws.store, cid, lambda: started, should_stop=lambda: next(sends) > 3)
    assert ws.store.campaign_status(cid) == "sending"
    first = dt.datetime.fromisoformat(ws.store.first_sent_at(cid))
    opens(ws, cid, first + dt.timedelta(minutes=20))

    # Now is in hour 5 of the send: hours 0 to 5, none after.
    assert len(chart_of(page, tokyo, cid)["x"]) == 6
    clock.now += dt.timedelta(hours=2)
    chart = chart_of(page, tokyo, cid)
    assert chart["x"][-1] == int((first + dt.timedelta(hours=7)).timestamp())
    assert dict(chart["series"])["opens human"] == [1, 0, 0, 0, 0, 0, 0, 0]
    # Never past the series' 48 hours, however long it sends.
    clock.now += dt.timedelta(days=5)
    tokyo.sign_in(page)  # the session of five days ago has ended
    assert len(chart_of(page, tokyo, cid)["x"]) == 48


def test_the_chart_tells_lines_apart_by_dash_and_shows_values_in_its_legend_on_hover(
    page, tokyo: Dashboard, clock: Clock
) -> None:
    ws = tokyo.ws
    sent_at = clock() - dt.timedelta(hours=6)
    cid = new_campaign(ws, sent_at, "Winter hours")
    jobs.send_campaign(ws, ws.store, cid, lambda: sent_at)
    first = dt.datetime.fromisoformat(ws.store.first_sent_at(cid))
    opens(ws, cid, *[first + dt.timedelta(hours=2, minutes=m) for m in (5, 10, 15)])
    opens(ws, cid, first + dt.timedelta(hours=2, minutes=30), kind="click")
    opens(ws, cid, first + dt.timedelta(hours=4, minutes=1))

    page.goto(f"{tokyo.url}/campaigns/{cid}/results")
    holder = page.locator("[data-chart]")
    expect(holder.locator("canvas")).to_have_count(1)
    lines = holder.evaluate(
        "h => h.uplot.series.slice(1).map(s => ({label: s.label, dash: JSON.stringify(s.dash),"
        " stroke: s._stroke}))"
    )
    assert len(lines) == 6
    # Every line its own dash pattern and its own colour.
    assert len({line["dash"] for line in lines}) == 6, lines
    assert len({line["stroke"] for line in lines}) == 6, lines
    # The legend's markers show the kind of line too.
    markers = holder.locator(".u-legend .u-series .u-marker")
    styles = {markers.nth(i).evaluate("m => m.style.borderStyle") for i in range(1, 7)}
    assert len(styles) > 1, styles
    # The x axis names the hours in Tokyo time (the browser is in UTC).
    ticks = holder.evaluate("h => h.uplot.axes[0]._values")
    assert ticks and ticks[0] == f"{first.astimezone(TOKYO):%a %H:%M}", ticks

    # Under the pointer, the legend shows the hour (in Tokyo) and each line's value.
    over = holder.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    x = holder.evaluate("h => h.uplot.valToPos(h.uplot.data[0][2], 'x')")
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    legend = holder.locator(".u-legend")
    expect(legend.locator(".u-series").first.locator(".u-value")).to_have_text(
        label(first + dt.timedelta(hours=2))
    )
    row = legend.locator(".u-series", has_text="opens human")
    expect(row.locator(".u-value")).to_have_text("3")
    expect(legend.locator(".u-series", has_text="clicks human").locator(".u-value")).to_have_text(
        "1"
    )
    tokyo.screenshot(page, "results-chart-hover", part=".chart")

    # For those who do not see it: the summary and the table, and nothing serious for axe.
    expect(page.locator("#chart-summary")).to_contain_text("Clicks human: 1")
    assert serious_violations(page) == []
    page.set_viewport_size(PHONE)
    page.goto(f"{tokyo.url}/campaigns/{cid}/results")
    expect(holder.locator("canvas")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
