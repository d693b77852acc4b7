"""Machine-event classification: one test per rule, the signals file, the "all links" bursts."""

from __future__ import annotations

import datetime as dt

import pytest

from clocks import NOW as SENT
from newsletter import classify
from newsletter.classify import MACHINE, UNKNOWN, Hit, Verdict

LATER = SENT + dt.timedelta(hours=2)
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15"
)
OUTLOOK = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Microsoft Outlook 16.0.17029"


@pytest.fixture(scope="module")
def signals() -> classify.Signals:
    return classify.parse_signals(
        classify.DEFAULT_SIGNALS.read_text(encoding="utf-8"), "machine_signals.toml"
    )


def verdict(signals, kind="open", at=LATER, method="GET", ua=BROWSER, ip="203.0.113.7"):
    return classify.classify(Hit(kind, at, method, ua, ip, SENT), signals)


def test_a_reader_long_after_delivery_is_human(signals):
    for kind in ("open", "click", "view"):
        assert verdict(signals, kind).classification == "human"


# -- per-event rules ------------------------------------------------------------------


def test_head_request_is_a_machine(signals):
    assert verdict(signals, "click", method="HEAD") == Verdict(MACHINE, "HEAD request")


def test_gmail_image_proxy_counts_as_an_open_but_not_as_human(signals):
    ua = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    assert verdict(signals, "open", ua=ua) == Verdict(UNKNOWN, "user agent: Gmail image proxy")


def test_apple_privacy_protection_generic_user_agent_is_a_machine_open(signals):
    found = verdict(signals, "open", ua="Mozilla/5.0")
    assert found.classification == MACHINE and "Apple Mail Privacy" in found.reason
    # A real client's longer user agent is not the prefetch.
    assert verdict(signals, "open", ua=OUTLOOK).classification == "human"


@pytest.mark.parametrize(
    ("ua", "name"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/120.0.0.0 Safari/537.36",
            "Safe Links",
        ),
        ("Mozilla/5.0 Barracuda Networks LinkProtect", "Barracuda"),
        ("Proofpoint URL Defense", "Proofpoint"),
        ("Mimecast-URL-Protect/1.0", "Mimecast"),
        ("python-requests/2.32.3", "scripted client"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "crawler"),
    ],
)
def test_scanner_user_agents_are_machine_clicks(signals, ua, name):
    found = verdict(signals, "click", ua=ua)
    assert found.classification == MACHINE and name in found.reason


def test_apple_network_makes_opens_machine_but_not_clicks(signals):
    assert verdict(signals, "open", ip="17.58.101.4") == Verdict(
        MACHINE, "network: Apple Mail Privacy Protection"
    )
    # iCloud Private Relay users click from Apple's addresses too.
    assert verdict(signals, "click", ip="17.58.101.4").classification == "human"


def test_microsoft_protection_network_clicks_are_machine(signals):
    found = verdict(signals, "click", ip="52.100.3.9")
    assert found.classification == MACHINE and "Exchange Online Protection" in found.reason
    assert verdict(signals, "open", ip="40.92.17.1").classification == UNKNOWN
    assert verdict(signals, "click", ip="52.112.0.1").classification == "human"  # past the /12


def test_network_rules_see_ipv4_mapped_and_truncated_addresses(signals):
    assert verdict(signals, "click", ip="::ffff:40.92.8.1").classification == MACHINE
    assert verdict(signals, "click", ip="40.92.8.0").classification == MACHINE
    assert verdict(signals, "click", ip="not an address").classification == "human"


def test_open_within_seconds_of_delivery_is_a_machine(signals):
    soon = verdict(signals, "open", at=SENT + dt.timedelta(seconds=2))
    assert soon == Verdict(MACHINE, "open 2 s after delivery")
    assert verdict(signals, "open", at=SENT + dt.timedelta(seconds=6)).classification == "human"


def test_click_within_seconds_of_delivery_is_a_machine(signals):
    soon = verdict(signals, "click", at=SENT + dt.timedelta(seconds=9))
    assert soon == Verdict(MACHINE, "click 9 s after delivery")
    assert verdict(signals, "click", at=SENT + dt.timedelta(seconds=10)).classification == "human"


def test_unknown_delivery_time_gives_no_timing_signal(signals):
    hit = Hit("open", SENT, "GET", BROWSER, None, None)
    assert classify.classify(hit, signals).classification == "human"


def test_rules_apply_in_order_and_the_first_gives_the_reason(signals):
    # HEAD beats the user agent, the user agent beats the network, the network beats timing.
    assert verdict(signals, "click", method="HEAD", ua="Barracuda").reason == "HEAD request"
    assert "Barracuda" in verdict(signals, "click", ua="Barracuda", ip="52.96.0.1").reason
    early = SENT + dt.timedelta(seconds=1)
    assert verdict(signals, "click", at=early, ip="52.96.0.1").reason.startswith("network:")


# -- every link at once ------------------------------------------------------------------


def burst(clicks: list[tuple[float, int]], link_count: int = 3) -> list[int]:
    """The clicks (time, link) flagged as one message's "all links" burst, in order."""
    bursts = classify.LinkBursts(window=10)
    flagged: list[int] = []
    for index, (at, link_id) in enumerate(clicks):
        flagged += bursts.add("message", at, link_id, link_count, index)
    return flagged


def test_every_link_clicked_within_the_window_is_a_burst():
    assert burst([(100.0, 1), (101.0, 2), (103.0, 3)]) == [0, 1, 2]
    # Clicks that keep coming within the window join the burst.
    assert burst([(100.0, 1), (101.0, 2), (103.0, 3), (104.0, 1)]) == [0, 1, 2, 3]


def test_links_clicked_over_minutes_are_no_burst():
    assert burst([(100.0, 1), (160.0, 2), (230.0, 3)]) == []
    # The first click fell out of the window before the last link was clicked.
    assert burst([(100.0, 1), (105.0, 2), (111.0, 3)]) == []


def test_some_links_at_once_are_no_burst():
    assert burst([(100.0, 1), (100.0, 2), (101.0, 2)]) == []


def test_a_message_with_one_link_never_bursts():
    assert burst([(100.0, 1), (100.0, 1)], link_count=1) == []


def test_link_bursts_keep_messages_apart_and_return_the_earlier_clicks():
    bursts = classify.LinkBursts(window=10)
    assert bursts.add(("c1", "s1"), 100.0, 1, 2, "first") == []
    assert bursts.add(("c1", "s2"), 101.0, 2, 2, "other reader") == []
    assert bursts.add(("c1", "s1"), 102.0, 2, 2, "second") == ["first", "second"]
    assert bursts.add(("c1", "s1"), 103.0, 2, 2, "third") == ["third"]
    # Outside the window the message starts over.
    assert bursts.add(("c1", "s1"), 200.0, 1, 2, "much later") == []


def test_a_flood_of_clicks_is_bounded():
    bursts = classify.LinkBursts(window=10, max_clicks=100)
    flagged = [bursts.add("m", 100.0, n % 2, 2, n) for n in range(10_000)]
    assert flagged[0] == [] and flagged[1] == [0, 1]
    assert all(f == [n] for n, f in enumerate(flagged) if n > 1)
    assert len(bursts._recent["m"].clicks) == 100


def test_link_bursts_forget_old_messages():
    bursts = classify.LinkBursts(window=10, max_messages=2)
    for n in range(5):
        bursts.add(n, float(n * 100), 1, 2, n)
    assert len(bursts._recent) <= 2
    assert bursts.add(4, 401.0, 2, 2, "again") == [4, "again"]


# -- the signals file --------------------------------------------------------------------


def test_the_built_in_signals_file_parses(signals):
    assert signals.open_seconds == 5 and signals.click_seconds == 10
    assert signals.all_links_seconds == 10 and signals.version


def test_a_network_can_come_from_apples_csv():
    text = """
    [[network]]
    name = "Apple relay"
    ranges_file = "egress.csv"
    open = "machine"
    """
    csv = "prefix,country,region,city\n172.224.226.0/27,GB,GB-EN,London\n2a02:26f7:b3c0::/45,GB,,\n"
    signals = classify.parse_signals(text, "signals.toml", {"egress.csv": csv}.__getitem__)
    hit = Hit("open", LATER, "GET", OUTLOOK, "172.224.226.30", SENT)
    assert classify.classify(hit, signals) == Verdict(MACHINE, "network: Apple relay")
    hit = Hit("open", LATER, "GET", OUTLOOK, "2a02:26f7:b3c1::9", SENT)
    assert classify.classify(hit, signals).classification == MACHINE
    hit = Hit("open", LATER, "GET", OUTLOOK, "172.224.226.40", SENT)
    assert classify.classify(hit, signals).classification == "human"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[agent]]\nname = 'x'\nmatch = '('\nopen = 'machine'", "agent[0].match: not a regular"),
        ("[[agent]]\nname = 'x'\nmatch = 'x'\nopen = 'human'", "agent[0].open: use machine"),
        ("[[agent]]\nname = 'x'\nmatch = 'x'", "agent[0]: say what it makes"),
        ("[[network]]\nname = 'n'\nnetworks = ['10.0.0.0/33']\nclick = 'machine'", "networks[0]"),
        ("[timing]\nopen_seconds = -1", "timing.open_seconds: expected 0 or more"),
        ("[[agent]]\nmatch = 'x'\nopen = 'machine'", "agent[0].name"),
        ("version = ", "invalid TOML"),
    ],
)
def test_a_bad_signals_file_names_the_entry(text, message):
    with pytest.raises(classify.SignalsError, match="signals.toml") as caught:
        classify.parse_signals(text, "signals.toml")
    assert message in str(caught.value)


def test_a_bad_line_in_a_ranges_csv_names_the_line():
    text = "[[network]]\nname = 'n'\nranges_file = 'r.csv'\nopen = 'machine'"
    read = {"r.csv": "prefix\n10.0.0.0/8\nnonsense,XX\n"}.__getitem__
    with pytest.raises(classify.SignalsError, match=r"r.csv:3: 'nonsense'"):
        classify.parse_signals(text, "signals.toml", read)


def test_a_signals_file_and_ranges_csv_saved_with_a_bom_are_read():
    """Files saved by Windows Notepad start with a BOM; TOML and the ranges CSV are read anyway."""
    text = "\ufeff[[network]]\nname = 'n'\nranges_file = 'r.csv'\nopen = 'machine'"
    read = {"r.csv": "\ufeff10.0.0.0/8\n192.0.2.0/24\n"}.__getitem__
    signals = classify.parse_signals(text, "signals.toml", read)
    # The first line of the CSV is a network, not a header, BOM or no BOM.
    for ip in ("10.1.2.3", "192.0.2.9"):
        hit = Hit("open", LATER, "GET", OUTLOOK, ip, SENT)
        assert classify.classify(hit, signals) == Verdict(MACHINE, "network: n")
