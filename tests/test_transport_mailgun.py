"""The Mailgun transport against a local server that checks messages.mime requests."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mail_api import envelope
from newsletter.config import Secrets, collect, transport_problems
from newsletter.errors import AccountError, ConfigError
from newsletter.transports import PERMANENT, SENT, TRANSIENT, open_transport
from newsletter.transports.mailgun import MailgunTransport

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.clinic.example.com"
NOW = 1_800_000_000.0


def transport(server: HTTPServer) -> MailgunTransport:
    return MailgunTransport(
        KEY, DOMAIN, api_base=server.url_for("/").rstrip("/"), clock=lambda: NOW
    )


def test_the_mime_message_is_posted_with_the_delivery_variable(httpserver: HTTPServer) -> None:
    seen: list[dict] = []

    def handler(request: Request) -> Response:
        seen.append(
            {
                "auth": request.headers.get("Authorization"),
                "type": request.mimetype,
                "form": request.form.to_dict(flat=False),
                "message": request.files["message"].read(),
            }
        )
        return Response(
            '{"id": "<20261127.1@mg.clinic.example.com>", "message": "Queued. Thank you."}',
            status=200,
            content_type="application/json",
        )

    httpserver.expect_request(f"/v3/{DOMAIN}/messages.mime", method="POST").respond_with_handler(
        handler
    )
    sender = transport(httpserver)
    message = envelope("c2-d7", "bo@example.com", "Bo")
    outcomes = sender.send_batch([message])
    sender.close()

    assert [(o.status, o.provider_id) for o in outcomes] == [
        (SENT, "20261127.1@mg.clinic.example.com")
    ]
    (request,) = seen
    assert request["auth"] == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert request["type"] == "multipart/form-data"
    assert request["form"] == {
        "to": ["bo@example.com"],
        "v:newsletter_delivery": ["c2-d7"],
        "o:tracking": ["no"],
    }
    # The message goes byte for byte as rendered, one-click headers included.
    assert request["message"] == message.data
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in request["message"]


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"Retry-After": "17"}, 17),
        (429, {"X-RateLimit-Reset": str(int(NOW * 1000) + 5000)}, 5),
        (500, {}, None),
        (404, {}, None),  # Mailgun's own advice: a 404 can pass; retry
    ],
)
def test_rate_limits_server_errors_and_404_are_transient(
    httpserver: HTTPServer, status: int, headers: dict, retry_after: float | None
) -> None:
    httpserver.expect_request(f"/v3/{DOMAIN}/messages.mime").respond_with_json(
        {"message": "slow down"}, status=status, headers=headers
    )
    sender = transport(httpserver)
    (outcome,) = sender.send_batch([envelope()])
    sender.close()
    assert outcome.status == TRANSIENT
    assert outcome.retry_after == retry_after
    assert f"HTTP {status}" in outcome.error


def test_a_bad_key_pauses_and_a_bad_address_fails_only_that_message(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(f"/v3/{DOMAIN}/messages.mime").respond_with_data(
        "Forbidden", status=401
    )
    sender = transport(httpserver)
    with pytest.raises(AccountError, match="NEWSLETTER_MAILGUN_API_KEY"):
        sender.send_batch([envelope()])
    httpserver.clear()
    httpserver.expect_request(f"/v3/{DOMAIN}/messages.mime").respond_with_json(
        {"message": "to parameter is not a valid address. please check documentation"},
        status=400,
    )
    (outcome,) = sender.send_batch([envelope()])
    assert outcome.status == PERMANENT
    sender.close()


def test_settings_choose_the_eu_endpoint_and_require_a_domain(tmp_path: Path) -> None:
    settings, problems = collect(
        {"delivery": {"transport": "mailgun"}, "mailgun": {"domain": DOMAIN, "region": "eu"}},
        {},
        "test",
    )
    assert not [p for p in problems if p.startswith("mailgun")]
    sender = open_transport(settings, Secrets(mailgun_api_key=KEY), tmp_path)
    assert sender.url == f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages.mime"
    sender.close()
    public = {"base_url": "https://news.clinic.example.com"}
    settings, _ = collect({"delivery": {"transport": "mailgun"}, "site": public}, {}, "test")
    problems = transport_problems(settings, Secrets(mailgun_api_key=KEY))
    assert problems == ["mailgun.domain: set the sending domain, e.g. mg.example.com"]
    with pytest.raises(ConfigError, match="mailgun.domain"):
        open_transport(settings, Secrets(mailgun_api_key=KEY), tmp_path)
    with pytest.raises(ConfigError, match="NEWSLETTER_MAILGUN_API_KEY"):
        open_transport(settings, Secrets(), tmp_path)
