"""One subscriber's data never stops everyone's mail: poison rows fail alone, with their reason."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import os
import re
from pathlib import Path

from conftest import Cli
from newsletter import campaigns, jobs
from newsletter.subscribers import import_file
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env

GOOD = 1000
LONG = "Bartholomew Maximilian Fitzgerald-Worthington the Third of Somewhere Far"
# Each row an attacker (or a careless export) can put in a subscriber list.
POISON = {
    # A non-ASCII local part, to a server that does not offer SMTPUTF8.
    "jürgen@example.com": ("Jürgen", "needs SMTPUTF8"),
    "zoë@example.com": ("", "needs SMTPUTF8"),
    # A line break in a name long enough that To: folds: once a ValueError for all.
    "fold@example.com": (LONG + "\r\nBcc: victim@evil.example", "contains a carriage return"),
    # A bare line break: without the gate it would add a header of its own.
    "inject@example.com": ("Eve\nBcc: victim@evil.example", "contains a line break"),
    # A blank line would start the body early; the bare LF.CRLF is SMTP smuggling's shape.
    "smuggle@example.com": ("Mallory\n.\r\nMAIL FROM:<x@evil.example>", "contains a line break"),
    "escape@example.com": ("Esc\x1b[2Jape", "contains a control character"),
    "separator@example.com": ("Line\u2028Separator", "contains a control character"),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stored_as_given(store, names: dict[str, str]) -> None:
    """Names as an older version stored them: intake now folds their line breaks and
    controls to spaces, so the send-time gate is tested on data that got in before."""
    with store.transaction():
        for address, name in names.items():
            store.conn.execute(
                "UPDATE subscribers SET first_name = ? WHERE id = ?",
                [name or None, store.subscriber_by_email(address)["id"]],
            )


def _write_list(path: Path) -> None:
    """A CSV export: the good subscribers with the poison rows among them."""
    poison = iter(POISON.items())
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name"])
        for n in range(GOOD):
            writer.writerow([f"reader{n}@example.com", f"Reader {n}"])
            if n % 150 == 75:
                address, (name, _) = next(poison, (None, (None, None)))
                if address:
                    writer.writerow([address, name])
        for address, (name, _) in poison:
            writer.writerow([address, name])
        # An internationalised domain is not poison: it goes as A-labels (Punycode).
        writer.writerow(["juergen@bücher.example", "Jürgen"])


def test_poison_rows_fail_alone_and_every_good_subscriber_gets_the_mail(ws_dir: Path) -> None:
    csv_path = ws_dir / "export.csv"
    _write_list(csv_path)
    with SmtpSink(pipelining=True) as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink, NEWSLETTER_DELIVERY__CONCURRENCY="4"))
        try:
            store = ws.store
            report = import_file(store, csv_path, _now(), confirmed=True)
            assert report.added == GOOD + len(POISON) + 1, report
            assert "\n" not in (store.subscriber_by_email("inject@example.com")["first_name"])
            _stored_as_given(store, {a: name for a, (name, _) in POISON.items()})
            jobs.fetch_sources(ws, store, _now())
            campaign_id = campaigns.create(store, ws.settings, "Hello", "new", None, None, _now())

            progress = jobs.send_campaign(ws, store, campaign_id)

            assert progress.finished and not progress.paused_reason
            assert progress.sent == GOOD + 1
            assert progress.failed == len(POISON)
            assert store.campaign(campaign_id)["status"] == "sent"
            delivered = sink.recipients()
            assert sorted(delivered) == sorted(
                [f"reader{n}@example.com" for n in range(GOOD)] + ["juergen@xn--bcher-kva.example"]
            )
            rows = {r["email"]: r for r in store.failed_deliveries(campaign_id)}
            for address, (_, reason) in POISON.items():
                assert rows[address]["status"] == "failed", address
                assert reason in rows[address]["error"], (address, rows[address]["error"])
            # Nobody was suppressed for what their own row holds.
            assert all(store.subscriber_by_email(a)["status"] == "confirmed" for a in POISON)
            # The report names each one that failed, and why.
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
            report = Cli(ws_dir, {**env, **smtp_env(sink)})("stats", str(campaign_id)).stdout
            for address, (_, reason) in POISON.items():
                assert re.search(rf"^  failed: {re.escape(address)}: .*{reason}", report, re.M)
            # No injected header reached any message.
            for message in sink.messages:
                parsed = email.message_from_bytes(message.data, policy=email.policy.SMTP)
                assert "Bcc" not in parsed and "evil.example" not in message.data.decode()
        finally:
            ws.close()


def test_the_same_internationalised_mailbox_goes_out_where_the_server_offers_smtputf8(
    ws_dir: Path,
) -> None:
    csv_path = ws_dir / "export.csv"
    csv_path.write_text("email,first_name\njürgen@bücher.example,Jürgen\nann@example.com,Ann\n")
    with SmtpSink(smtputf8=True) as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        try:
            store = ws.store
            import_file(store, csv_path, _now(), confirmed=True)
            jobs.fetch_sources(ws, store, _now())
            campaign_id = campaigns.create(store, ws.settings, "Hello", "new", None, None, _now())
            progress = jobs.send_campaign(ws, store, campaign_id)
            assert progress.finished and progress.sent == 2 and progress.failed == 0
            assert sorted(sink.recipients()) == ["ann@example.com", "jürgen@xn--bcher-kva.example"]
            message = next(m for m in sink.messages if m.recipients[0].startswith("j"))
            parsed = email.message_from_bytes(message.data, policy=email.policy.SMTPUTF8)
            assert "jürgen@xn--bcher-kva.example".encode() in message.data
            assert parsed["To"] is not None
        finally:
            ws.close()


def test_the_campaign_page_shows_who_did_not_get_it_and_why(admin_page, dashboard) -> None:
    store, ws = dashboard.ws.store, dashboard.ws
    csv_path = ws.root / "export.csv"
    csv_path.write_text('email,first_name\nann@example.com,Ann\neve@example.com,"Eve\nBcc: x"\n')
    import_file(store, csv_path, _now(), confirmed=True)
    _stored_as_given(store, {"eve@example.com": "Eve\nBcc: x"})
    jobs.fetch_sources(ws, store, _now())
    campaign_id = campaigns.create(store, ws.settings, "Hello", "new", None, None, _now())
    jobs.send_campaign(ws, store, campaign_id)
    admin_page.goto(f"{dashboard.url}/campaigns/{campaign_id}")
    row = admin_page.locator('tr[data-failed="eve@example.com"]')
    assert "the name of eve@example.com: contains a line break" in row.inner_text()
    assert admin_page.locator("tr[data-failed]").count() == 1


def test_an_internationalised_sender_pauses_the_campaign_instead_of_failing_everyone(
    ws_dir: Path,
) -> None:
    # The sender's own address is not one recipient's problem: nothing could go.
    with SmtpSink() as sink:
        env = smtp_env(sink, NEWSLETTER_SENDER__FROM_ADDRESS="büro@example.com")
        ws = Workspace.open(ws_dir, env=env)
        try:
            store = ws.store
            jobs.fetch_sources(ws, store, _now())
            jobs.import_subscriber_folder(ws, store, _now())
            campaign_id = campaigns.create(store, ws.settings, "Hello", "new", None, None, _now())
            progress = jobs.send_campaign(ws, store, campaign_id)
            assert "sender.from_address büro@example.com: needs SMTPUTF8" in (
                progress.paused_reason or ""
            )
            assert store.campaign(campaign_id)["status"] == "paused"
            counts = store.delivery_counts(campaign_id)
            assert counts["failed"] == 0 and counts["pending"] == sum(counts.values())
            assert sink.messages == []
        finally:
            ws.close()
