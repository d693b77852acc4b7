"""The SendGrid transport against a local server that checks v3 Mail Send requests."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import Cli, free_port
from mail_api import SENDER, SilentServer, envelope
from newsletter.config import Secrets, Settings, collect
from newsletter.errors import AccountError, ConfigError, InDoubtError
from newsletter.transports import PERMANENT, SENT, TRANSIENT, open_transport
from newsletter.transports.sendgrid import SendGridTransport

KEY = "SG.test-key"
NOW = 1_800_000_000.0


def transport(server: HTTPServer, **options) -> SendGridTransport:
    return SendGridTransport(
        KEY, api_base=server.url_for("/").rstrip("/"), clock=lambda: NOW, **options
    )


def test_one_message_is_posted_as_sendgrid_documents_it(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(status=202, headers={"X-Message-Id": "14c5d75ce93.dfd"})

    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(handler)
    sender = transport(httpserver)
    outcomes = sender.send_batch([envelope("c3-d41", "ann@example.com", "Ann Lee")])
    sender.close()

    assert [(o.key, o.status, o.provider_id) for o in outcomes] == [
        ("c3-d41", SENT, "14c5d75ce93.dfd")
    ]
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {
        "personalizations": [
            {
                "to": [{"email": "ann@example.com", "name": "Ann Lee"}],
                "custom_args": {"newsletter_delivery": "c3-d41"},
                "headers": {
                    "Message-ID": "<c3-d41.1@clinic.example.com>",
                    "List-Unsubscribe": "<https://news.example.com/u/token-c3-d41>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "List-Id": "Riverbend news <news.clinic.example.com>",
                    "Feedback-ID": "c1:newsletter",
                },
            }
        ],
        "from": {"email": SENDER, "name": "Riverbend"},
        "reply_to": {"email": "frontdesk@clinic.example.com"},
        "subject": "New on the blog",
        "content": [
            {"type": "text/plain", "value": "Hello Ann Lee"},
            {"type": "text/html", "value": "<p>Hello Ann Lee</p>"},
        ],
        "tracking_settings": {
            "click_tracking": {"enable": False, "enable_text": False},
            "open_tracking": {"enable": False},
            "subscription_tracking": {"enable": False},
        },
    }


def test_429_is_transient_until_the_rate_limit_resets(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/mail/send").respond_with_json(
        {"errors": [{"field": None, "message": "too many requests"}]},
        status=429,
        headers={
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(NOW) + 42),
        },
    )
    sender = transport(httpserver)
    (outcome,) = sender.send_batch([envelope()])
    sender.close()
    assert outcome.status == TRANSIENT
    assert outcome.retry_after == 42
    assert "too many requests" in outcome.error


def test_server_errors_are_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/mail/send").respond_with_data("upstream down", status=503)
    sender = transport(httpserver)
    (outcome,) = sender.send_batch([envelope()])
    sender.close()
    assert outcome.status == TRANSIENT and "503" in outcome.error


def test_a_refused_key_stops_the_batch_without_blaming_the_recipient(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v3/mail/send").respond_with_json(
        {"errors": [{"field": None, "message": "The provided authorization grant is invalid"}]},
        status=401,
    )
    sender = transport(httpserver)
    with pytest.raises(AccountError, match="NEWSLETTER_SENDGRID_API_KEY") as refused:
        sender.send_batch([envelope()])
    sender.close()
    assert KEY not in str(refused.value)  # the message names the variable, never the key


def test_a_bad_recipient_address_is_that_messages_permanent_failure(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v3/mail/send").respond_with_json(
        {
            "errors": [
                {
                    "field": "personalizations.0.to.0.email",
                    "message": "Does not contain a valid address.",
                }
            ]
        },
        status=400,
    )
    sender = transport(httpserver)
    (outcome,) = sender.send_batch([envelope()])
    assert outcome.status == PERMANENT and "valid address" in outcome.error
    # A 400 about the sender is the settings' fault: nothing is marked bounced.
    httpserver.clear()
    httpserver.expect_request("/v3/mail/send").respond_with_json(
        {"errors": [{"field": "from.email", "message": "Invalid from email address"}]},
        status=400,
    )
    with pytest.raises(AccountError, match="from.email"):
        sender.send_batch([envelope()])
    sender.close()


def test_no_answer_after_the_request_went_out_is_in_doubt() -> None:
    with SilentServer() as silent:
        sender = SendGridTransport(KEY, api_base=silent.url, timeout=0.3)
        with pytest.raises(InDoubtError, match="may have accepted"):
            sender.send_batch([envelope()])
        sender.close()
    assert silent.requests == 1


def test_a_refused_connection_is_transient() -> None:
    sender = SendGridTransport(KEY, api_base=f"http://127.0.0.1:{free_port()}", timeout=2)
    (outcome,) = sender.send_batch([envelope()])
    sender.close()
    assert outcome.status == TRANSIENT and "cannot connect" in outcome.error


def test_worker_threads_share_one_transport(httpserver: HTTPServer) -> None:
    keys: list[str] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.get_data())
        key = body["personalizations"][0]["custom_args"]["newsletter_delivery"]
        keys.append(key)
        return Response(status=202, headers={"X-Message-Id": f"id-{key}"})

    httpserver.expect_request("/v3/mail/send").respond_with_handler(handler)
    sender = transport(httpserver, connections=4)
    results: dict[str, str | None] = {}

    def work(n: int) -> None:
        for m in range(5):
            key = f"c1-d{n * 5 + m}"
            (outcome,) = sender.send_batch([envelope(key, f"r{n}-{m}@example.com")])
            results[key] = outcome.provider_id

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sender.close()
    assert sorted(keys) == sorted(results) and len(keys) == 20
    assert all(results[key] == f"id-{key}" for key in results)


def test_settings_choose_the_eu_endpoint_and_name_a_missing_key(tmp_path: Path) -> None:
    settings, problems = collect(
        {"delivery": {"transport": "sendgrid", "concurrency": 3}, "sendgrid": {"region": "eu"}},
        {},
        "test",
    )
    sender = open_transport(settings, Secrets(sendgrid_api_key=KEY), tmp_path)
    assert sender.url == "https://api.eu.sendgrid.com/v3/mail/send"
    assert sender.batch_size == 1 and sender.was_sent("c1-d1") is None
    sender.close()
    with pytest.raises(ConfigError, match="NEWSLETTER_SENDGRID_API_KEY: not set"):
        open_transport(settings, Secrets(), tmp_path)
    _, problems = collect({"sendgrid": {"region": "asia"}}, {}, "test")
    assert "sendgrid.region: use us or eu" in problems
    assert Settings().sendgrid.region == "us"


def test_config_check_names_the_missing_variable(cli: Cli) -> None:
    cli.env["NEWSLETTER_DELIVERY__TRANSPORT"] = "sendgrid"
    cli.env["NEWSLETTER_SITE__BASE_URL"] = "https://news.clinic.example.com"
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert "NEWSLETTER_SENDGRID_API_KEY: not set" in result.stderr
    assert "Traceback" not in result.stderr
    cli.env["NEWSLETTER_SENDGRID_API_KEY"] = KEY
    result = cli("config", "check")
    assert "transport sendgrid" in result.stdout
