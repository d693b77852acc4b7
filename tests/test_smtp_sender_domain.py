"""A sender address with a Unicode domain goes as A-labels (Punycode) in every SMTP envelope.

The From header may carry the Unicode form, but ``MAIL FROM`` must name the domain
as DNS knows it: a server without SMTPUTF8 would refuse the Unicode form (and pause
every campaign), and one with it would pass on an envelope that SPF and bounce
handling cannot match.
"""

from __future__ import annotations

import pytest

from smtp_sink import SmtpSink, smtp_env

SENDER = "news@bücher.example"
SENDER_ASCII = "news@xn--bcher-kva.example"


@pytest.mark.parametrize("smtputf8", [False, True], ids=["plain-server", "smtputf8-server"])
def test_campaign_and_confirmation_name_the_sender_domain_in_a_labels(cli, smtputf8) -> None:
    with SmtpSink(smtputf8=smtputf8) as sink:
        cli.env = {
            **cli.env,
            **smtp_env(sink, NEWSLETTER_SENDER__FROM_ADDRESS=SENDER),
        }
        cli("fetch")
        cli("subscribers", "import", "subscribers/example.csv", "--confirmed")
        cli("campaign", "create", "--subject", "Hello")
        sent = cli("campaign", "send", "1")
        assert "paused" not in sent.stdout.lower(), sent.stdout
        campaign_mail = list(sink.messages)
        assert campaign_mail, "the campaign sent nothing"

        added = cli("subscribers", "add", "zoe@example.com")
        assert "confirmation email sent" in added.stdout
        confirmation = sink.messages[len(campaign_mail) :]
        assert [m.recipients for m in confirmation] == [["zoe@example.com"]]

    assert {m.sender for m in sink.messages} == {SENDER_ASCII}
