"""After a person is erased, their old links and late provider reports must not re-identify them.

The attack: a forwarded email (or a mail scanner) keeps opening and clicking an
erased person's links for months; a provider reports a late bounce. Each would
otherwise store the erased id with an address and a user agent again.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import requests

from conftest import LiveServer
from newsletter import campaigns, jobs
from newsletter.mail import Urls
from newsletter.workspace import Workspace

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0 ErasedPersonsLaptop"
WEBHOOK = ("postmark-hook", "a long webhook password")


def test_old_tokens_of_an_erased_person_store_nothing_that_names_them(ws_dir) -> None:
    env = {
        "NEWSLETTER_POSTMARK_WEBHOOK_USER": WEBHOOK[0],
        "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": WEBHOOK[1],
        "NEWSLETTER_TRACKING__TRUNCATE_IP": "false",
    }
    ws = Workspace.open(ws_dir, env=env)
    store = ws.store
    jobs.fetch_sources(ws, store, NOW)
    jobs.import_subscriber_folder(ws, store, NOW)
    campaign_id = campaigns.create(store, ws.settings, "Hi", "new", None, None, NOW)
    jobs.send_campaign(ws, store, campaign_id, lambda: NOW)
    erased, kept = store.subscribers("confirmed")[:2]
    address = erased["email"]
    urls = Urls(ws.settings.site.base_url, ws.signer)
    link = next(iter(store.links(campaign_id).values()))
    store.delete_subscriber(erased["id"], NOW)

    server = LiveServer(ws)
    server.start()
    try:

        def hit(url: str, method: str = "GET") -> requests.Response:
            return requests.request(
                method,
                server.url + urlsplit(url).path,
                headers={"User-Agent": AGENT},
                allow_redirects=False,
                timeout=10,
            )

        for who in (erased["id"], kept["id"]):
            assert hit(urls.open(campaign_id, who)).status_code == 200
            assert hit(urls.click(campaign_id, who, link)).status_code == 302
        # The erased person's pages show nothing of them and change nothing.
        assert hit(urls.view(campaign_id, erased["id"])).status_code == 404
        gone = hit(urls.unsubscribe(campaign_id, erased["id"]), "POST")
        assert gone.status_code == 200 and address not in gone.text
        # A provider's late report about the erased address.
        report = {
            "RecordType": "Bounce",
            "ID": 4711,
            "Type": "HardBounce",
            "Email": address,
            "BouncedAt": NOW.isoformat(),
            "Details": f"smtp;550 5.1.1 <{address}> no such user",
        }
        answer = requests.post(
            server.url + "/webhooks/postmark", json=report, auth=WEBHOOK, timeout=10
        )
        assert answer.status_code == 200
    finally:
        server.stop()  # the event writer stores everything it answered

    rows = store._rows(
        "SELECT kind, subscriber_id, ip, user_agent, recipient, raw, detail FROM events "
        "WHERE campaign_id = ? OR provider IS NOT NULL ORDER BY id",
        [campaign_id],
    )
    ws.close()
    mine = [r for r in rows if r["user_agent"] == AGENT]
    # The person kept is tracked as before: their open, click and the click's view.
    assert {r["kind"] for r in mine} == {"open", "click", "view"}
    assert {r["subscriber_id"] for r in mine} == {kept["id"]}
    # The erased person's events are counted, and name nobody.
    anonymous = [r for r in rows if r["kind"] in ("open", "click", "view") and r not in mine]
    assert {r["kind"] for r in anonymous} == {"open", "click", "view"}
    for row in anonymous:
        assert row["subscriber_id"] is None and row["ip"] is None and row["user_agent"] is None
    for row in rows:
        assert erased["id"] != row["subscriber_id"]
        assert address not in " ".join(str(v) for v in row.values())
    bounce = [r for r in rows if r["kind"] == "bounce"]
    assert len(bounce) == 1 and bounce[0]["recipient"] is None
