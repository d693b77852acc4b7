"""Scheduling: digests, instant campaigns, missed due times, restarts, competing schedulers.

Every test drives the job functions with an injected clock against real
SQLite files and a real SMTP server on loopback; nothing sleeps for the
scheduled times.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import pickle
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from clocks import Clock
from newsletter import campaigns, consent, job_scheduler, jobs, timerules
from newsletter.config import collect
from newsletter.errors import InputError, StateError
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env

UTC = dt.UTC
SUBSCRIBERS = ["ann@example.com", "ben@example.com", "cy@example.com"]


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def write_article(ws_dir: Path, slug: str, title: str, day: str, body: str = "Text.") -> None:
    (ws_dir / "articles" / f"{slug}.md").write_text(
        f'---\ntitle: "{title}"\ndate: {day}\n'
        f'url: "https://clinic.example.com/post/{slug}"\n---\n\n{body}\n',
        encoding="utf-8",
    )


@pytest.fixture
def sched_dir(ws_dir: Path) -> Path:
    """A workspace with no articles yet and three confirmed subscribers to import."""
    for path in (ws_dir / "articles").iterdir():
        path.unlink()
    for path in (ws_dir / "subscribers").iterdir():
        path.unlink()
    rows = "".join(f"{address},confirmed\n" for address in SUBSCRIBERS)
    (ws_dir / "subscribers" / "people.csv").write_text("email,status\n" + rows, encoding="utf-8")
    return ws_dir


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def open_ws(ws_dir: Path, sink: SmtpSink, **schedule: str) -> Workspace:
    schedule.setdefault("mode", "off")  # the starter file says instant
    env = {f"NEWSLETTER_SCHEDULE__{k.upper()}": v for k, v in schedule.items()}
    return Workspace.open(ws_dir, env=smtp_env(sink, **env))


def mails(sink: SmtpSink) -> list[tuple[str, str, str]]:
    """(recipient, subject, text) of every message the sink accepted."""
    found = []
    for received in sink.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        for recipient in received.recipients:
            found.append((recipient, str(message["Subject"]), text))
    return found


def titles_for(sink: SmtpSink, recipient: str, titles: list[str], skip: str = "Welcome") -> list:
    """For each newsletter to one recipient, the known titles it carries."""
    return [
        sorted(t for t in titles if t in text)
        for to, subject, text in mails(sink)
        if to == recipient and not subject.startswith(skip)
    ]


# -- time rules ---------------------------------------------------------------------------


def test_local_times_follow_the_stated_dst_rule() -> None:
    # Europe/Berlin skips 02:00-03:00 on 29 March 2026: 02:30 is read with the winter
    # offset and lands at 03:30 summer time.
    when, note = campaigns.parse_local_time("2026-03-29 02:30", "Europe/Berlin")
    assert when == at(2026, 3, 29, 1, 30)
    assert "does not exist" in note and "03:30" in note
    # 02:30 happens twice on 25 October 2026: the first (summer time, +02:00) is meant.
    when, note = campaigns.parse_local_time("2026-10-25 02:30", "Europe/Berlin")
    assert when == at(2026, 10, 25, 0, 30)
    assert "occurs twice" in note
    when, note = campaigns.parse_local_time("2026-12-01 09:00", "America/New_York")
    assert (when, note) == (at(2026, 12, 1, 14, 0), "")
    with pytest.raises(InputError, match="--tz"):
        campaigns.parse_local_time("2026-12-01 09:00", "Mars/Base")


def test_cron_rules_use_crontab_weekdays_and_their_zone() -> None:
    after = at(2026, 11, 27, 12, 0)  # a Friday
    monday = timerules.cron_trigger("0 9 * * 1", "Europe/Berlin")
    sunday = timerules.cron_trigger("30 7 * * 0", "UTC")
    assert timerules.next_fire(monday, after) == at(2026, 11, 30, 8, 0)
    assert timerules.next_fire(sunday, after) == at(2026, 11, 29, 7, 30)
    weekdays = timerules.cron_trigger("0 9 * * mon-fri", "America/New_York")
    assert timerules.next_fire(weekdays, after) == at(2026, 11, 27, 14, 0)  # 09:00 EST
    # Fire times missed while nothing ran fold into the latest one.
    assert timerules.last_fire(monday, at(2026, 11, 1), after) == at(2026, 11, 23, 8, 0)
    assert timerules.cron_problem("0 9 * *") is not None
    assert timerules.cron_problem("0 25 * * mon") is not None


def test_config_check_names_bad_schedule_keys() -> None:
    raw = {
        "sender": {"from_address": "n@example.com", "postal_address": "1 Main St"},
        "schedule": {
            "mode": "digest",
            "digest_cron": "every monday",
            "misfire_grace_time": 5,
            "quiet_period": -1,
        },
        "automation": {"welcome_template": "welcome", "welcome_delay": -5},
        "subscribers": {"welcome_template": "welcome"},
    }
    _, problems = collect(raw, {}, "newsletter.toml")
    keys = {p.split(":")[0] for p in problems}
    assert {
        "schedule.digest_cron",
        "schedule.misfire_grace_time",
        "schedule.quiet_period",
        "automation.welcome_delay",
        "automation.welcome_template",
    } <= keys


# -- digests ------------------------------------------------------------------------------


def test_digest_runs_at_nine_local_time_on_both_sides_of_a_dst_change(
    sched_dir: Path, sink: SmtpSink
) -> None:
    ws = open_ws(
        sched_dir, sink, mode="digest", digest_cron="0 9 * * mon", timezone="Europe/Berlin"
    )
    clock = Clock(at(2026, 3, 20, 12, 0))  # Friday before
    write_article(sched_dir, "a", "Alpha article", "2026-03-20")
    jobs.poll(ws, clock)
    jobs.run_schedule(ws, clock)  # the digest starts counting from here

    clock.now = at(2026, 3, 23, 7, 59)  # 08:59 CET
    jobs.run_schedule(ws, clock)
    assert ws.store.campaigns() == []
    clock.now = at(2026, 3, 23, 8, 0, 20)  # 09:00 CET
    jobs.run_schedule(ws, clock)
    jobs.run_schedule(ws, clock)
    clock.now = at(2026, 3, 23, 8, 40)
    jobs.run_schedule(ws, clock)
    [first] = ws.store.campaigns()
    assert (first["kind"], first["status"], first["sent"]) == ("digest", "sent", 3)

    write_article(sched_dir, "b", "Beta article", "2026-03-25")
    clock.now = at(2026, 3, 25, 10, 0)
    jobs.poll(ws, clock)
    clock.now = at(2026, 3, 30, 6, 59)  # 08:59 CEST: summer time began on Sunday
    jobs.run_schedule(ws, clock)
    assert len(ws.store.campaigns()) == 1
    clock.now = at(2026, 3, 30, 7, 0, 20)  # 09:00 CEST
    jobs.run_schedule(ws, clock)
    second = ws.store.campaigns()[1]
    assert (second["kind"], second["status"], second["sent"]) == ("digest", "sent", 3)
    assert ws.store.campaign(second["id"])["article_ids"] == [
        a["id"] for a in ws.store.articles() if a["title"] == "Beta article"
    ]

    clock.now = at(2026, 4, 6, 7, 0, 20)  # no new articles: no email
    jobs.run_schedule(ws, clock)
    assert len(ws.store.campaigns()) == 2
    runs = {r["due_at"]: r["status"] for r in ws.store.job_runs()}
    assert runs == {
        "2026-03-23T08:00:00+00:00": "done",
        "2026-03-30T07:00:00+00:00": "done",
        "2026-04-06T07:00:00+00:00": "empty",
    }
    for address in SUBSCRIBERS:
        assert titles_for(sink, address, ["Alpha article", "Beta article"]) == [
            ["Alpha article"],
            ["Beta article"],
        ]
    ws.close()


def test_a_joiner_between_digests_never_gets_an_article_twice(sched_dir: Path, sink) -> None:
    ws = Workspace.open(
        sched_dir,
        env=smtp_env(
            sink,
            NEWSLETTER_SCHEDULE__MODE="digest",
            NEWSLETTER_SCHEDULE__DIGEST_CRON="0 9 * * mon",
            NEWSLETTER_SOURCES__ANNOUNCE_UPDATES="true",
            NEWSLETTER_AUTOMATION__WELCOME_TEMPLATE="welcome",
            NEWSLETTER_AUTOMATION__WELCOME_DELAY="600",
            NEWSLETTER_AUTOMATION__LATEST_ARTICLES="2",
        ),
    )
    titles = ["Alpha article", "Beta article", "Gamma article", "Delta article"]
    clock = Clock(at(2026, 11, 20, 12, 0))
    write_article(sched_dir, "a", "Alpha article", "2026-11-18")
    write_article(sched_dir, "b", "Beta article", "2026-11-19")
    jobs.poll(ws, clock)
    jobs.run_schedule(ws, clock)
    clock.now = at(2026, 11, 23, 9, 0, 5)
    jobs.run_schedule(ws, clock)  # digest 1: Alpha, Beta to the three subscribers

    # Gamma arrives, then a reader subscribes and confirms on Wednesday.
    write_article(sched_dir, "c", "Gamma article", "2026-11-24")
    clock.now = at(2026, 11, 24, 10, 0)
    jobs.poll(ws, clock)
    clock.now = at(2026, 11, 25, 10, 0)
    consent_id = consent.request(
        ws.store, ws.settings, "joy@example.com", source="form", now=clock.now
    )
    joy = ws.store.subscriber_by_email("joy@example.com")
    assert ws.store.confirm_opt_in(consent_id, joy["id"], clock.now, None) == "confirmed"
    jobs.run_schedule(ws, clock)
    assert [m for m in mails(sink) if m[0] == "joy@example.com"] == []  # the delay
    clock.now = at(2026, 11, 25, 10, 10, 30)
    jobs.run_schedule(ws, clock)
    jobs.run_schedule(ws, clock)
    joy_mail = [m for m in mails(sink) if m[0] == "joy@example.com"]
    assert len(joy_mail) == 2
    assert any(subject.startswith("Welcome") for _, subject, _ in joy_mail)
    # Her "latest articles" email: the two newest, Gamma and Beta.
    assert titles_for(sink, "joy@example.com", titles) == [["Beta article", "Gamma article"]]

    # Alpha is edited (and announced again), Delta is new.
    write_article(sched_dir, "a", "Alpha article", "2026-11-18", body="Text, revised.")
    write_article(sched_dir, "d", "Delta article", "2026-11-27")
    clock.now = at(2026, 11, 27, 10, 0)
    jobs.poll(ws, clock)
    clock.now = at(2026, 11, 30, 9, 0, 5)
    jobs.run_schedule(ws, clock)

    digest2 = ws.store.campaigns()[-1]
    assert digest2["kind"] == "digest" and digest2["status"] == "sent"
    # Joy had Beta and Gamma: she gets Alpha (new to her) and Delta.
    assert titles_for(sink, "joy@example.com", titles)[-1] == ["Alpha article", "Delta article"]
    for address in SUBSCRIBERS:
        # The others had Alpha already: Gamma and Delta only.
        assert titles_for(sink, address, titles) == [
            ["Alpha article", "Beta article"],
            ["Delta article", "Gamma article"],
        ]
    for address in [*SUBSCRIBERS, "joy@example.com"]:
        got = [t for group in titles_for(sink, address, titles) for t in group]
        assert len(got) == len(set(got)), address
    ws.close()


def test_a_digest_missed_beyond_the_grace_window_is_reported_and_its_articles_wait(
    sched_dir: Path, sink: SmtpSink
) -> None:
    ws = open_ws(sched_dir, sink, mode="digest", digest_cron="0 9 * * mon")
    clock = Clock(at(2026, 11, 20, 12, 0))
    write_article(sched_dir, "a", "Alpha article", "2026-11-18")
    jobs.poll(ws, clock)
    jobs.run_schedule(ws, clock)
    clock.now = at(2026, 11, 23, 10, 0, 1)  # one hour and a second late: down all morning
    jobs.run_schedule(ws, clock)
    assert ws.store.campaigns() == [] and sink.messages == []
    [missed] = ws.store.job_runs("missed")
    assert missed["due_at"] == "2026-11-23T09:00:00+00:00"
    assert "missed by 1 h 0 min" in missed["detail"]
    clock.now = at(2026, 11, 30, 9, 30)  # within the grace window: runs, late
    jobs.run_schedule(ws, clock)
    [digest] = ws.store.campaigns()
    assert digest["status"] == "sent" and digest["sent"] == 3
    ws.close()


def test_a_welcome_step_missed_beyond_the_grace_window_is_recorded_not_sent(
    sched_dir: Path, sink: SmtpSink
) -> None:
    ws = Workspace.open(
        sched_dir,
        env=smtp_env(
            sink,
            NEWSLETTER_SCHEDULE__MODE="off",
            NEWSLETTER_SCHEDULE__MISFIRE_GRACE_TIME="600",
            NEWSLETTER_AUTOMATION__WELCOME_TEMPLATE="welcome",
            NEWSLETTER_AUTOMATION__WELCOME_DELAY="3600",
        ),
    )
    clock = Clock(at(2026, 11, 27, 9, 0))
    jobs.run_schedule(ws, clock)  # the automation starts counting here
    for address in ("joy@example.com", "kim@example.com"):
        consent_id = consent.request(ws.store, ws.settings, address, source="form", now=clock())
        person = ws.store.subscriber_by_email(address)
        ws.store.confirm_opt_in(consent_id, person["id"], clock(), None)
        clock.now += dt.timedelta(hours=2)
    # Joy's welcome was due at 10:00 and Kim's at 12:00; the scheduler looks at 12:05.
    clock.now = at(2026, 11, 27, 12, 5)
    jobs.run_schedule(ws, clock)
    jobs.run_schedule(ws, clock)
    assert [to for to, _, _ in mails(sink)] == ["kim@example.com"]
    [missed] = ws.store.steps("missed")
    assert missed["subscriber_id"] == ws.store.subscriber_by_email("joy@example.com")["id"]
    assert "missed by 2 h 5 min" in missed["detail"]
    ws.close()


# -- instant mode -------------------------------------------------------------------------


def test_a_burst_inside_the_quiet_period_makes_one_campaign(sched_dir: Path, sink) -> None:
    ws = open_ws(sched_dir, sink, mode="instant", quiet_period="1800")
    clock = Clock(at(2026, 11, 27, 9, 0))
    for minutes, slug in ((0, "a"), (10, "b"), (20, "c")):
        clock.now = at(2026, 11, 27, 9, minutes)
        write_article(sched_dir, slug, f"Post {slug}", "2026-11-27")
        jobs.poll(ws, clock)
        jobs.send_due(ws, clock)
    clock.now = at(2026, 11, 27, 9, 49)  # 29 minutes after the last post
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    assert ws.store.campaigns() == []
    clock.now = at(2026, 11, 27, 9, 50, 30)
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    clock.now = at(2026, 11, 27, 10, 30)
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    [campaign] = ws.store.campaigns()
    assert (campaign["kind"], campaign["status"], campaign["sent"]) == ("instant", "sent", 3)
    assert len(ws.store.campaign(campaign["id"])["article_ids"]) == 3
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS)
    ws.close()


def test_an_edited_article_announced_again_goes_only_to_who_never_had_it(
    sched_dir: Path, sink: SmtpSink
) -> None:
    ws = Workspace.open(
        sched_dir,
        env=smtp_env(
            sink, NEWSLETTER_SCHEDULE__MODE="instant", NEWSLETTER_SOURCES__ANNOUNCE_UPDATES="true"
        ),
    )
    clock = Clock(at(2026, 11, 27, 9, 0))
    write_article(sched_dir, "a", "Post a", "2026-11-27")
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    with (sched_dir / "subscribers" / "people.csv").open("a", encoding="utf-8") as people:
        people.write("dee@example.com,confirmed\n")
    write_article(sched_dir, "a", "Post a", "2026-11-27", body="Text, corrected.")
    clock.now = at(2026, 11, 27, 10, 0)
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    first, second = ws.store.campaigns()
    assert first["status"] == "sent" and first["sent"] == 3
    counts = ws.store.delivery_counts(second["id"])
    assert second["status"] == "sent" and (counts["sent"], counts["skipped"]) == (1, 3)
    assert [to for to, _, _ in mails(sink)] == [*SUBSCRIBERS, "dee@example.com"]
    ws.close()


def test_held_as_draft_waits_for_a_person(sched_dir: Path, sink: SmtpSink) -> None:
    ws = open_ws(sched_dir, sink, mode="instant", hold_as_draft="true")
    clock = Clock(at(2026, 11, 27, 9, 0))
    write_article(sched_dir, "a", "Post a", "2026-11-27")
    jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    clock.now = at(2026, 11, 27, 9, 10)
    jobs.poll(ws, clock)  # nothing new: no second draft
    [draft] = ws.store.campaigns()
    assert (draft["kind"], draft["status"]) == ("instant", "draft") and sink.messages == []
    jobs.send_campaign(ws, ws.store, draft["id"], clock)
    assert ws.store.campaign_status(draft["id"]) == "sent" and len(sink.messages) == 3
    ws.close()


# -- scheduled campaigns across restarts -----------------------------------------------------


def _scheduled(ws: Workspace, clock: Clock, due: dt.datetime, slug: str = "a") -> int:
    write_article(ws.root, slug, f"Post {slug}", "2026-11-27")
    jobs.poll(ws, clock)
    campaign_id = campaigns.create(ws.store, ws.settings, "Hello", "new", None, None, clock())
    campaigns.schedule(ws.store, campaign_id, due, clock())
    return campaign_id


def test_restarts_before_and_during_a_scheduled_send_neither_repeat_nor_miss(
    sched_dir: Path, sink: SmtpSink
) -> None:
    ws = open_ws(sched_dir, sink)
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(ws, clock, at(2026, 11, 27, 9, 0))
    clock.now = at(2026, 11, 27, 8, 30)
    jobs.send_due(ws, clock)
    assert ws.store.campaign_status(campaign_id) == "scheduled" and sink.messages == []
    ws.close()

    # Restart; the process comes back after the due time and stops part way through.
    ws = open_ws(sched_dir, sink)
    clock.now = at(2026, 11, 27, 9, 2)
    looks = []

    def stop_soon() -> bool:
        looks.append(1)
        return len(looks) > 2

    jobs.send_due(ws, clock, should_stop=stop_soon)
    assert ws.store.campaign_status(campaign_id) == "sending"
    assert len(sink.messages) < len(SUBSCRIBERS)
    ws.close()

    # Restart again: the rest goes, once each; later looks send nothing more.
    ws = open_ws(sched_dir, sink)
    clock.now = at(2026, 11, 27, 9, 3)
    jobs.run_schedule(ws, clock)
    clock.now = at(2026, 11, 27, 9, 4)
    jobs.run_schedule(ws, clock)
    assert ws.store.campaign_status(campaign_id) == "sent"
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS)
    ws.close()


def test_a_campaign_missed_beyond_the_grace_window_is_left_for_a_person(
    sched_dir: Path, sink: SmtpSink, cli, caplog
) -> None:
    ws = open_ws(sched_dir, sink, misfire_grace_time="600")
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(ws, clock, at(2026, 11, 27, 9, 0))
    ws.close()
    # As after restoring yesterday's backup: the time passed long ago.
    ws = open_ws(sched_dir, sink, misfire_grace_time="600")
    clock.now = at(2026, 11, 28, 9, 30)
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        jobs.run_schedule(ws, clock)
        jobs.run_schedule(ws, clock)
    assert sink.messages == []
    campaign = ws.store.campaign(campaign_id)
    assert campaign["status"] == "scheduled" and campaign["missed_at"]
    warnings = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert len(warnings) == 1 and f"campaign {campaign_id}" in warnings[0]

    listed = cli("campaign", "list").stdout
    assert "missed" in listed and "reschedule, send or cancel it" in listed
    plan = cli("schedule", "list").stdout
    assert "missed (left for a person):" in plan and f"campaign {campaign_id}" in plan

    # A person reschedules it: it goes at the new time, once.
    campaigns.reschedule(ws.store, campaign_id, at(2026, 11, 28, 10, 0), clock())
    clock.now = at(2026, 11, 28, 10, 0, 10)
    jobs.run_schedule(ws, clock)
    assert ws.store.campaign_status(campaign_id) == "sent"
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS)
    ws.close()


def test_a_campaign_just_inside_the_grace_window_runs_once(sched_dir: Path, sink) -> None:
    ws = open_ws(sched_dir, sink, misfire_grace_time="600")
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(ws, clock, at(2026, 11, 27, 9, 0))
    clock.now = at(2026, 11, 27, 9, 10)  # exactly the grace window late
    jobs.run_schedule(ws, clock)
    jobs.run_schedule(ws, clock)
    assert ws.store.campaign_status(campaign_id) == "sent"
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS)
    ws.close()


def test_a_scheduled_campaign_for_an_empty_list_finishes_with_a_warning(
    sched_dir: Path, sink: SmtpSink, caplog
) -> None:
    ws = open_ws(sched_dir, sink)
    clock = Clock(at(2026, 11, 27, 8, 0))
    write_article(sched_dir, "a", "Post a", "2026-11-27")
    jobs.poll(ws, clock)
    ws.store.create_list("nobody", "", False, clock())
    campaign_id = campaigns.create(ws.store, ws.settings, "Hi", "new", None, "nobody", clock())
    campaigns.schedule(ws.store, campaign_id, at(2026, 11, 27, 9, 0), clock())
    clock.now = at(2026, 11, 27, 9, 0, 5)
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        jobs.run_schedule(ws, clock)
    campaign = ws.store.campaign(campaign_id)
    assert campaign["status"] == "sent" and "no recipients" in campaign["note"]
    assert any("no recipients" in r.getMessage() for r in caplog.records)
    assert sink.messages == []
    ws.close()


def test_two_schedulers_on_one_database_send_everything_once(sched_dir: Path, sink) -> None:
    settings = {"mode": "digest", "digest_cron": "0 9 * * *"}
    first, second = open_ws(sched_dir, sink, **settings), open_ws(sched_dir, sink, **settings)
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(first, clock, at(2026, 11, 27, 9, 0))
    write_article(sched_dir, "b", "Post b", "2026-11-27")
    jobs.poll(first, clock)
    jobs.run_schedule(first, clock)
    clock.now = at(2026, 11, 27, 9, 0, 5)  # the campaign and a digest are due at once
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(ws: Workspace) -> None:
        try:
            start.wait()
            jobs.run_schedule(ws, clock)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ws,)) for ws in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    jobs.run_schedule(second, clock)  # whichever yielded finishes anything left
    rows = first.store.campaigns()
    assert [(c["kind"], c["status"]) for c in rows] == [("manual", "sent"), ("digest", "sent")]
    assert rows[0]["id"] == campaign_id
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS * 2)
    first.close()
    second.close()


# -- the persistent job store ------------------------------------------------------------------


def _stored_jobs(ws: Workspace) -> dict[str, float | None]:
    return {j["id"]: j["next_run_time"] for j in ws.store.scheduler_jobs()}


def test_jobs_are_stored_in_the_database_and_survive_a_restart(sched_dir: Path, sink) -> None:
    ws = open_ws(
        sched_dir, sink, mode="digest", digest_cron="0 9 * * mon", timezone="Europe/Berlin"
    )
    now = jobs.utc_now()
    due = (now + dt.timedelta(days=2)).replace(microsecond=0, second=0)
    campaign_id = _scheduled(ws, Clock(now), due)
    stop = threading.Event()
    running = job_scheduler.start(ws, stop)
    try:
        stored = _stored_jobs(ws)
    finally:
        job_scheduler.stop_scheduler(ws, running)
    assert {"poll", "due", "digest", f"campaign-{campaign_id}"} <= set(stored)
    assert stored[f"campaign-{campaign_id}"] == due.timestamp()
    trigger = timerules.cron_trigger("0 9 * * mon", "Europe/Berlin")
    assert stored["digest"] == timerules.next_fire(trigger, now).timestamp()

    # Unscheduled while no scheduler ran: the next start drops its job and keeps the rest.
    campaigns.unschedule(ws.store, campaign_id, now)
    running = job_scheduler.start(ws, threading.Event())
    try:
        stored_again = _stored_jobs(ws)
    finally:
        job_scheduler.stop_scheduler(ws, running)
    assert f"campaign-{campaign_id}" not in stored_again
    assert stored_again["digest"] == stored["digest"]
    ws.close()


def test_jobs_stored_under_the_old_module_name_are_re_created_after_the_upgrade(
    sched_dir: Path, sink
) -> None:
    """A database whose jobs name ``newsletter.scheduler`` (the module's old name) starts."""
    ws = open_ws(sched_dir, sink)
    running = job_scheduler.start(ws, threading.Event())
    job_scheduler.stop_scheduler(ws, running)
    conn = ws.store.conn
    # Rewrite the stored jobs as the previous release stored them, and undo m012.
    for job_id, state in conn.execute("SELECT id, job_state FROM apscheduler_jobs").fetchall():
        job = pickle.loads(state)
        job["func"] = job["func"].replace("newsletter.job_scheduler:", "newsletter.scheduler:")
        conn.execute(
            "UPDATE apscheduler_jobs SET job_state = ? WHERE id = ?", [pickle.dumps(job), job_id]
        )
    conn.execute("DELETE FROM _migrations WHERE name = 'm012_scheduler_module'")
    conn.commit()
    ws.close()

    ws = open_ws(sched_dir, sink)  # opening the store applies m012
    running = job_scheduler.start(ws, threading.Event())
    try:
        refs = {job.id: job.func_ref for job in running.get_jobs(jobstore="default")}
    finally:
        job_scheduler.stop_scheduler(ws, running)
    ws.close()
    assert {"poll", "due", "purge-events"} <= set(refs)
    assert all(ref.startswith("newsletter.job_scheduler:") for ref in refs.values())


def test_two_run_processes_on_one_workspace_send_one_campaign(cli, ws_dir: Path, env) -> None:
    """Two `newsletter run` against one database: the new articles make one campaign."""
    from conftest import free_port, stop_process, wait_for_http

    second_env = dict(env, NEWSLETTER_WEB__PORT=str(free_port()))
    procs = [cli.popen("run")]
    procs.append(type(cli)(cli.workspace, second_env).popen("run"))
    outbox = ws_dir / "outbox"
    rows = (ws_dir / "subscribers" / "example.csv").read_text(encoding="utf-8").splitlines()
    expected = sum(1 for row in rows if row.endswith(",confirmed") or ",confirmed," in row)
    logs = []
    try:
        wait_for_http(f"http://127.0.0.1:{env['NEWSLETTER_WEB__PORT']}/healthz", proc=procs[0])
        wait_for_http(
            f"http://127.0.0.1:{second_env['NEWSLETTER_WEB__PORT']}/healthz", proc=procs[1]
        )
        deadline = time.monotonic() + 60
        while len(list(outbox.glob("*.eml"))) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # room for a second campaign to show up, if one were made
    finally:
        logs = [stop_process(proc) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), logs
    assert "Traceback" not in "".join(logs)
    listed = cli("campaign", "list").stdout.strip().splitlines()
    assert len(listed) == 1 and "sent" in listed[0], listed
    recipients = Counter()
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients[message["To"].addresses[0].addr_spec] += 1
    assert len(recipients) == expected and set(recipients.values()) == {1}


def test_run_after_a_restore_sends_the_recent_campaign_and_reports_the_stale_one(
    cli, ws_dir: Path, env
) -> None:
    """`newsletter run` started late: within the grace window it sends, beyond it it reports."""
    from conftest import stop_process

    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")
    cli("campaign", "create", "--subject", "Stale", "--articles", "1")
    cli("campaign", "create", "--subject", "Recent", "--articles", "1")
    now = jobs.utc_now()
    ws = Workspace.open(ws_dir, env={})
    # As a restored backup would have them: due two days ago, and a minute ago.
    campaigns.schedule(ws.store, 1, now - dt.timedelta(days=2), now - dt.timedelta(days=3))
    campaigns.schedule(ws.store, 2, now - dt.timedelta(minutes=1), now - dt.timedelta(hours=1))
    proc = type(cli)(ws_dir, dict(env, NEWSLETTER_SCHEDULE__MODE="off")).popen("run")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            ws.store.campaign(1)["missed_at"] and ws.store.campaign_status(2) == "sent"
        ):
            time.sleep(0.1)
    finally:
        log = stop_process(proc)
    assert ws.store.campaign_status(2) == "sent", log
    assert ws.store.campaign(1)["status"] == "scheduled" and ws.store.campaign(1)["missed_at"]
    assert ws.store.delivery_counts(1)["sent"] == 0
    assert "campaign 1: missed: due" in log and "Traceback" not in log
    assert "missed" in cli("campaign", "list").stdout.splitlines()[0]
    ws.close()


def _last_sunday(year: int, month: int) -> dt.date:
    last = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - 6) % 7)


def test_cli_schedules_reschedules_and_unschedules_with_a_dst_note(cli, ws_dir: Path) -> None:
    # The command refuses times before the real now, so the DST changes are next year's:
    # in the EU, clocks change at 01:00 UTC on the last Sundays of March and October.
    year = dt.datetime.now(dt.UTC).year + 1
    spring, autumn = _last_sunday(year, 3), _last_sunday(year, 10)
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")
    cli("campaign", "create", "--subject", "Spring")
    result = cli("campaign", "schedule", "1", "--at", f"{spring} 02:30", "--tz", "Europe/Berlin")
    assert "does not exist in Europe/Berlin" in result.stderr
    assert f"{spring} 03:30 CEST" in result.stdout and f"({spring} 01:30 UTC)" in result.stdout
    assert "campaign 1 [manual]" not in cli("schedule", "list").stdout
    assert "campaign 1 Spring" in cli("schedule", "list").stdout
    result = cli("campaign", "reschedule", "1", "--at", f"{autumn} 02:30", "--tz", "Europe/Berlin")
    assert "occurs twice" in result.stderr and f"({autumn} 00:30 UTC)" in result.stdout
    cli("campaign", "unschedule", "1")
    assert " draft " in cli("campaign", "list").stdout
    refused = cli("campaign", "reschedule", "1", "--at", f"{autumn} 09:00", check=False)
    assert refused.returncode == 1 and "cannot schedule a campaign that is draft" in refused.stderr
    assert "02:30" in cli("campaign", "schedule", "--help").stdout


def test_a_missed_campaign_sent_by_hand_loses_its_missed_mark(sched_dir: Path, sink) -> None:
    ws = open_ws(sched_dir, sink, misfire_grace_time="600")
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(ws, clock, at(2026, 11, 27, 9, 0))
    clock.now = at(2026, 11, 28, 9, 30)
    jobs.run_schedule(ws, clock)
    assert ws.store.campaign(campaign_id)["missed_at"]
    assert jobs.send_campaign(ws, ws.store, campaign_id, clock).finished
    campaign = ws.store.campaign(campaign_id)
    assert campaign["status"] == "sent" and campaign["missed_at"] is None
    assert campaign["note"] is None
    ws.close()


def test_a_campaign_paused_part_way_is_resumed_not_scheduled_again(sched_dir: Path, sink) -> None:
    ws = open_ws(sched_dir, sink)
    clock = Clock(at(2026, 11, 27, 8, 0))
    campaign_id = _scheduled(ws, clock, at(2026, 11, 27, 9, 0))
    campaigns.start(ws.store, campaign_id, clock())
    campaigns.pause(ws.store, campaign_id, clock())
    with pytest.raises(StateError, match="resume it"):
        campaigns.schedule(ws.store, campaign_id, at(2026, 11, 28, 9, 0), clock())
    assert ws.store.campaign_status(campaign_id) == "paused"
    campaigns.resume(ws.store, campaign_id, clock())
    assert jobs.send_campaign(ws, ws.store, campaign_id, clock).finished
    assert Counter(to for to, _, _ in mails(sink)) == Counter(SUBSCRIBERS)
    ws.close()


def test_one_bad_subscriber_file_fails_alone_and_the_poll_goes_on(
    sched_dir: Path, sink: SmtpSink, caplog
) -> None:
    """A CSV with no email column sorted first must not stop the other files or the campaign."""
    (sched_dir / "subscribers" / "0-bad.csv").write_text("name,city\nA,B\n", encoding="utf-8")
    ws = open_ws(sched_dir, sink, mode="instant")
    clock = Clock(at(2026, 11, 27, 9, 0))
    write_article(sched_dir, "a", "Post a", "2026-11-27")
    with caplog.at_level(logging.INFO, logger="newsletter"):
        jobs.poll(ws, clock)
    jobs.send_due(ws, clock)
    assert sorted(s["email"] for s in ws.store.subscribers()) == SUBSCRIBERS
    [campaign] = ws.store.campaigns()
    assert (campaign["kind"], campaign["status"], campaign["sent"]) == ("instant", "sent", 3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert "0-bad.csv" in line and "fix or remove it" in line and "\n" not in line
    ws.close()
