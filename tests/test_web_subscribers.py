"""The subscriber pages over real HTTP on loopback, with a clock the test moves.

Subscribe form → confirmation email in the outbox → confirmation page →
welcome email → one-click unsubscribe exactly as a mailbox provider sends it
→ preference page. The emails are read from the outbox as a reader would.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import http.client
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from clocks import NOW as T0
from clocks import Clock
from conftest import wait_for_http
from newsletter.web.app import create_app
from newsletter.web.server import listen, make_server
from newsletter.workspace import Workspace


class Site:
    """The web application on a loopback port, its public links pointing at that port."""

    def __init__(self, ws_dir: Path, clock: Clock, **settings: str):
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        # The tests speak for many networks through X-Forwarded-For, as a proxy would.
        env = {
            "NEWSLETTER_SITE__BASE_URL": self.url,
            "NEWSLETTER_WEB__TRUSTED_PROXIES": "127.0.0.1",
        }
        env.update({f"NEWSLETTER_{k.upper()}": v for k, v in settings.items()})
        self.ws = Workspace.open(ws_dir, env=env)
        self.outbox = ws_dir / "outbox"
        self.app = create_app(self.ws, clock)
        self.server = make_server(self.app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        wait_for_http(self.url + "/healthz")
        self.http = requests.Session()

    @property
    def store(self):
        return self.ws.store

    def flush(self) -> None:
        """Wait until the emails asked for so far have been handed to the transport."""
        self.app.state.subscriber_pages.mail.flush()

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        self.ws.close()

    def form(self, path: str = "/subscribe", ip: str = "203.0.113.10") -> dict[str, str]:
        page = self.http.get(self.url + path, headers={"X-Forwarded-For": ip}, timeout=5)
        assert page.status_code == 200
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        return fields

    def subscribe(
        self, address: str, ip: str = "203.0.113.10", **extra: str | list[str]
    ) -> requests.Response:
        data: dict[str, str | list[str]] = {**self.form(ip=ip), "email": address, "consent": "yes"}
        data.update(extra)
        return self.http.post(
            self.url + "/subscribe",
            data=data,
            headers={"X-Forwarded-For": ip, "User-Agent": "TestBrowser/1.0"},
            allow_redirects=False,
            timeout=5,
        )

    def mails(self, prefix: str) -> list[email.message.EmailMessage]:
        self.flush()
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(self.outbox.glob(f"{prefix}-*.eml"), key=lambda p: p.stat().st_mtime)
        ]


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def link_in(message: email.message.EmailMessage, kind: str) -> str:
    return re.search(rf"http://127\.0\.0\.1:\d+/{kind}/[\w-]+", text_of(message)).group(0)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def site(ws_dir: Path, clock: Clock) -> Iterator[Site]:
    site = Site(ws_dir, clock, subscribers__welcome_template="welcome")
    yield site
    site.stop()


def _consents(site: Site, address: str) -> list[dict]:
    return site.store._rows("SELECT * FROM consents WHERE email = ? ORDER BY id", [address])


# -- the form ------------------------------------------------------------------------


def test_the_form_shows_the_consent_text_and_its_version_accessibly(site: Site) -> None:
    page = site.http.get(site.url + "/subscribe", timeout=5)
    assert page.status_code == 200
    settings = site.ws.settings
    assert html.escape(settings.consent.text, quote=False) in page.text
    assert f'name="consent_version" value="{settings.consent.version}"' in page.text
    # Every visible field has a label; the honeypot is hidden from people and screen readers.
    for field in ("email", "name", "consent"):
        assert f'<label for="{field}"' in page.text or f'for="{field}">' in page.text
        assert f'id="{field}"' in page.text
    assert 'class="hp" aria-hidden="true"' in page.text and 'tabindex="-1"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # Its address goes to no other site; to our own, so the browser names the form's origin.
    assert page.headers["referrer-policy"] == "same-origin"
    assert "set-cookie" not in page.headers


def test_subscribe_confirm_and_welcome(site: Site, clock: Clock) -> None:
    site.store.create_list("back-care", "Exercises for a sore back", True, T0)
    answer = site.subscribe("Ann.Lee@Example.COM", name="Ann Lee", list=["back-care", "secret"])
    assert answer.status_code == 200 and "Check your inbox" in answer.text

    (mail,) = site.mails("confirm")
    assert mail["To"].addresses[0].addr_spec == "Ann.Lee@example.com"
    # The text part is wrapped at 78 columns: compare the words.
    assert site.ws.settings.consent.text in " ".join(text_of(mail).split())
    confirm = link_in(mail, "confirm")
    subscriber = site.store.subscriber_by_email("Ann.Lee@example.com")
    assert subscriber["status"] == "unconfirmed"
    (record,) = _consents(site, "Ann.Lee@example.com")
    assert (record["source"], record["ip"], record["user_agent"]) == (
        "form",
        "203.0.113.0",  # truncated per [tracking] truncate_ip
        "TestBrowser/1.0",
    )
    assert (record["text"], record["text_version"]) == (
        site.ws.settings.consent.text,
        site.ws.settings.consent.version,
    )
    assert record["at"] == "2026-11-27T09:00:00+00:00"
    assert record["confirm_sent_at"] == "2026-11-27T09:00:00+00:00"
    assert record["lists"] == '["back-care"]'  # a list that is not public is never joined

    # A GET (a mail scanner) shows the page and confirms nothing.
    clock.now = T0 + dt.timedelta(hours=3)
    page = site.http.get(confirm, timeout=5)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert site.store.subscriber(subscriber["id"])["status"] == "unconfirmed"
    # Nor does a HEAD, which link scanners send too.
    assert site.http.head(confirm, timeout=5).status_code == 200
    assert site.store.subscriber(subscriber["id"])["status"] == "unconfirmed"

    done = site.http.post(confirm, headers={"X-Forwarded-For": "198.51.100.77"}, timeout=5)
    assert done.status_code == 200 and "You are subscribed" in done.text
    confirmed = site.store.subscriber(subscriber["id"])
    assert (confirmed["status"], confirmed["first_name"], confirmed["last_name"]) == (
        "confirmed",
        "Ann",
        "Lee",
    )
    (record,) = _consents(site, "Ann.Lee@example.com")
    assert (record["confirmed_at"], record["confirm_ip"]) == (
        "2026-11-27T12:00:00+00:00",
        "198.51.100.0",
    )
    assert [m["name"] for m in site.store.memberships(subscriber["id"])] == ["back-care"]

    (welcome,) = site.mails("welcome")
    assert "Hi Ann," in text_of(welcome)
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    again = site.http.post(confirm, timeout=5)
    assert "already confirmed" in again.text
    assert len(site.mails("welcome")) == 1


def test_the_answer_is_the_same_whether_or_not_the_address_is_known(site: Site) -> None:
    site.store.add_subscribers(
        [{"email": "known@example.com", "status": "confirmed"}], None, "t", "t", T0
    )
    known = site.subscribe("known@example.com", ip="203.0.113.20")
    new = site.subscribe("fresh@example.com", ip="198.51.100.20")
    assert known.status_code == new.status_code == 200
    assert known.text.replace("known@", "X@") == new.text.replace("fresh@", "X@")
    assert dict(known.headers).keys() == dict(new.headers).keys()
    # Both got a confirmation email; the known one stays as it was until it confirms.
    assert len(site.mails("confirm")) == 2
    assert site.store.subscriber_by_email("known@example.com")["status"] == "confirmed"


def test_the_honeypot_answers_as_usual_and_records_nothing(site: Site) -> None:
    answer = site.subscribe("bot@example.com", website="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert site.store.subscriber_by_email("bot@example.com") is None
    assert site.mails("confirm") == []


def test_sign_ups_are_limited_per_network(site: Site, clock: Clock) -> None:
    limit = site.ws.settings.subscribers.form_limit_per_hour
    for n in range(limit):
        assert site.subscribe(f"r{n}@example.com", ip=f"203.0.113.{n + 1}").status_code == 200
    # Another address of the same /24: refused; another network: fine.
    refused = site.subscribe("one-more@example.com", ip="203.0.113.200")
    assert refused.status_code == 429 and "Too many sign-ups" in refused.text
    assert site.store.subscriber_by_email("one-more@example.com") is None
    assert site.subscribe("elsewhere@example.com", ip="198.51.100.1").status_code == 200
    clock.now = T0 + dt.timedelta(hours=1, seconds=1)
    assert site.subscribe("later@example.com", ip="203.0.113.99").status_code == 200


def test_one_address_gets_at_most_one_confirmation_in_a_few_minutes(site, clock) -> None:
    assert site.subscribe("victim@example.com", ip="203.0.113.1").status_code == 200
    site.flush()
    clock.now = T0 + dt.timedelta(minutes=2)
    assert site.subscribe("victim@example.com", ip="198.51.100.1").status_code == 200
    assert len(site.mails("confirm")) == 1
    clock.now = T0 + dt.timedelta(minutes=11)
    assert site.subscribe("victim@example.com", ip="192.0.2.1").status_code == 200
    assert len(site.mails("confirm")) == 2


@pytest.mark.parametrize(
    "tamper",
    ["missing token", "forged token", "token from another network", "expired token"],
)
def test_the_form_needs_its_own_fresh_token(site: Site, clock: Clock, tamper: str) -> None:
    fields = site.form(ip="203.0.113.10")
    data = {**fields, "email": "ann@example.com", "consent": "yes"}
    ip = "203.0.113.10"
    if tamper == "missing token":
        del data["form_token"]
    elif tamper == "forged token":
        data["form_token"] = data["form_token"][:-3] + "abc"
    elif tamper == "token from another network":
        ip = "198.51.100.10"
    else:
        clock.now = T0 + dt.timedelta(hours=2, minutes=1)
    answer = site.http.post(
        site.url + "/subscribe", data=data, headers={"X-Forwarded-For": ip}, timeout=5
    )
    assert answer.status_code == 400 and "send it again" in answer.text
    assert 'value="ann@example.com"' in answer.text  # what was typed is kept
    assert site.store.subscriber_by_email("ann@example.com") is None


def test_a_post_from_another_site_is_refused(site: Site) -> None:
    data = {**site.form(), "email": "ann@example.com", "consent": "yes"}
    answer = site.http.post(
        site.url + "/subscribe",
        data=data,
        headers={"X-Forwarded-For": "203.0.113.10", "Origin": "https://evil.example"},
        timeout=5,
    )
    assert answer.status_code == 403
    assert site.store.subscriber_by_email("ann@example.com") is None
    same = site.http.post(
        site.url + "/subscribe",
        data=data,
        headers={"X-Forwarded-For": "203.0.113.10", "Origin": site.url},
        timeout=5,
    )
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"consent": ""}, "Please tick the box"),
        ({"email": "not-an-address"}, "Please enter a valid email address"),
        ({"consent_version": "0"}, "wording of the consent has changed"),
    ],
)
def test_form_mistakes_are_explained_and_nothing_is_stored(site, fields, message) -> None:
    answer = site.subscribe(fields.pop("email", "ann@example.com"), **fields)
    assert answer.status_code == 400
    assert message in answer.text and 'role="alert"' in answer.text
    assert site.store.subscribers() == []


def test_what_people_type_is_escaped_on_every_page(site: Site) -> None:
    evil = '"><script>alert(1)</script>'
    answer = site.subscribe(f"a{evil}@example.com", name=evil)
    assert "<script>" not in answer.text and "&lt;script&gt;" in answer.text
    good = site.subscribe("x@example.com", name=evil)
    assert "<script>" not in good.text
    (mail,) = site.mails("confirm")
    post = site.http.post(link_in(mail, "confirm"), timeout=5)
    assert "<script>" not in post.text
    subscriber = site.store.subscriber_by_email("x@example.com")
    assert subscriber["first_name"].startswith('"><script>')  # stored as typed, shown escaped
    prefs = site.ws.signer.make("preferences", 0, subscriber["id"])
    page = site.http.get(f"{site.url}/p/{prefs}", timeout=5)
    assert "<script>" not in page.text
    (welcome,) = site.mails("welcome")
    assert "<script>" not in welcome.get_body(("html",)).get_content()


# -- confirmation links ---------------------------------------------------------------


def test_an_expired_link_offers_a_new_one_that_works(site: Site, clock: Clock) -> None:
    site.subscribe("ann@example.com")
    (first,) = site.mails("confirm")
    old = link_in(first, "confirm")
    clock.now = T0 + dt.timedelta(days=7, seconds=1)

    page = site.http.get(old, timeout=5)
    assert page.status_code == 410 and "This link has expired" in page.text
    refused = site.http.post(old, timeout=5)
    assert refused.status_code == 410
    assert site.store.subscriber_by_email("ann@example.com")["status"] == "unconfirmed"

    resent = site.http.post(old + "/resend", timeout=5)
    assert resent.status_code == 200 and "A new link is on its way" in resent.text
    mails = site.mails("confirm")
    assert len(mails) == 2 and mails[-1]["To"] == first["To"]
    fresh = link_in(mails[-1], "confirm")
    assert fresh != old
    assert "You are subscribed" in site.http.post(fresh, timeout=5).text
    assert site.store.subscriber_by_email("ann@example.com")["status"] == "confirmed"


def test_a_link_from_before_an_unsubscribe_cannot_resubscribe(site: Site, clock) -> None:
    site.subscribe("ann@example.com")
    site.flush()
    clock.now = T0 + dt.timedelta(minutes=11)
    site.subscribe("ann@example.com")  # asked twice: two links, both valid for a week
    first, second = site.mails("confirm")
    site.http.post(link_in(first, "confirm"), timeout=5)
    ann = site.store.subscriber_by_email("ann@example.com")
    clock.now = T0 + dt.timedelta(hours=1)
    site.store.unsubscribe(ann["id"], None, clock.now, "link")

    clock.now = T0 + dt.timedelta(hours=2)
    stale = site.http.post(link_in(second, "confirm"), timeout=5)
    assert stale.status_code == 410 and "no longer valid" in stale.text
    assert site.store.subscriber(ann["id"])["status"] == "unsubscribed"


@pytest.mark.parametrize("token", ["nonsense", "A" * 40, "x" * 200])
def test_bad_confirmation_tokens_are_not_found(site: Site, token: str) -> None:
    assert site.http.get(f"{site.url}/confirm/{token}", timeout=5).status_code == 404
    assert site.http.post(f"{site.url}/confirm/{token}", timeout=5).status_code == 404
    assert site.http.post(f"{site.url}/confirm/{token}/resend", timeout=5).status_code == 404


# -- unsubscribe and preferences --------------------------------------------------------


def _welcomed(site: Site, address: str = "ann@example.com") -> email.message.EmailMessage:
    site.subscribe(address)
    (mail,) = [m for m in site.mails("confirm") if m["To"].addresses[0].addr_spec == address]
    site.http.post(link_in(mail, "confirm"), timeout=5)
    return next(m for m in site.mails("welcome") if m["To"].addresses[0].addr_spec == address)


def test_one_click_unsubscribe_exactly_as_a_mailbox_provider_sends_it(site: Site) -> None:
    welcome = _welcomed(site)
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    target = urlsplit(re.fullmatch(r"<(.+)>", welcome["List-Unsubscribe"]).group(1))
    # The request Gmail's servers make: a bare POST, form-encoded, no cookie, no Origin.
    body = b"List-Unsubscribe=One-Click"
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(body)),
                "User-Agent": "Mozilla/5.0 (compatible; Google-Unsubscribe)",
            },
        )
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    assert answer.status == 200
    assert answer.getheader("location") is None and answer.getheader("set-cookie") is None
    ann = site.store.subscriber_by_email("ann@example.com")
    assert ann["status"] == "unsubscribed"
    assert site.store.is_suppressed("ann@example.com")
    # Consent records survive the unsubscribe.
    assert _consents(site, "ann@example.com")[0]["confirmed_at"] is not None


def test_the_preference_page_leaves_one_list_or_all_and_resubscribes(site: Site, clock) -> None:
    for name in ("back-care", "running"):
        site.store.create_list(name, "", True, T0)
    site.store.create_list("staff", "", False, T0)
    site.subscribe("ann@example.com", list=["back-care", "running"])
    (mail,) = site.mails("confirm")
    site.http.post(link_in(mail, "confirm"), timeout=5)
    ann = site.store.subscriber_by_email("ann@example.com")
    prefs = f"{site.url}/p/{site.ws.signer.make('preferences', 0, ann['id'])}"
    ids = {row["name"]: row["id"] for row in site.store.lists()}

    page = site.http.get(prefs, timeout=5)
    assert "back-care" in page.text and "running" in page.text and "staff" not in page.text
    assert 'aria-label="Leave back-care"' in page.text

    left = site.http.post(prefs, data={"action": "leave", "list": ids["back-care"]}, timeout=5)
    assert "You left “back-care”" in left.text and 'role="status"' in left.text
    current = [m["name"] for m in site.store.memberships(ann["id"]) if not m["unsubscribed_at"]]
    assert current == ["running"]
    # A private list cannot be joined from the page.
    site.http.post(prefs, data={"action": "join", "list": ids["staff"]}, timeout=5)
    assert "staff" not in [m["name"] for m in site.store.memberships(ann["id"])]
    rejoined = site.http.post(prefs, data={"action": "join", "list": ids["back-care"]}, timeout=5)
    assert "You are on “back-care” again" in rejoined.text

    # All of them: the page's button posts to the one-click address.
    action = re.search(r'<form method="post" action="(/u/[\w-]+)">', rejoined.text).group(1)
    site.http.post(site.url + action, timeout=5)
    assert site.store.subscriber(ann["id"])["status"] == "unsubscribed"

    # Coming back is a new opt-in: consent recorded, confirmed by email.
    clock.now = T0 + dt.timedelta(days=1)
    page = site.http.get(prefs, timeout=5)
    assert "Subscribe again" in page.text
    back = site.http.post(prefs, data={"action": "resubscribe"}, timeout=5)
    assert "We sent a confirmation link" in back.text
    assert site.store.subscriber(ann["id"])["status"] == "unsubscribed"
    newest = site.mails("confirm")[-1]
    assert _consents(site, "ann@example.com")[-1]["source"] == "preferences"
    site.http.post(link_in(newest, "confirm"), timeout=5)
    assert site.store.subscriber(ann["id"])["status"] == "confirmed"
    assert not site.store.is_suppressed("ann@example.com")


def test_preference_page_tokens_are_checked(site: Site) -> None:
    unsubscribe = site.ws.signer.make("unsubscribe", 0, 1)
    assert site.http.get(f"{site.url}/p/{unsubscribe}", timeout=5).status_code == 404
    gone = site.ws.signer.make("preferences", 0, 999)
    page = site.http.get(f"{site.url}/p/{gone}", timeout=5)
    assert page.status_code == 200 and "not on our list" in page.text


def test_an_unsubscribe_in_the_same_second_beats_an_older_confirmation_link(site, clock) -> None:
    site.subscribe("bea@example.com")
    (mail,) = site.mails("confirm")
    bea = site.store.subscriber_by_email("bea@example.com")
    site.store.unsubscribe(bea["id"], None, clock.now, "link")  # the very same second
    stale = site.http.post(link_in(mail, "confirm"), timeout=5)
    assert stale.status_code == 410
    assert site.store.subscriber(bea["id"])["status"] == "unsubscribed"


def test_line_breaks_and_controls_in_a_typed_name_become_single_spaces(site: Site) -> None:
    """A CR/LF in a name would break the To header of every message to the person."""
    site.subscribe("ann@example.com", name=" Ann\r\n\tMarie\x00 \u2028Lee ")
    (mail,) = site.mails("confirm")
    site.http.post(link_in(mail, "confirm"), timeout=5)
    subscriber = site.store.subscriber_by_email("ann@example.com")
    assert (subscriber["first_name"], subscriber["last_name"]) == ("Ann", "Marie Lee")


def test_a_reader_subscribes_confirms_and_leaves_in_a_real_browser(site: Site, browser) -> None:
    from playwright.sync_api import expect

    # Chromium tells the site where a form came from by the page's referrer policy: a policy
    # that hides the referrer from our own site too makes it send "Origin: null", which the
    # cross-site check must never see on our own pages. Every button a reader presses.
    site.store.create_list("back-care", "", True, T0)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(site.url + "/subscribe")
        page.get_by_label("Email address").fill("reader@example.com")
        page.get_by_label("back-care").check()
        page.get_by_label(site.ws.settings.consent.text).check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.locator("main")).to_contain_text("Check your inbox")
        (mail,) = site.mails("confirm")
        page.goto(link_in(mail, "confirm"))
        page.get_by_role("button", name="Yes, subscribe me").click()
        expect(page.locator("main")).to_contain_text("You are subscribed")
        reader = site.store.subscriber_by_email("reader@example.com")
        assert reader["status"] == "confirmed"

        page.goto(f"{site.url}/p/{site.ws.signer.make('preferences', 0, reader['id'])}")
        page.get_by_role("button", name="Leave back-care").click()
        expect(page.locator("main")).to_contain_text("You left “back-care”")
        assert all(m["unsubscribed_at"] for m in site.store.memberships(reader["id"]))
        page.get_by_role("button", name="Unsubscribe from all newsletters").click()
        expect(page.locator("main")).to_contain_text("unsubscribed")
        assert site.store.subscriber(reader["id"])["status"] == "unsubscribed"
    finally:
        context.close()
