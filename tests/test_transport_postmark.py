"""The Postmark transport against a local server that speaks /email/batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mail_api import SENDER, envelope
from newsletter.config import Secrets, collect
from newsletter.errors import AccountError, InDoubtError, TransientError
from newsletter.transports import PERMANENT, SENT, TRANSIENT, open_transport
from newsletter.transports.postmark import PostmarkTransport

TOKEN = "server-token-1234"
NOW = 1_800_000_000.0


def transport(server: HTTPServer, stream: str = "broadcast") -> PostmarkTransport:
    return PostmarkTransport(
        TOKEN,
        message_stream=stream,
        api_base=server.url_for("/").rstrip("/"),
        clock=lambda: NOW,
    )


def accept_all(calls: list[list[dict]]):
    """A batch endpoint that checks the request as Postmark documents it and takes it all."""

    def handler(request: Request) -> Response:
        assert request.headers["X-Postmark-Server-Token"] == TOKEN
        assert request.headers["Accept"] == "application/json"
        assert request.mimetype == "application/json"
        batch = json.loads(request.get_data())
        if len(batch) > 500:
            return Response(
                json.dumps({"ErrorCode": 300, "Message": "Batch too large"}), status=422
            )
        calls.append(batch)
        return Response(
            json.dumps(
                [
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": f"pm-{m['Metadata']['newsletter_delivery']}",
                        "SubmittedAt": "2026-11-27T09:00:00Z",
                        "To": m["To"],
                    }
                    for m in batch
                ]
            ),
            status=200,
            content_type="application/json",
        )

    return handler


def test_a_batch_is_posted_as_postmark_documents_it(httpserver: HTTPServer) -> None:
    calls: list[list[dict]] = []
    httpserver.expect_request("/email/batch", method="POST").respond_with_handler(accept_all(calls))
    sender = transport(httpserver, stream="newsletters")
    outcomes = sender.send_batch([envelope("c1-d1", "ann@example.com", 'Ann "the" Lee')])
    sender.close()
    assert [(o.status, o.provider_id) for o in outcomes] == [(SENT, "pm-c1-d1")]
    assert calls == [
        [
            {
                "From": f'"Riverbend" <{SENDER}>',
                "To": '"Ann \\"the\\" Lee" <ann@example.com>',
                "Subject": "New on the blog",
                "MessageStream": "newsletters",
                "Metadata": {"newsletter_delivery": "c1-d1"},
                "TrackOpens": False,
                "TrackLinks": "None",
                "HtmlBody": '<p>Hello Ann "the" Lee</p>',
                "TextBody": 'Hello Ann "the" Lee',
                "ReplyTo": "frontdesk@clinic.example.com",
                "Headers": [
                    {"Name": "Message-ID", "Value": "<c1-d1.1@clinic.example.com>"},
                    {
                        "Name": "List-Unsubscribe",
                        "Value": "<https://news.example.com/u/token-c1-d1>",
                    },
                    {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                    {"Name": "List-Id", "Value": "Riverbend news <news.clinic.example.com>"},
                    {"Name": "Feedback-ID", "Value": "c1:newsletter"},
                ],
            }
        ]
    ]


def test_more_than_500_messages_go_in_calls_of_at_most_500(httpserver: HTTPServer) -> None:
    calls: list[list[dict]] = []
    httpserver.expect_request("/email/batch").respond_with_handler(accept_all(calls))
    sender = transport(httpserver)
    assert sender.batch_size == 500
    envelopes = [envelope(f"c1-d{n}", f"r{n}@example.com") for n in range(501)]
    outcomes = sender.send_batch(envelopes)
    sender.close()
    assert [len(batch) for batch in calls] == [500, 1]
    assert [o.key for o in outcomes] == [e.key for e in envelopes]
    assert all(o.status == SENT and o.provider_id == f"pm-{o.key}" for o in outcomes)


def test_mixed_error_codes_in_a_200_answer_are_read_item_by_item(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/email/batch").respond_with_json(
        [
            {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-1", "To": "a@example.com"},
            {
                "ErrorCode": 406,
                "Message": "You tried to send to a recipient that has been marked as inactive.",
            },
            {"ErrorCode": 300, "Message": "Invalid 'To' address: 'c@'."},
            {"ErrorCode": 405, "Message": "Not allowed to send: you have run out of credits."},
        ]
    )
    sender = transport(httpserver)
    keys = ["c1-d1", "c1-d2", "c1-d3", "c1-d4"]
    outcomes = sender.send_batch([envelope(k, f"{k}@example.com") for k in keys])
    sender.close()
    assert [(o.key, o.status) for o in outcomes] == [
        ("c1-d1", SENT),
        ("c1-d2", PERMANENT),
        ("c1-d3", PERMANENT),
        # An account problem is never the subscriber's fault: deferred, not bounced.
        ("c1-d4", TRANSIENT),
    ]
    assert outcomes[0].provider_id == "pm-1"
    assert "inactive" in outcomes[1].error and "406" in outcomes[1].error


def test_a_bad_token_raises_and_names_the_variable(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/email/batch").respond_with_json(
        {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied"},
        status=401,
    )
    sender = transport(httpserver)
    with pytest.raises(AccountError, match="NEWSLETTER_POSTMARK_SERVER_TOKEN"):
        sender.send_batch([envelope()])
    sender.close()


def test_every_item_refused_for_the_sender_pauses_instead_of_bouncing(
    httpserver: HTTPServer,
) -> None:
    refused = {"ErrorCode": 400, "Message": "Sender signature not defined for From address."}
    httpserver.expect_request("/email/batch").respond_with_json([refused, refused])
    sender = transport(httpserver)
    with pytest.raises(AccountError, match="Sender signature"):
        sender.send_batch([envelope("c1-d1"), envelope("c1-d2", "b@example.com")])
    sender.close()


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after"),
    [
        (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "30"}, 30),
        (500, {"ErrorCode": 500, "Message": "Internal Server Error"}, {}, None),
        (503, {"ErrorCode": 100, "Message": "Maintenance"}, {}, None),
    ],
)
def test_whole_call_failures_are_transient(
    httpserver: HTTPServer, status: int, body: dict, headers: dict, retry_after: float | None
) -> None:
    httpserver.expect_request("/email/batch").respond_with_json(
        body, status=status, headers=headers
    )
    sender = transport(httpserver)
    with pytest.raises(TransientError) as failure:
        sender.send_batch([envelope(), envelope("c1-d2", "b@example.com")])
    sender.close()
    assert failure.value.retry_after == retry_after


def test_an_answer_that_does_not_list_every_message_is_in_doubt(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/email/batch").respond_with_json(
        [{"ErrorCode": 0, "MessageID": "pm-1"}]
    )
    sender = transport(httpserver)
    with pytest.raises(InDoubtError):
        sender.send_batch([envelope(), envelope("c1-d2", "b@example.com")])
    sender.close()


def test_settings_default_to_the_broadcast_stream(tmp_path: Path) -> None:
    settings, _ = collect({"delivery": {"transport": "postmark"}}, {}, "test")
    sender = open_transport(settings, Secrets(postmark_server_token=TOKEN), tmp_path)
    assert sender.message_stream == "broadcast"
    assert sender.url == "https://api.postmarkapp.com/email/batch"
    sender.close()


def test_a_test_message_from_the_cli_goes_through_postmark(cli, httpserver: HTTPServer) -> None:
    calls: list[list[dict]] = []
    httpserver.expect_request("/email/batch").respond_with_handler(accept_all(calls))
    cli.env.update(
        NEWSLETTER_DELIVERY__TRANSPORT="postmark",
        NEWSLETTER_POSTMARK__API_BASE=httpserver.url_for("/").rstrip("/"),
        NEWSLETTER_POSTMARK_SERVER_TOKEN=TOKEN,
    )
    cli("fetch")
    cli("campaign", "create", "--subject", "New on the blog", "--articles", "new")
    result = cli("campaign", "test", "1", "--to", "me@example.com")
    assert "sent to me@example.com" in result.stdout
    # The CLI hands over only the MIME message; its fields are read back from it.
    ((message,),) = calls
    assert message["Subject"] == "[TEST] New on the blog"
    assert message["To"] == "me@example.com"
    assert "<html" in message["HtmlBody"].lower() and message["TextBody"].strip()
    assert message["Metadata"]["newsletter_delivery"].startswith("test-c1-")
