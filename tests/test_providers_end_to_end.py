"""A campaign sent through an email API transport end to end, then the provider's bounce."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from clocks import NOW, clock
from conftest import LiveServer
from mail_api import SilentServer
from newsletter import campaigns, jobs
from newsletter.workspace import Workspace
from workspaces import new_campaign

TOKEN = "server-token-e2e"
HOOK_AUTH = ("postmark-hook", "webhook-password")


class FakePostmark:
    """The batch endpoint, as Postmark answers it, remembering every message it took."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        if request.headers.get("X-Postmark-Server-Token") != TOKEN:
            return Response(json.dumps({"ErrorCode": 10, "Message": "Bad token"}), status=401)
        batch = json.loads(request.get_data())
        answers = []
        with self.lock:
            for message in batch:
                self.messages.append(message)
                answers.append(
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": f"pm-{len(self.messages)}",
                        "To": message["To"],
                    }
                )
        return Response(json.dumps(answers), status=200, content_type="application/json")


@pytest.fixture
def postmark_ws(ws_dir: Path, httpserver: HTTPServer):
    fake = FakePostmark()
    httpserver.expect_request("/email/batch", method="POST").respond_with_handler(fake)
    ws = Workspace.open(
        ws_dir,
        env={
            "NEWSLETTER_DELIVERY__TRANSPORT": "postmark",
            "NEWSLETTER_DELIVERY__CONCURRENCY": "2",
            "NEWSLETTER_POSTMARK__API_BASE": httpserver.url_for("/").rstrip("/"),
            "NEWSLETTER_POSTMARK_SERVER_TOKEN": TOKEN,
            "NEWSLETTER_POSTMARK_WEBHOOK_USER": HOOK_AUTH[0],
            "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": HOOK_AUTH[1],
        },
    )
    yield ws, fake
    ws.close()


def test_a_campaign_through_postmark_reaches_everyone_once_and_bounces_come_back(
    postmark_ws,
) -> None:
    ws, fake = postmark_ws
    store = ws.store
    campaign_id = new_campaign(ws, NOW, "Hello")

    progress = jobs.send_campaign(ws, store, campaign_id, clock)

    confirmed = store.subscribers("confirmed")
    assert progress.finished and progress.sent == len(confirmed) == 5
    received = Counter(m["To"].rpartition("<")[2].rstrip(">") for m in fake.messages)
    assert received == Counter(s["email"] for s in confirmed)
    assert {m["MessageStream"] for m in fake.messages} == {"broadcast"}
    by_key = {m["Metadata"]["newsletter_delivery"]: m for m in fake.messages}
    provider_ids = set()
    for subscriber in confirmed:
        row = store.delivery(campaign_id, subscriber["id"])
        key = f"c{campaign_id}-d{row['id']}"
        assert row["status"] == "sent"
        # The id Postmark gave is on the row the message was sent for.
        message = by_key[key]
        assert subscriber["email"] in message["To"]
        assert row["provider_id"].startswith("pm-")
        provider_ids.add(row["provider_id"])
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["Message-ID"] == row["message_id"]
    assert len(provider_ids) == 5

    # Postmark reports a hard bounce for one of them, found by the id it gave.
    victim = confirmed[0]
    row = store.delivery(campaign_id, victim["id"])
    server = LiveServer(ws, clock=clock)  # the webhook arrives on the test's clock
    server.start()
    try:
        answer = requests.post(
            server.url + "/webhooks/postmark",
            json={
                "RecordType": "Bounce",
                "ID": 4323372036854775807,
                "Type": "HardBounce",
                "MessageID": row["provider_id"],
                "Email": victim["email"],
                "BouncedAt": "2026-11-27T09:30:00Z",
                "Details": "smtp;550 5.1.1 The email account does not exist",
                "Inactive": True,
            },
            auth=HOOK_AUTH,
            timeout=10,
        )
    finally:
        server.stop()
    assert answer.status_code == 200
    assert store.subscriber(victim["id"])["status"] == "bounced"
    assert store.delivery(campaign_id, victim["id"])["provider_status"] == "bounce"
    assert store.campaign_stats(campaign_id)["bounces_unique"] == 1


def test_a_request_left_unanswered_is_in_doubt_never_resent_blindly(
    ws_dir: Path, httpserver: HTTPServer
) -> None:
    def open_ws(api_base: str) -> Workspace:
        return Workspace.open(
            ws_dir,
            env={
                "NEWSLETTER_DELIVERY__TRANSPORT": "sendgrid",
                "NEWSLETTER_SENDGRID__API_BASE": api_base,
                "NEWSLETTER_SENDGRID__TIMEOUT": "0.3",
                "NEWSLETTER_SENDGRID_API_KEY": "SG.key",
            },
        )

    with SilentServer() as silent:
        ws = open_ws(silent.url)
        store = ws.store
        campaign_id = new_campaign(ws, NOW, "Hello")
        progress = jobs.send_campaign(ws, store, campaign_id, clock)
        ws.close()
    # The request went out and no answer came: the campaign pauses, the row is in doubt.
    assert "no answer" in (progress.paused_reason or "")
    assert silent.requests == 1
    ws = open_ws(httpserver.url_for("/").rstrip("/"))
    store = ws.store
    counts = store.delivery_counts(campaign_id)
    assert counts["in_doubt"] == 1 and counts["sending"] == 0 and counts["sent"] == 0
    (hung,) = store._rows(
        "SELECT * FROM deliveries WHERE campaign_id = ? AND status = 'in_doubt'", [campaign_id]
    )

    received: list[str] = []

    def accept(request: Request) -> Response:
        received.append(json.loads(request.get_data())["personalizations"][0]["to"][0]["email"])
        return Response(status=202, headers={"X-Message-Id": f"sg-{len(received)}"})

    httpserver.expect_request("/v3/mail/send").respond_with_handler(accept)
    campaigns.resume(store, campaign_id, NOW)
    progress = jobs.send_campaign(ws, store, campaign_id, clock)
    hung_email = store.subscriber(hung["subscriber_id"])["email"]
    assert len(received) == 4 and hung_email not in received
    counts = store.delivery_counts(campaign_id)
    assert counts["in_doubt"] == 1 and counts["sent"] == 4
    ws.close()
