"""What can be configured: one frozen dataclass per section, the secrets, the sane ranges.

Declarative: the keys, their types and defaults are these dataclasses; ``load``
fills them from ``newsletter.toml`` and the environment, ``checks`` judges the
values, docgen writes docs/configuration.md from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from newsletter.errors import ConfigError

CONFIG_FILE = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
TRANSPORTS = ("outbox", "smtp", "sendgrid", "mailgun", "postmark", "ses")
# Key names that look like secrets are refused in the file, whatever section they are in.
SECRET_WORDS = ("password", "api_key", "secret", "token", "private_key")


@dataclass(frozen=True)
class Database:
    path: str = "newsletter.db"


@dataclass(frozen=True)
class Sender:
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    postal_address: str = ""
    # A monitored mailbox for RFC 2369 mailto unsubscribes; empty means the
    # List-Unsubscribe header carries only the HTTPS one-click URL.
    unsubscribe_mailto: str = ""


@dataclass(frozen=True)
class Site:
    base_url: str = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Delivery:
    transport: str = "outbox"
    rate_per_second: float = 0.0
    concurrency: int = 1  # sender threads, and SMTP connections
    outbox_dir: str = "outbox"
    max_attempts: int = 25  # tries per message before a temporary failure counts as failed
    retry_backoff: float = 300.0  # seconds before the first retry; doubles each time
    max_retry_backoff: float = 4000.0  # the longest wait between two tries
    pause_after_failures: int = 10  # temporary failures in a row that pause a campaign
    # Processes that share a large campaign (each with its part of the connections);
    # 0: one per CPU core. Rendering and signing are CPU work one process cannot spread.
    processes: int = 0


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    timeout: float = 30.0


# Each entry of [sources] feeds, pages and folders is a plain string (the URL or
# folder) or a table with per-source options:
#     feeds = ["https://a.example/feed",
#              { url = "https://b.example/blog-feed.xml", full_text = true }]
SourceList = list
SOURCE_KINDS = {"feeds": "feed", "pages": "page", "folders": "folder"}
SOURCE_OPTIONS: dict[str, dict[str, str]] = {
    "feed": {
        "url": "text",
        "full_text": "bool",
        "announce_updates": "bool",
        "backfill": "backfill",
        "wix_site_id": "text",
        "wix_api_base": "text",
    },
    "page": {"url": "text", "announce_updates": "bool", "backfill": "backfill"},
    "folder": {"path": "text", "announce_updates": "bool", "backfill": "backfill"},
}
WIX_API_BASE = "https://www.wixapis.com"


@dataclass(frozen=True)
class SourceSpec:
    """One article source with its options filled in."""

    kind: str
    location: str
    announce_updates: bool = False
    # On the first fetch, how many items published before the source was added
    # still count as new; None means all of them.
    backfill: int | None = 0
    full_text: bool = False
    wix_site_id: str = ""
    wix_api_base: str = WIX_API_BASE

    @property
    def is_remote(self) -> bool:
        return self.kind in ("feed", "page")


@dataclass(frozen=True)
class Sources:
    feeds: SourceList = field(default_factory=list)
    folders: SourceList = field(default_factory=lambda: ["articles"])
    pages: SourceList = field(default_factory=list)
    # The default for every source that does not say announce_updates itself.
    announce_updates: bool = False
    # Fetch limits for feeds and pages (and the Wix metrics API).
    timeout: float = 20.0
    max_bytes: int = 10_000_000
    max_redirects: int = 5
    # Loopback and private addresses are refused unless allowed here: an
    # intranet blog, or a test server on 127.0.0.1.
    allow_private_addresses: bool = False
    allowed_networks: list[str] = field(default_factory=list)
    # Only the newest this many items of a feed are read (see sources/feed.py).
    max_items_per_feed: int = 200

    def specs(self) -> list[SourceSpec]:
        """Every configured source, folders first; ConfigError names the first bad entry.

        Settings loaded through the workspace have been validated already, so
        this raises only for settings built some other way.
        """
        return [
            source_spec(name, index, entry, self.announce_updates)
            for name in ("folders", "feeds", "pages")
            for index, entry in enumerate(getattr(self, name))
        ]


def source_spec(name: str, index: int, entry: Any, announce_updates: bool) -> SourceSpec:
    """Read one [sources] entry; ConfigError names it as ``sources.feeds[2]``."""
    kind = SOURCE_KINDS[name]
    where = f"sources.{name}[{index}]"
    place = "path" if kind == "folder" else "url"
    options: dict[str, Any] = {place: entry} if isinstance(entry, str) else dict(entry)
    known = SOURCE_OPTIONS[kind]
    values: dict[str, Any] = {}
    for key, value in options.items():
        if any(word in key.lower() for word in SECRET_WORDS):
            raise ConfigError(
                f"{where}.{key}: secrets must not be stored in the file; "
                f"set the environment variable instead"
            )
        if key not in known:
            raise ConfigError(
                f"{where}: unknown option {key!r} for a {kind}; use {', '.join(sorted(known))}"
            )
        expected = known[key]
        if expected == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
        if expected == "text" and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected text, got {value!r}")
        if expected == "backfill":
            if value == "all":
                value = None
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f'{where}.backfill: expected a whole number of 0 or more, or "all"; '
                    f"got {value!r}"
                )
        values[key] = value
    location = str(values.pop(place, "")).strip()
    if not location:
        raise ConfigError(f"{where}: give the {kind}'s {place}")
    if kind != "folder" and not location.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {location!r} must start with http:// or https://")
    base = values.get("wix_api_base", WIX_API_BASE)
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.wix_api_base: must start with http:// or https://")
    values.setdefault("announce_updates", announce_updates)
    # A folder is written for the newsletter, so every file in it counts; a
    # feed or a blog page comes with the blog's whole back catalogue.
    values.setdefault("backfill", None if kind == "folder" else 0)
    return SourceSpec(kind=kind, location=location, **values)


@dataclass(frozen=True)
class Subscribers:
    # CSV files here are imported on every poll; re-importing changes nothing.
    folder: str = "subscribers"
    import_confirmed: bool = False
    # Double opt-in: how long a confirmation link works, and the template sets
    # of the confirmation and welcome emails ("" sends no welcome email).
    confirm_days: int = 7
    confirm_template: str = "confirm"
    welcome_template: str = ""
    # Sign-ups the public form takes from one network (/24 or /48) per hour.
    form_limit_per_hour: int = 5


@dataclass(frozen=True)
class Consent:
    # Shown beside the subscribe form's checkbox and stored, with its version,
    # in every consent record; change the version whenever the text changes.
    text: str = (
        "Yes, send me the newsletter by email. I can unsubscribe at any time "
        "with the link in every email."
    )
    version: str = "1"


@dataclass(frozen=True)
class Schedule:
    poll_interval: int = 300
    mode: str = "off"  # off, instant or digest
    # digest: "minute hour day month weekday" in ``timezone`` (weekday names or 0-7, 0 = Sunday)
    digest_cron: str = "0 9 * * mon"
    timezone: str = "UTC"
    # A due time missed by less than this (seconds) still runs, once; by more, it is
    # reported and left for a person (never a stale campaign after a restore).
    misfire_grace_time: int = 3600
    # instant: wait until no new article has come for this long (seconds), so a burst
    # of posts makes one email.
    quiet_period: int = 0
    # instant and digest: make the campaign as a draft for someone to approve.
    hold_as_draft: bool = False


@dataclass(frozen=True)
class Automation:
    # Sent by the scheduler to each subscriber who confirms, after ``welcome_delay``
    # seconds: a template set ("" for none) and an email with the latest articles.
    welcome_template: str = ""
    welcome_delay: int = 0
    latest_articles: int = 0


@dataclass(frozen=True)
class Dkim:
    # All three set: every SMTP message is signed. The key file lives outside the
    # repository (or the PEM is in NEWSLETTER_DKIM_PRIVATE_KEY).
    domain: str = ""
    selector: str = ""
    private_key_file: str = ""
    # A second key, Ed25519 (RFC 8463), signing beside the first (RSA): receivers that
    # know only RSA still find a signature they can check.
    ed25519_selector: str = ""
    ed25519_private_key_file: str = ""


# Email API providers. Keys and webhook secrets come only from the environment
# (see Secrets); api_base / endpoint_url override the official address (a proxy,
# a test server) and are empty in normal use.
@dataclass(frozen=True)
class SendGrid:
    region: str = "us"  # us or eu (api.eu.sendgrid.com, for EU subusers)
    api_base: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class Mailgun:
    domain: str = ""  # the sending domain, as in /v3/DOMAIN/messages
    region: str = "us"  # us or eu (api.eu.mailgun.net)
    api_base: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class Postmark:
    # Newsletters go on a broadcast stream, never the transactional one.
    message_stream: str = "broadcast"
    api_base: str = ""
    timeout: float = 60.0


@dataclass(frozen=True)
class Ses:
    region: str = "us-east-1"
    endpoint_url: str = ""
    # Needed for SES to publish events (with our delivery tag) to SNS.
    configuration_set: str = ""
    # The SNS topics whose notifications /webhooks/ses accepts; all others are refused.
    topic_arns: list[str] = field(default_factory=list)
    timeout: float = 30.0


@dataclass(frozen=True)
class Web:
    host: str = "127.0.0.1"
    port: int = 8080
    # Addresses or networks of reverse proxies whose X-Forwarded-For is believed;
    # empty: the connecting address is the client, whatever a header claims.
    trusted_proxies: list[str] = field(default_factory=list)
    # The largest request bodies taken: a provider's webhook batch, a dashboard CSV upload.
    max_webhook_bytes: int = 10_000_000
    max_upload_bytes: int = 50_000_000
    # Admins must sign in with a second factor (TOTP) as well as the password.
    require_2fa: bool = False


@dataclass(frozen=True)
class Tracking:
    enabled: bool = True
    truncate_ip: bool = True
    # Count opens and clicks without storing who: events keep no subscriber id.
    anonymous: bool = False
    # Raw open, click and view events older than this are deleted (0: kept forever).
    retention_days: int = 0
    # A machine-signals file replacing the built-in one (see classify.py).
    signals_file: str = ""


@dataclass(frozen=True)
class Templates:
    # "auto": the announcement design for one article, the digest for several.
    default: str = "auto"
    # The inbox preview text of a campaign that sets none: "auto" (the article's
    # summary, or the titles of several), a fixed text, or "" for none.
    preheader: str = "auto"
    # The language of the emails (a BCP 47 tag such as en, de-CH, ar): the lang
    # attribute, and the writing direction (right to left for Arabic, Hebrew ...).
    language: str = "en"


@dataclass(frozen=True)
class Settings:
    database: Database = field(default_factory=Database)
    sender: Sender = field(default_factory=Sender)
    site: Site = field(default_factory=Site)
    delivery: Delivery = field(default_factory=Delivery)
    smtp: Smtp = field(default_factory=Smtp)
    sources: Sources = field(default_factory=Sources)
    subscribers: Subscribers = field(default_factory=Subscribers)
    consent: Consent = field(default_factory=Consent)
    schedule: Schedule = field(default_factory=Schedule)
    automation: Automation = field(default_factory=Automation)
    dkim: Dkim = field(default_factory=Dkim)
    sendgrid: SendGrid = field(default_factory=SendGrid)
    mailgun: Mailgun = field(default_factory=Mailgun)
    postmark: Postmark = field(default_factory=Postmark)
    ses: Ses = field(default_factory=Ses)
    web: Web = field(default_factory=Web)
    tracking: Tracking = field(default_factory=Tracking)
    templates: Templates = field(default_factory=Templates)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Return the effective settings; they never contain secrets."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Secrets:
    """Values read only from the environment, never written anywhere."""

    secret_key: str = field(default="", repr=False)
    smtp_password: str = field(default="", repr=False)
    dkim_private_key: str = field(default="", repr=False)
    dkim_ed25519_private_key: str = field(default="", repr=False)
    # Wix Blog metrics API key, for feeds that set wix_site_id.
    wix_api_key: str = field(default="", repr=False)
    # Email API providers: sending keys, then what verifies their webhooks.
    sendgrid_api_key: str = field(default="", repr=False)
    mailgun_api_key: str = field(default="", repr=False)
    postmark_server_token: str = field(default="", repr=False)
    aws_access_key_id: str = field(default="", repr=False)
    aws_secret_access_key: str = field(default="", repr=False)
    aws_session_token: str = field(default="", repr=False)
    sendgrid_webhook_public_key: str = field(default="", repr=False)
    mailgun_webhook_signing_key: str = field(default="", repr=False)
    postmark_webhook_user: str = field(default="", repr=False)
    postmark_webhook_password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Secrets:
        return cls(
            secret_key=env.get("NEWSLETTER_SECRET_KEY", ""),
            smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD", ""),
            dkim_private_key=env.get("NEWSLETTER_DKIM_PRIVATE_KEY", ""),
            dkim_ed25519_private_key=env.get("NEWSLETTER_DKIM_ED25519_PRIVATE_KEY", ""),
            wix_api_key=env.get("NEWSLETTER_WIX_API_KEY", ""),
            sendgrid_api_key=env.get("NEWSLETTER_SENDGRID_API_KEY", ""),
            mailgun_api_key=env.get("NEWSLETTER_MAILGUN_API_KEY", ""),
            postmark_server_token=env.get("NEWSLETTER_POSTMARK_SERVER_TOKEN", ""),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", ""),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
            aws_session_token=env.get("AWS_SESSION_TOKEN", ""),
            sendgrid_webhook_public_key=env.get("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", ""),
            mailgun_webhook_signing_key=env.get("NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY", ""),
            postmark_webhook_user=env.get("NEWSLETTER_POSTMARK_WEBHOOK_USER", ""),
            postmark_webhook_password=env.get("NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD", ""),
        )


DAY = 86400
# Every numeric setting's sane range, inclusive: beyond it a value is a typo or would
# exhaust the machine (a million sender threads cannot start).
BOUNDS: dict[str, tuple[float, float, str]] = {
    "delivery.rate_per_second": (0, 100_000, " messages per second (0: no limit)"),
    "delivery.concurrency": (1, 256, " sender threads and connections"),
    "delivery.processes": (0, 64, " processes (0: one per CPU core)"),
    "delivery.max_attempts": (1, 1000, " tries"),
    "delivery.retry_backoff": (1, DAY, " seconds"),
    "delivery.max_retry_backoff": (1, 7 * DAY, " seconds"),
    "delivery.pause_after_failures": (1, 100_000, " failures"),
    "smtp.port": (1, 65535, ""),
    "smtp.timeout": (0.1, 600, " seconds"),
    "sources.timeout": (0.1, 600, " seconds"),
    "sources.max_bytes": (1024, 1_000_000_000, " bytes"),
    "sources.max_redirects": (0, 20, ""),
    "subscribers.confirm_days": (1, 365, " days"),
    "subscribers.form_limit_per_hour": (1, 100_000, " sign-ups"),
    "schedule.poll_interval": (1, 7 * DAY, " seconds"),
    "schedule.misfire_grace_time": (60, 31 * DAY, " seconds"),
    "schedule.quiet_period": (0, 7 * DAY, " seconds"),
    "automation.welcome_delay": (0, 365 * DAY, " seconds"),
    "automation.latest_articles": (0, 100, " articles"),
    "sendgrid.timeout": (0.1, 600, " seconds"),
    "mailgun.timeout": (0.1, 600, " seconds"),
    "postmark.timeout": (0.1, 600, " seconds"),
    "ses.timeout": (0.1, 600, " seconds"),
    "web.port": (0, 65535, " (0: any free port)"),
    "tracking.retention_days": (0, 36500, " days (0: kept)"),
}
