"""The staff dashboard end to end in headless Chromium against the live server.

One signed-in browser page per test, one browser for the session; mail goes
to a loopback SMTP sink, and opens and clicks are real requests to the
tracking endpoints.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from pathlib import Path

import requests
import yaml
from playwright.sync_api import expect

from newsletter import jobs, subscribers

SCRIPT_TITLE = "<script>alert('x')</script> Stretching at work"
FORMULA_TITLE = '=HYPERLINK("http://evil.example") Knee care'


def _article(folder: Path, slug: str, title: str, when: str) -> None:
    front = yaml.safe_dump(
        {
            "title": title,
            "date": when,
            "url": f"https://clinic.example.com/post/{slug}",
            "summary": f"About {slug}.",
        }
    )
    (folder / f"{when}-{slug}.md").write_text(
        f"---\n{front}---\n\nA paragraph about it, with "
        "[a link](https://clinic.example.com/more).\n",
        encoding="utf-8",
    )


def _fill_workspace(dashboard) -> None:
    ws = dashboard.ws
    folder = ws.root / "articles"
    for old in folder.glob("*.md"):
        old.unlink()
    _article(folder, "stretching", SCRIPT_TITLE, "2026-11-20")
    _article(folder, "knee", FORMULA_TITLE, "2026-11-21")
    now = dt.datetime.now(dt.UTC)
    results = jobs.fetch_sources(ws, ws.store, now)
    assert [r.errors for r in results] == [[]]
    subscribers.import_file(ws.store, ws.root / "subscribers" / "example.csv", now)


def _confirmed() -> int:
    return 5  # confirmed rows of the example CSV


def test_campaign_from_new_articles_to_results(admin_page, dashboard, cli) -> None:
    page, url = admin_page, dashboard.url
    _fill_workspace(dashboard)
    dialogs: list[str] = []
    # The page's own questions (Send to 5 confirmed subscribers now?) are answered yes;
    # any other dialog would be a script from a title, and is recorded.
    page.on(
        "dialog",
        lambda d: d.accept() if d.type == "confirm" else (dialogs.append(d.message), d.dismiss()),
    )

    # Home: the new articles are waiting; a title with markup is shown as text.
    page.goto(url + "/")
    expect(page.get_by_text(SCRIPT_TITLE)).to_be_visible()
    dashboard.screenshot(page, "home")
    page.goto(url + "/articles")
    expect(page.get_by_role("link", name=SCRIPT_TITLE)).to_be_visible()
    dashboard.screenshot(page, "articles")

    # Create from the new articles.
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("November at the clinic")
    page.get_by_label("Preheader", exact=False).fill("Two new articles")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/1$"))
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    expect(page.get_by_text(f"{_confirmed()} subscribers match now")).to_be_visible()

    # Preview at both widths, rendered for a real subscriber.
    desktop = page.frame_locator("iframe.desktop")
    expect(desktop.get_by_text(SCRIPT_TITLE).first).to_be_visible()
    phone = page.locator("iframe.phone")
    assert phone.bounding_box()["width"] == 375
    expect(page.frame_locator("iframe.phone").get_by_text(SCRIPT_TITLE).first).to_be_visible()
    page.get_by_label("As subscriber").fill("jose.garcia@example.net")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("Rendered for jose.garcia@example.net")).to_be_visible()
    expect(desktop.get_by_text("José").first).to_be_visible()
    dashboard.screenshot(page, "campaign-draft")
    dashboard.screenshot(page, "campaign-preview", part="section[aria-labelledby=h-preview]")

    # A test message to any address reaches the SMTP sink, marked and untracked.
    page.get_by_label("To any address").fill("qa@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test message sent to qa@example.org")
    assert dashboard.sink.recipients() == ["qa@example.org"]
    test_mail = email.message_from_bytes(
        dashboard.sink.messages[0].data, policy=email.policy.default
    )
    assert test_mail["Subject"] == "[TEST] November at the clinic"
    assert "/o/" not in test_mail.get_body(("html",)).get_content()

    # Schedule for tomorrow, Berlin time; home lists it as the next send.
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    page.get_by_label("Date", exact=True).fill(tomorrow)
    page.get_by_label("Time", exact=True).fill("09:30")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("scheduled")
    expect(page.get_by_role("status")).to_contain_text(f"{tomorrow} 09:30 Europe/Berlin")
    page.goto(url + "/")
    expect(page.get_by_role("link", name="November at the clinic")).to_be_visible()

    # The time comes: the scheduler's send job runs (its clock injected, no waiting).
    due = dt.datetime.fromisoformat(dashboard.ws.store.campaign(1)["scheduled_at"])
    jobs.send_due(dashboard.ws, clock=lambda: due + dt.timedelta(minutes=1))
    page.goto(url + "/campaigns/1")
    expect(page.locator("[data-status]")).to_have_text("sent")
    expect(page.locator("[data-sent]")).to_have_attribute("data-sent", str(_confirmed()))
    assert len(dashboard.sink.messages) == 1 + _confirmed()

    # Results before anyone reads the mail.
    page.goto(url + "/campaigns/1/results")
    expect(page.locator('[data-stat="sent"]')).to_have_text(str(_confirmed()))
    expect(page.locator('[data-stat="opens_unique"]')).to_have_text("0")
    expect(page.locator("[data-chart]")).to_have_text("No opens or clicks yet.")
    # The title with markup shows as text in the articles table and beside its link.
    expect(page.get_by_role("cell", name=SCRIPT_TITLE, exact=True)).to_have_count(2)

    # A second campaign from a chosen article, sent now: it runs in the background
    # and the page follows it to the end.
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Knee care again")
    page.get_by_role("checkbox", name=FORMULA_TITLE).check()
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/2$"))
    page.get_by_role("button", name="Send now").click()
    expect(page.locator("[data-status]")).to_have_text("sent", timeout=30_000)
    expect(page.locator("[data-sent]")).to_have_attribute("data-sent", str(_confirmed()))
    dashboard.screenshot(page, "campaign-sent")
    assert len(dashboard.sink.messages) == 1 + 2 * _confirmed()
    assert dashboard.ws.store.campaign(2)["article_ids"] == [
        a["id"] for a in dashboard.ws.store.articles() if a["title"] == FORMULA_TITLE
    ]

    # A reader opens the second campaign's mail (the pixel) and clicks a link. (The first
    # went out at the scheduler's injected time, tomorrow: a reading now would come before it.)
    page.goto(url + "/campaigns/2/results")
    expect(page.locator("[data-chart]")).to_have_text("No opens or clicks yet.")
    mail = email.message_from_bytes(
        dashboard.sink.messages[1 + _confirmed()].data, policy=email.policy.default
    )
    html = mail.get_body(("html",)).get_content()
    pixel = re.search(r'<img src="([^"]+/o/[\w-]+\.gif)"', html).group(1)
    click = re.search(r'href="([^"]+/c/[\w-]+)"', html).group(1)
    assert requests.get(pixel, timeout=10).status_code == 200
    assert requests.get(click, timeout=10, allow_redirects=False).status_code == 302

    # The numbers and the chart change without a reload.
    expect(page.locator('[data-stat="opens_unique"]')).to_have_text("1", timeout=20_000)
    expect(page.locator('[data-stat="clicks_unique"]')).to_have_text("1", timeout=20_000)
    expect(page.locator("[data-chart]")).to_have_attribute(
        "data-series", re.compile("opens"), timeout=20_000
    )
    expect(page.locator("[data-chart] canvas")).to_have_count(1)
    dashboard.screenshot(page, "results")

    # The numbers are those of `newsletter stats`, human-unique and per class included.
    report = json.loads(cli("stats", "2", "--json").stdout)[0]
    for key in ("opens_human_unique", "clicks_human_unique", "delivered", "opens_machine"):
        expect(page.locator(f'[data-stat="{key}"]')).to_have_text(str(report[key]))
    expect(page.locator('[data-stat="human_open_rate"]')).to_have_text(
        f"{report['human_open_rate']:.1%}"
    )
    classes = {"human", "machine", "unknown"}
    series = page.locator("[data-chart]").get_attribute("data-series").split(",")
    assert set(series) == {f"{kind} {cls}" for kind in ("opens", "clicks") for cls in classes}

    # The CSV exports are the tables of `stats --csv`, spreadsheet-safe: no cell starts a formula.
    for table in ("campaigns", "links", "articles", "hourly"):
        export = page.request.get(f"{url}/campaigns/2/{table}.csv")
        assert export.headers["content-type"].startswith("text/csv")
        # (The CLI's output is read as text, with its line ends made plain.)
        same = cli("stats", "2", "--csv", "--table", table).stdout.splitlines()
        assert export.text().splitlines() == same
    articles_csv = page.request.get(url + "/campaigns/2/articles.csv").text()
    assert "'=HYPERLINK" in articles_csv and ",=" not in articles_csv
    assert page.request.get(url + "/campaigns/2/nothing.csv").status == 404

    page.goto(url + "/campaigns")
    expect(page.get_by_role("cell", name="20.0%").first).to_be_visible()
    dashboard.screenshot(page, "campaigns")
    page.goto(url + "/")
    expect(page.get_by_role("link", name="Knee care again")).to_be_visible()
    dashboard.screenshot(page, "home-with-campaigns")
    assert dialogs == []  # no script from a title ever ran


def test_signed_out_requests_go_to_sign_in(browser, dashboard) -> None:
    url = dashboard.url
    answer = requests.get(url + "/subscribers?status=confirmed", allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        "/admin/sign-in?next=%2Fadmin%2Fsubscribers%3Fstatus%3Dconfirmed"
    )
    polled = requests.get(
        url + "/campaigns/1/progress",
        headers={"HX-Request": "true", "HX-Current-URL": url + "/campaigns/1"},
        allow_redirects=False,
        timeout=10,
    )
    assert polled.status_code == 204
    assert polled.headers["HX-Redirect"] == "/admin/sign-in?next=%2Fadmin%2Fcampaigns%2F1"
    posted = requests.post(url + "/campaigns/new", data={"subject": "x"}, allow_redirects=False)
    assert posted.status_code == 303 and "/admin/sign-in" in posted.headers["location"]

    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(url + "/subscribers?status=confirmed")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        dashboard.screenshot(page, "sign-in")
        page.get_by_label("Email address").fill("admin@example.com")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong email address or password.")
        page.get_by_label("Password").fill("a long test passphrase")
        page.get_by_role("button", name="Sign in").click()
        # Back where the signed-out request wanted to go.
        page.wait_for_url(url + "/subscribers?status=confirmed")
        cookie = next(c for c in context.cookies() if c["name"] == "nl_staff")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/admin"
        # Signing out ends the session on the server, not only in this browser.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r".*/admin/sign-in$"))
        reused = requests.get(
            url + "/", cookies={"nl_staff": cookie["value"]}, allow_redirects=False, timeout=10
        )
        assert reused.status_code == 303
    finally:
        context.close()


def test_post_without_csrf_token_is_refused(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    _fill_workspace(dashboard)
    # The browser's own cookie goes along, as in a cross-site form post; no token.
    refused = page.request.post(url + "/campaigns/new", form={"subject": "Forged"})
    assert refused.status == 403
    wrong = page.request.post(url + "/campaigns/new", form={"subject": "Forged", "csrf": "x"})
    assert wrong.status == 403
    assert dashboard.ws.store.campaigns() == []
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    accepted = page.request.post(
        url + "/campaigns/new",
        form={"subject": "Genuine", "csrf": token, "articles_mode": "new", "template": "auto"},
    )
    assert accepted.ok
    assert [c["subject"] for c in dashboard.ws.store.campaigns()] == ["Genuine"]


def test_sign_in_is_rate_limited(dashboard) -> None:
    session = requests.Session()
    statuses = []
    for _ in range(10):
        form = session.get(dashboard.url + "/sign-in", timeout=10).text
        token = re.search(r'name="token" value="([^"]+)"', form).group(1)
        answer = session.post(
            dashboard.url + "/sign-in",
            data={"email": "admin@example.com", "password": "guess", "token": token},
            allow_redirects=False,
            timeout=10,
        )
        statuses.append(answer.status_code)
    assert statuses[:8] == [401] * 8
    assert statuses[8:] == [429, 429]
    # A sign-in form posted without its pre-session cookie is refused.
    bare = requests.post(
        dashboard.url + "/sign-in",
        data={"email": "editor@example.com", "password": "a long test passphrase", "token": "x"},
        allow_redirects=False,
        timeout=10,
    )
    assert bare.status_code == 403 and "nl_staff" not in bare.cookies


def test_subscribers_search_import_and_remove(admin_page, dashboard, tmp_path: Path) -> None:
    page, url = admin_page, dashboard.url
    _fill_workspace(dashboard)
    page.goto(url + "/subscribers")
    page.get_by_label("Search").fill("garcía")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("1 subscriber", exact=True)).to_be_visible()
    page.get_by_label("Search").fill("")
    page.get_by_label("Status").select_option("unconfirmed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name="sam.okafor@example.com")).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_label("Tag").fill("running")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("2 subscribers", exact=True)).to_be_visible()
    dashboard.screenshot(page, "subscribers")

    upload = tmp_path / "members.csv"
    upload.write_text(
        "E-Mail,Vorname,Stadt\nnew.one@example.com,Nia,Springfield\nnot-an-address,Bad,X\n",
        encoding="utf-8",
    )
    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_role("cell", name="Extra field “Stadt”", exact=True)).to_be_visible()
    expect(page.get_by_text("members.csv:3")).to_be_visible()
    # "Vorname" is not recognised; read it as the first name, as --map would.
    page.get_by_label("Read column Vorname as").select_option("Vorname=first_name")
    page.get_by_role("button", name="Check again with these columns").click()
    expect(page.get_by_role("cell", name="First name", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="Nia", exact=True)).to_be_visible()
    dashboard.screenshot(page, "import-preview")
    assert dashboard.ws.store.subscriber_by_email("new.one@example.com") is None
    page.get_by_role("button", name="Import 1 rows").click()
    expect(page.get_by_role("status")).to_contain_text("1 added")
    added = dashboard.ws.store.subscriber_by_email("new.one@example.com")
    assert (added["status"], added["first_name"]) == ("unconfirmed", "Nia")
    assert added["attributes"] == {"Stadt": "Springfield"}

    alice = dashboard.ws.store.subscriber_by_email("alice.moreno@example.com")
    page.goto(f"{url}/subscribers/{alice['id']}")
    expect(page.get_by_role("heading", name="Consent record")).to_be_visible()
    expect(page.get_by_text("Added by staff import from example.csv").first).to_be_visible()
    # Unsubscribing and erasing ask first (tests/test_dashboard_people.py): say yes.
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("status")).to_have_text("alice.moreno@example.com: unsubscribed.")
    assert dashboard.ws.store.subscriber(alice["id"])["status"] == "unsubscribed"
    page.get_by_role("button", name="Delete (erase this person)").click()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    assert dashboard.ws.store.subscriber(alice["id"]) is None


def test_settings_for_admins_only_without_secrets(browser, admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    page.goto(url + "/settings")
    expect(page.get_by_role("heading", name="[delivery]")).to_be_visible()
    body = page.content()
    assert dashboard.ws.secrets.secret_key not in body
    expect(page.get_by_role("row", name="secret_key set")).to_be_visible()
    dashboard.screenshot(page, "settings")
    page.goto(url + "/settings/check")
    page.get_by_role("button", name="Test the connection").click()
    expect(page.locator("#transport-ok")).to_contain_text(
        f"smtp 127.0.0.1:{dashboard.sink.port}: connected"
    )
    dashboard.screenshot(page, "check")
    # A setting that works but will hurt is pointed out, as `config check` does.
    toml = dashboard.ws.root / "newsletter.toml"
    assert "\nport = 8080\n" in toml.read_text()
    toml.write_text(toml.read_text().replace("\nport = 8080\n", "\nport = 9000\n"))
    page.goto(url + "/settings/check")
    expect(page.locator("#warnings")).to_contain_text("[web] port 9000")
    # SMTP to this machine with local links: allowed, but the relay is pointed out, in
    # words for people (no command or flag on the page).
    assert '\ntransport = "outbox"\n' in toml.read_text()
    toml.write_text(toml.read_text().replace('\ntransport = "outbox"\n', '\ntransport = "smtp"\n'))
    page.goto(url + "/settings/check")
    relay = page.locator("#warnings li", has_text="(smtp.host)")
    expect(relay).to_contain_text("only work if the mail never leaves this machine")
    assert "newsletter " not in relay.inner_text() and " --" not in relay.inner_text()

    context = browser.new_context()
    editor = context.new_page()
    try:
        dashboard.sign_in(editor, "editor@example.com")
        expect(editor.get_by_role("link", name="Settings")).to_have_count(0)
        answer = editor.goto(url + "/settings")
        assert answer.status == 403
    finally:
        context.close()


def test_pause_resume_cancel_and_retry_failed(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    _fill_workspace(dashboard)
    # The server refuses one message (not the address) until told otherwise.
    dashboard.sink.handler.data_replies["zoe.brennan@example.org"] = "554 5.7.1 Looks like spam"
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Refused once")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/1$"))
    page.get_by_role("button", name="Send now").click()
    expect(page.locator("[data-status]")).to_have_text("sent", timeout=30_000)
    expect(page.locator("#progress")).to_contain_text("1 failed")
    assert len(dashboard.sink.messages) == _confirmed() - 1

    dashboard.sink.handler.data_replies.clear()
    page.get_by_role("button", name="Retry failed").click()
    expect(page.get_by_role("status")).to_have_text("1 deliveries queued again.")
    expect(page.locator("[data-sent]")).to_have_attribute(
        "data-sent", str(_confirmed()), timeout=30_000
    )
    expect(page.locator("[data-status]")).to_have_text("sent")
    assert "zoe.brennan@example.org" in dashboard.sink.recipients()

    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Changed my mind")
    page.get_by_role("checkbox", name=SCRIPT_TITLE).check()
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/2$"))
    # The dashboard refuses a time before the real now: a date a year from today.
    next_year = dt.date.today() + dt.timedelta(days=365)
    page.get_by_label("Date", exact=True).fill(next_year.isoformat())
    page.get_by_label("Time", exact=True).fill("08:00")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("scheduled")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("[data-status]")).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Resumed: now scheduled.")
    page.get_by_role("button", name="Unschedule").click()
    expect(page.locator("[data-status]")).to_have_text("draft")
    assert dashboard.ws.store.campaign(2)["scheduled_at"] is None
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator("[data-status]")).to_have_text("cancelled")
    # A cancelled campaign cannot be sent: one clear line, nothing changed.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = page.request.post(url + "/campaigns/2/send", form={"csrf": token})
    assert refused.status == 400
    assert "cannot send a campaign that is cancelled" in refused.text()
    assert dashboard.ws.store.campaign(2)["status"] == "cancelled"
    # Each of these buttons asked first.
    assert asked == [
        f"Send to {_confirmed()} confirmed subscribers now?",
        "Queue the deliveries that did not go out again, and send them?",
        "Unschedule campaign 2? It goes back to being a draft.",
        "Cancel campaign 2? Nothing more of it is sent.",
    ]


def test_creating_a_campaign_names_articles_that_link_to_their_own_page(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    ws = dashboard.ws
    saved = Path(__file__).parent / "data" / "long-drives.txt"
    (ws.root / "articles" / "long-drives.txt").write_text(saved.read_text())
    jobs.fetch_sources(ws, ws.store, dt.datetime.now(dt.UTC))
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("From the clinic")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    status = page.get_by_role("status")
    expect(status).to_contain_text("link to their page on this server")
    expect(status).to_contain_text("Does Your Back Hate Long Drives?")
    # The sample articles have addresses of their own: not named.
    expect(status).not_to_contain_text("Neck Pain at the Desk")


def test_an_announcement_of_several_articles_is_said_to_go_out_as_a_digest(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    _fill_workspace(dashboard)
    titles = [a["title"] for a in dashboard.ws.store.articles()]
    assert len(titles) >= 2
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Two articles")
    page.get_by_label("Design").select_option("announcement")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    status = page.get_by_role("status")
    expect(status).to_contain_text("announcement design shows one article")
    expect(status).to_contain_text(f"these {len(titles)} articles go out together as a digest")
    campaign = dashboard.ws.store.campaigns()[-1]
    assert campaign["template"] == "digest"

    # One article: an announcement, and nothing to say about it.
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("One article")
    # The first draft left the articles new, so all are ticked: keep only the first.
    for title in titles[1:]:
        page.get_by_role("checkbox", name=title).uncheck()
    page.get_by_label("Design").select_option("announcement")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    expect(page.get_by_role("status")).not_to_contain_text("digest")
    assert dashboard.ws.store.campaigns()[-1]["template"] == "announcement"
