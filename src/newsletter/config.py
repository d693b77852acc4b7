"""Settings from ``newsletter.toml`` in the workspace, overridden by environment variables.

Every key ``[section] key`` can be overridden by ``NEWSLETTER_<SECTION>__<KEY>``
(``NEWSLETTER_WEB__PORT=9000``). Secrets never live in the file or the
database: they come only from the environment (see ``Secrets``), so the file
can be committed and shown on a settings page as it is.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# What every key means, for docs/configuration.md (generated by newsletter.docgen; a test
# fails when a key of the dataclasses above has no entry here, or an entry names no key).
# Defaults and ranges are not repeated: the generator reads them from the dataclasses and
# BOUNDS. Markdown; one place for each meaning.
KEY_DOCS: dict[str, str] = {
    "database.path": "The SQLite file, relative to the workspace.",
    "sender.from_name": "The name newsletters are from.",
    "sender.from_address": "The address newsletters are sent from (required).",
    "sender.reply_to": "The Reply-To address.",
    "sender.postal_address": "Required: shown in every footer (CAN-SPAM).",
    "sender.unsubscribe_mailto": (
        "A monitored mailbox to add as a `mailto:` in `List-Unsubscribe`; empty: the header "
        "carries only the HTTPS one-click URL."
    ),
    "site.base_url": (
        "The public URL of the web server; every link starts here. When mail leaves the "
        "machine (`smtp` to another host, or an email API) it must be `https` and not a "
        "loopback or private address, or every command that sends refuses to start "
        "(List-Unsubscribe and every tracked link would be dead); `config check` warns when "
        "a local `base_url`'s port is not `[web] port`, and when `smtp` goes to a server on "
        "this machine (usually a relay that sends the mail on) while `base_url` is local or "
        "not `https`: the links then only work if the mail never leaves this machine, as "
        "with a mail catcher."
    ),
    "delivery.transport": (
        "`outbox`, `smtp`, or an email API: `sendgrid`, `mailgun`, `postmark`, `ses` "
        "(see [Email providers](providers.md))."
    ),
    "delivery.rate_per_second": ("Messages per second, capped with a sliding one-second window."),
    "delivery.concurrency": "Sender threads and SMTP (or HTTPS) connections, in all.",
    "delivery.outbox_dir": "Where the outbox transport writes `.eml` files.",
    "delivery.max_attempts": "Tries per message before a temporary failure counts as failed.",
    "delivery.retry_backoff": (
        "Seconds before the first retry; the wait doubles each time, with random jitter."
    ),
    "delivery.max_retry_backoff": "The longest wait between two tries, in seconds.",
    "delivery.pause_after_failures": (
        "Failures in a row (temporary, refused messages or in doubt) that pause a campaign."
    ),
    "delivery.processes": (
        "Processes that share a campaign of 1,000 or more due messages (never more than "
        "`concurrency`, nor than a whole `rate_per_second`)."
    ),
    "smtp.host": "The SMTP server.",
    "smtp.port": "Its port.",
    "smtp.security": "`starttls`, `ssl` or `none`.",
    "smtp.username": (
        "The login, if the server wants one (the password: `NEWSLETTER_SMTP_PASSWORD`)."
    ),
    "smtp.timeout": "Seconds to wait for the server.",
    "sources.feeds": (
        "RSS and Atom feeds: a URL each, or a table with options "
        "(see [Article sources](sources.md))."
    ),
    "sources.folders": (
        "Folders of article files, relative to the workspace: a path each, or a table with options."
    ),
    "sources.pages": ("Article pages or blog index pages: a URL each, or a table with options."),
    "sources.announce_updates": (
        "The default for sources that do not say: announce an edited article again."
    ),
    "sources.timeout": ("Seconds a request to a feed, page or API may take in all, by the clock."),
    "sources.max_bytes": "The largest answer taken, counted after decompression.",
    "sources.max_redirects": "Redirects followed, one at a time.",
    "sources.max_items_per_feed": (
        "Read only the newest this many items of a feed (1–10000); the fetch says how many "
        "were left out."
    ),
    "sources.allow_private_addresses": (
        "Allow loopback and private addresses (an intranet blog, a test server); "
        "cloud-metadata addresses never."
    ),
    "sources.allowed_networks": (
        "Allow only these loopback or private networks, such as `10.0.0.0/8`."
    ),
    "subscribers.folder": (
        "CSV files here are imported on every poll; re-importing changes nothing."
    ),
    "subscribers.import_confirmed": (
        "Rows of those files without a status column count as confirmed (they opted in "
        "elsewhere), as `subscribers import --confirmed` does."
    ),
    "subscribers.confirm_days": "How long a confirmation link works, in days.",
    "subscribers.confirm_template": "The template set of the confirmation email.",
    "subscribers.welcome_template": (
        "The template set of the welcome email the web server sends at once on confirmation "
        "(empty: no welcome email; the built-in one is `welcome`)."
    ),
    "subscribers.form_limit_per_hour": (
        "Sign-ups the public form takes from one network (/24 or /48) per hour."
    ),
    "consent.text": (
        "Shown beside the subscribe form's checkbox and stored in every consent record."
    ),
    "consent.version": "Stored with the text; change it whenever the text changes.",
    "schedule.poll_interval": "Seconds between two polls of the sources by `newsletter run`.",
    "schedule.mode": (
        "`off` (campaigns by hand), `instant` or `digest` "
        "(see [Scheduling](sending.md#scheduling))."
    ),
    "schedule.digest_cron": (
        'Digest mode: crontab "minute hour day month weekday" in `timezone` (weekday names, '
        "or 0–7 with 0 and 7 Sunday; when both day and weekday are restricted, both must "
        "match)."
    ),
    "schedule.timezone": (
        "The IANA zone of `campaign list`, `schedule list`, `--tz` and the digest rule."
    ),
    "schedule.misfire_grace_time": (
        "Seconds a due time may be missed by and still run, once; later it is reported and "
        "left for a person."
    ),
    "schedule.quiet_period": (
        "Instant mode: wait until no new article has come for this many seconds, so a burst "
        "of posts makes one email."
    ),
    "schedule.hold_as_draft": (
        "Instant and digest modes: make a draft to approve instead of sending."
    ),
    "automation.welcome_template": (
        "Sent by `newsletter run` to each subscriber who confirms, `welcome_delay` seconds "
        "later: a welcome template set (empty: none). Use this or `[subscribers] "
        "welcome_template` (sent by the web server at once), not both."
    ),
    "automation.welcome_delay": "Seconds after the confirmation the welcome steps are due.",
    "automation.latest_articles": (
        "An email with the newest this many articles, sent as a welcome step (0: none)."
    ),
    "dkim.domain": (
        "The signing domain. With `domain`, `selector` and a key, every SMTP and outbox "
        "message is signed."
    ),
    "dkim.selector": "The DNS selector of the RSA key.",
    "dkim.private_key_file": (
        "The RSA key's PEM file, outside the repository (or the PEM in "
        "`NEWSLETTER_DKIM_PRIVATE_KEY`)."
    ),
    "dkim.ed25519_selector": "The selector of a second, Ed25519 key signing beside the RSA one.",
    "dkim.ed25519_private_key_file": (
        "That key's PEM file (or the PEM in `NEWSLETTER_DKIM_ED25519_PRIVATE_KEY`)."
    ),
    "sendgrid.region": "`eu` sends through `api.eu.sendgrid.com` (EU subusers).",
    "sendgrid.api_base": (
        "Another address for the API (a proxy, a test server); empty is the official one."
    ),
    "sendgrid.timeout": "Seconds to wait for the API's answer.",
    "mailgun.domain": "The sending domain, as in `/v3/DOMAIN/messages` (required for Mailgun).",
    "mailgun.region": "`eu` sends through `api.eu.mailgun.net`.",
    "mailgun.api_base": (
        "Another address for the API (a proxy, a test server); empty is the official one."
    ),
    "mailgun.timeout": "Seconds to wait for the API's answer.",
    "postmark.message_stream": (
        "The id of the Broadcast message stream newsletters go on (never the transactional one)."
    ),
    "postmark.api_base": (
        "Another address for the API (a proxy, a test server); empty is the official one."
    ),
    "postmark.timeout": "Seconds to wait for the API's answer.",
    "ses.region": "The AWS region.",
    "ses.endpoint_url": (
        "Another address for the API (a proxy, a test server); empty is the official one."
    ),
    "ses.configuration_set": (
        "The configuration set that publishes SES events (with our tag) to SNS."
    ),
    "ses.topic_arns": (
        "The SNS topics whose notifications `/webhooks/ses` accepts; all others are refused."
    ),
    "ses.timeout": "Seconds to wait for the API's answer.",
    "web.host": "The address the web server listens on.",
    "web.port": "Its port.",
    "web.trusted_proxies": (
        "Reverse proxies (addresses or networks such as `10.0.0.0/8`) whose "
        "`X-Forwarded-For` is believed; empty: the connecting address is the client, "
        'whatever a header claims. Behind nginx on the same machine, set `["127.0.0.1"]`.'
    ),
    "web.max_webhook_bytes": (
        "The largest provider webhook body taken (1024 to 1,000,000,000). A body is counted "
        "while it streams in and refused with 413 at the limit."
    ),
    "web.max_upload_bytes": (
        "The largest dashboard CSV upload taken (1024 to 2,000,000,000). Public forms and "
        "sign-in take 16 KB, other dashboard forms 1 MB; a file upload anywhere but the CSV "
        "import is refused with 415 unread."
    ),
    "web.require_2fa": (
        "Admins must sign in with a code from an authenticator app as well as the password."
    ),
    "tracking.enabled": (
        "Off: no pixel, no rewritten links, and the server records no opens, clicks or views "
        "(old links still work)."
    ),
    "tracking.truncate_ip": "Store IP addresses truncated to /24 (IPv4) or /48 (IPv6).",
    "tracking.anonymous": (
        "Store opens, clicks and views without the subscriber (counted, classified, not "
        "linked to anyone)."
    ),
    "tracking.retention_days": (
        "Raw opens, clicks and views older than this many days are deleted daily."
    ),
    "tracking.signals_file": (
        "A machine-signals file replacing the built-in one "
        "(see [Human or machine](deliverability-and-privacy.md#human-or-machine))."
    ),
    "templates.default": (
        "The template set used when a campaign names none: `auto` is `announcement` for one "
        "article, `digest` for several. The announcement shows one article, so a campaign of "
        "several named `announcement` uses `digest` (and says so): every article a campaign "
        "carries, and counts as sent, is in the email."
    ),
    "templates.preheader": (
        "The inbox preview text of a campaign that sets none (command line, dashboard and "
        "automatic campaigns alike): `auto` is the article's summary, or the titles of "
        'several (newest first); any other text is used as it is; `""` for none. It is '
        "hidden by `display:none` and size, not by colour."
    ),
    "templates.language": (
        "The emails' language (a BCP 47 tag such as `en`, `de-CH`, `ar`): `lang` on every "
        'email, and `dir="rtl"` for languages written right to left (Arabic, Hebrew, '
        "Persian, Urdu …)."
    ),
}

# The per-source options of [sources] feeds, pages and folders (SOURCE_OPTIONS).
SOURCE_OPTION_DOCS: dict[str, str] = {
    "url": "The feed's or page's address (a plain string entry is this).",
    "path": "The folder (a plain string entry is this).",
    "announce_updates": "Announce an edited article again (default: `[sources] announce_updates`).",
    "backfill": (
        'On the first fetch, how many older items still count as new: a number or `"all"` '
        '(default 0 for feeds and pages, `"all"` for folders).'
    ),
    "full_text": "Fetch each new or changed item's page for the whole body.",
    "wix_site_id": (
        "Add each post's views, comments and likes from the Wix Blog API "
        "(with `NEWSLETTER_WIX_API_KEY` set), at most once an hour."
    ),
    "wix_api_base": "Another address for the Wix API (a test server).",
}

# The environment variables Secrets.from_env reads, for docs/configuration.md.
SECRET_DOCS: dict[str, str] = {
    "NEWSLETTER_SECRET_KEY": (
        "Signs every tracking and unsubscribe link; without it the workspace's generated "
        "`.secret_key` file is used."
    ),
    "NEWSLETTER_SMTP_PASSWORD": "The SMTP password.",
    "NEWSLETTER_DKIM_PRIVATE_KEY": "The RSA DKIM key as PEM, instead of `[dkim] private_key_file`.",
    "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY": (
        "The Ed25519 DKIM key as PEM, instead of `[dkim] ed25519_private_key_file`."
    ),
    "NEWSLETTER_WIX_API_KEY": "Wix Blog metrics (optional), for feeds that set `wix_site_id`.",
    "NEWSLETTER_SENDGRID_API_KEY": "SendGrid: sending (Mail Send permission).",
    "NEWSLETTER_MAILGUN_API_KEY": "Mailgun: sending.",
    "NEWSLETTER_POSTMARK_SERVER_TOKEN": "Postmark: sending.",
    "AWS_ACCESS_KEY_ID": (
        "Amazon SES: sending; no shared credentials file or instance role is read."
    ),
    "AWS_SECRET_ACCESS_KEY": "Amazon SES: sending.",
    "AWS_SESSION_TOKEN": "Amazon SES: for temporary credentials.",
    "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": (
        "SendGrid webhook: the Signed Event Webhook's verification key, as shown."
    ),
    "NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY": "Mailgun webhook: the signing key.",
    "NEWSLETTER_POSTMARK_WEBHOOK_USER": (
        "Postmark webhook: the HTTP Basic user in the webhook URL."
    ),
    "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": "Postmark webhook: its password.",
}


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type a setting declares."""
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind_name == "SourceList":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str | dict) for v in value):
            return value
        raise ConfigError(
            f"{where}: expected a list of addresses or of tables such as "
            f'{{ url = "https://…", full_text = true }}, got {value!r}'
        )
    if kind_name.startswith("list"):
        if isinstance(value, str):
            # Environment values: a comma-separated list.
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    if kind_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind_name == "int":
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if kind_name == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def _read_file(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: Windows Notepad starts a UTF-8 file with a BOM, which TOML
        # itself does not allow; the file is meant all the same.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration file; run `newsletter init` to create a workspace"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def collect(
    raw: Mapping[str, Any], env: Mapping[str, str], origin: str
) -> tuple[Settings, list[str]]:
    """Build settings from parsed TOML and the environment; return them with every problem found.

    Problems are collected rather than raised one at a time so that
    ``config check`` can show them all at once.
    """
    problems: list[str] = []
    sections: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(Settings)}
    for name in raw:
        if name not in known:
            problems.append(f"{origin}: unknown section [{name}]")
    for section_name, section_field in known.items():
        section_cls = section_field.default_factory  # type: ignore[misc]
        raw_section = raw.get(section_name, {})
        if not isinstance(raw_section, dict):
            problems.append(f"{origin}: [{section_name}] must be a table")
            raw_section = {}
        key_fields = {f.name: f for f in dataclasses.fields(section_cls)}
        values: dict[str, Any] = {}
        for key, value in raw_section.items():
            where = f"{origin}: {section_name}.{key}"
            if any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_file"):
                problems.append(
                    f"{where}: secrets must not be stored in the file; "
                    f"set the environment variable instead"
                )
                continue
            if key not in key_fields:
                problems.append(f"{where}: unknown key")
                continue
            try:
                values[key] = _coerce(value, key_fields[key].type, where)
            except ConfigError as exc:
                problems.append(str(exc))
        for key, key_field in key_fields.items():
            env_name = f"{ENV_PREFIX}{section_name.upper()}__{key.upper()}"
            if env_name in env:
                try:
                    values[key] = _coerce(env[env_name], key_field.type, env_name)
                except ConfigError as exc:
                    problems.append(str(exc))
        sections[section_name] = section_cls(**values)
    problems.extend(unknown_overrides(env))
    settings = Settings(**sections)
    problems.extend(validate(settings))
    return settings, problems


def unknown_overrides(env: Mapping[str, str]) -> list[str]:
    """``NEWSLETTER_<SECTION>__<KEY>`` variables that name no setting, as the file's are named.

    A typo in an override would otherwise be ignored without a word, and the
    setting left as it was. The value is never shown (it may be a secret).
    """
    sections = {
        f.name: {k.name for k in dataclasses.fields(f.default_factory)}  # type: ignore[arg-type]
        for f in dataclasses.fields(Settings)
    }
    secrets = {f"{ENV_PREFIX}{f.name.upper()}" for f in dataclasses.fields(Secrets)}
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if name == f"{ENV_PREFIX}{section.upper()}__{key.upper()}" and key in sections.get(
            section, ()
        ):
            continue
        if section not in sections:
            problems.append(f"{name}: unknown section [{section}]")
            continue
        hint, upper = "", name.upper()
        if key in sections[section]:
            hint = f"; environment variable names are upper case: {upper}"
        elif upper.replace("__", "_") in secrets:
            hint = f"; secrets are read from {upper.replace('__', '_')}"
        problems.append(f"{name}: {section}.{key}: unknown key{hint}")
    return problems


def validate(settings: Settings) -> list[str]:
    """Return the problems of settings that parsed but do not make sense together."""
    problems = []
    s = settings
    if not s.sender.from_address or "@" not in s.sender.from_address:
        problems.append("sender.from_address: set the address newsletters are sent from")
    if not s.sender.postal_address.strip():
        problems.append(
            "sender.postal_address: a postal address is required in every newsletter footer "
            "(CAN-SPAM); set it in [sender]"
        )
    if not s.site.base_url.startswith(("http://", "https://")):
        problems.append("site.base_url: must start with http:// or https://")
    if s.delivery.transport not in TRANSPORTS:
        problems.append(
            f"delivery.transport: unknown transport {s.delivery.transport!r}; "
            f"use one of {', '.join(TRANSPORTS)}"
        )
    if s.delivery.concurrency < 1:
        problems.append("delivery.concurrency: must be at least 1")
    if s.delivery.processes < 0:
        problems.append("delivery.processes: must be 0 (one per CPU core) or more")
    dkim_keys = (s.dkim.domain, s.dkim.selector or s.dkim.ed25519_selector)
    if any(dkim_keys) and not all(dkim_keys):
        problems.append(
            "dkim: set both domain and selector (and private_key_file or "
            "NEWSLETTER_DKIM_PRIVATE_KEY), or neither"
        )
    if s.dkim.ed25519_selector and not s.dkim.domain:
        problems.append("dkim.ed25519_selector: set dkim.domain too (the signing domain)")
    if s.dkim.ed25519_private_key_file and not s.dkim.ed25519_selector:
        problems.append(
            "dkim.ed25519_private_key_file: set dkim.ed25519_selector, the DNS name of its key"
        )
    if s.delivery.max_attempts < 1:
        problems.append("delivery.max_attempts: must be at least 1")
    if s.delivery.pause_after_failures < 1:
        problems.append("delivery.pause_after_failures: must be at least 1")
    if s.delivery.rate_per_second < 0:
        problems.append("delivery.rate_per_second: must be 0 (no limit) or more")
    if s.smtp.security not in ("starttls", "ssl", "none"):
        problems.append("smtp.security: use one of starttls, ssl, none")
    if not 0 < s.smtp.port < 65536:
        problems.append("smtp.port: must be between 1 and 65535")
    if not 0 <= s.web.port < 65536:
        problems.append("web.port: must be between 0 and 65535")
    if s.tracking.retention_days < 0:
        problems.append("tracking.retention_days: must be 0 (keep events) or more days")
    if s.schedule.mode not in ("off", "instant", "digest"):
        problems.append("schedule.mode: use one of off, instant, digest")
    problems.extend(_source_problems(s.sources))
    problems.extend(_provider_problems(s))
    problems.extend(_subscriber_problems(s.subscribers, s.consent))
    problems.extend(_schedule_problems(s))
    problems.extend(_template_problems(s.templates))
    problems.extend(_web_problems(s.web))
    if s.schedule.poll_interval < 1:
        problems.append("schedule.poll_interval: must be at least 1 second")
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        ZoneInfo(s.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(f"schedule.timezone: unknown time zone {s.schedule.timezone!r}")
    problems.extend(_header_problems(s))
    problems.extend(_bound_problems(s, problems))
    return problems


# Settings that end up in mail headers (From, Reply-To, List-Unsubscribe, List-Id):
# a line break in one would add headers of its own to every message.
HEADER_KEYS = (
    "sender.from_name",
    "sender.from_address",
    "sender.reply_to",
    "sender.unsubscribe_mailto",
    "site.base_url",
)


def _header_problems(s: Settings) -> list[str]:
    from newsletter.mime import UnsafeHeader, header_value

    problems = []
    for key in HEADER_KEYS:
        section, _, name = key.partition(".")
        try:
            header_value(getattr(getattr(s, section), name), key)
        except UnsafeHeader as exc:
            problems.append(str(exc))
    return problems


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


def _bound_problems(s: Settings, found: list[str]) -> list[str]:
    """A value outside its range, named with the range; a key already reported is not
    reported twice."""
    problems = []
    for key, (low, high, unit) in BOUNDS.items():
        section, _, name = key.partition(".")
        value = getattr(getattr(s, section), name)
        if low <= value <= high or any(p.startswith(f"{key}:") for p in found):
            continue
        shown = int(value) if float(value).is_integer() else value
        problems.append(f"{key}: {shown} is out of range; use {low} to {high:,}{unit}")
    if s.delivery.max_retry_backoff < s.delivery.retry_backoff:
        problems.append(
            "delivery.max_retry_backoff: must be at least delivery.retry_backoff "
            f"({s.delivery.retry_backoff:g} seconds)"
        )
    return problems


def _schedule_problems(s: Settings) -> list[str]:
    from newsletter.timerules import cron_problem

    problems = []
    if s.schedule.mode == "digest":
        problem = cron_problem(s.schedule.digest_cron)
        if problem:
            problems.append(f"schedule.digest_cron: {problem}")
    if s.schedule.misfire_grace_time < 60:
        problems.append("schedule.misfire_grace_time: must be at least 60 seconds")
    if s.schedule.quiet_period < 0:
        problems.append("schedule.quiet_period: must be 0 (none) or more seconds")
    a = s.automation
    if a.welcome_delay < 0:
        problems.append("automation.welcome_delay: must be 0 or more seconds")
    if a.latest_articles < 0:
        problems.append("automation.latest_articles: must be 0 (none) or more")
    if a.welcome_template and s.subscribers.welcome_template:
        problems.append(
            "automation.welcome_template: [subscribers] welcome_template already sends a "
            "welcome email at once; set only one of them"
        )
    return problems


# Host names that never name a machine on the internet.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def _local_host(host: str | None) -> bool:
    """Loopback, private, link-local or unspecified, by address or by a local-only name."""
    if not host:
        return True
    host = host.strip("[]").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def _outgoing_transport(s: Settings) -> bool:
    """True when the transport hands mail to another machine (not the outbox, not a
    server on this one or on the local network, as tests and previews use)."""
    transport = s.delivery.transport
    if transport == "outbox":
        return False
    if transport == "smtp":
        return not _local_host(s.smtp.host)
    overrides = {
        "sendgrid": s.sendgrid.api_base,
        "mailgun": s.mailgun.api_base,
        "postmark": s.postmark.api_base,
        "ses": s.ses.endpoint_url,
    }
    if transport not in overrides:
        return False  # an unknown transport is a problem of its own
    override = overrides[transport]
    return not override or not _local_host(urlsplit(override).hostname)


def _link_problems(s: Settings) -> list[str]:
    """Mail that leaves the machine needs links a reader's mail program can open."""
    if not _outgoing_transport(s) or not s.site.base_url.startswith(("http://", "https://")):
        return []
    url = urlsplit(s.site.base_url)
    why = (
        f"mail goes out through {s.delivery.transport}, so List-Unsubscribe and every "
        f"tracked link would not work; set it to the public https address of the web server"
    )
    if _local_host(url.hostname):
        return [f"site.base_url: {s.site.base_url} is a local or private address, but {why}"]
    if url.scheme != "https":
        return [f"site.base_url: {s.site.base_url} is not https, but {why}"]
    return []


def link_warnings(s: Settings) -> list[str]:
    """Link settings that work but look wrong, for `config check`."""
    url = urlsplit(s.site.base_url)
    if not _local_host(url.hostname):
        return []  # a public address: a proxy in front may well use another port
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return []
    if port != s.web.port:
        return [
            f"site.base_url: {s.site.base_url} uses port {port}, but the web server "
            f"listens on [web] port {s.web.port}: links in the emails would not reach it; "
            f"make the two agree"
        ]
    return []


def local_relay_warnings(s: Settings) -> list[str]:
    """SMTP to this machine with links that only this machine can open.

    A server on this machine may be a mail catcher (tests, previews), where such
    links work; but the default, an MTA on localhost, is usually a relay that sends
    the mail on to readers, whose mail programs cannot open them. So this is
    allowed, and said.
    """
    if s.delivery.transport != "smtp" or not _local_host(s.smtp.host):
        return []
    url = urlsplit(s.site.base_url)
    if _local_host(url.hostname):
        what = "is a local or private address"
    elif url.scheme != "https":
        what = "is not https"
    else:
        return []
    return [
        f"site.base_url: {s.site.base_url} {what}, and mail goes by SMTP to {s.smtp.host} "
        f"(smtp.host) on this machine, which usually relays it on to the readers: the "
        f"unsubscribe and tracked links in the emails only work if the mail never leaves "
        f"this machine; if it does, set site.base_url to the public https address of the "
        f"web server"
    ]


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def _template_problems(templates: Templates) -> list[str]:
    problems = []
    if not _LANGUAGE_TAG.fullmatch(templates.language):
        problems.append(
            f"templates.language: {templates.language!r} is not a language tag; "
            f"use one such as en, de, fr-CA or ar"
        )
    return problems


def _web_problems(web: Web) -> list[str]:
    problems = []
    for proxy in web.trusted_proxies:
        try:
            ipaddress.ip_network(proxy.strip(), strict=False)
        except ValueError:
            problems.append(
                f"web.trusted_proxies: {proxy!r} is not an address or network "
                f"such as 127.0.0.1 or 10.0.0.0/8"
            )
    if not 1024 <= web.max_webhook_bytes <= 1_000_000_000:
        problems.append("web.max_webhook_bytes: must be between 1024 and 1000000000")
    if not 1024 <= web.max_upload_bytes <= 2_000_000_000:
        problems.append("web.max_upload_bytes: must be between 1024 and 2000000000")
    return problems


def _subscriber_problems(subscribers: Subscribers, consent: Consent) -> list[str]:
    problems = []
    if subscribers.confirm_days < 1:
        problems.append("subscribers.confirm_days: a confirmation link must work at least 1 day")
    if subscribers.form_limit_per_hour < 1:
        problems.append("subscribers.form_limit_per_hour: must be at least 1")
    if not subscribers.confirm_template.strip():
        problems.append("subscribers.confirm_template: name the confirmation email's template set")
    if not consent.text.strip():
        problems.append("consent.text: the consent text shown on the subscribe form is required")
    if not consent.version.strip():
        problems.append('consent.version: give the consent text a version, e.g. "1"')
    return problems


_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")
# For each API transport: the environment variables it cannot send without.
TRANSPORT_SECRETS = {
    "sendgrid": {"NEWSLETTER_SENDGRID_API_KEY": "sendgrid_api_key"},
    "mailgun": {"NEWSLETTER_MAILGUN_API_KEY": "mailgun_api_key"},
    "postmark": {"NEWSLETTER_POSTMARK_SERVER_TOKEN": "postmark_server_token"},
    "ses": {
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    },
}


def _provider_problems(s: Settings) -> list[str]:
    problems = []
    for name in ("sendgrid", "mailgun"):
        if getattr(s, name).region not in ("us", "eu"):
            problems.append(f"{name}.region: use us or eu")
    for where, url in (
        ("sendgrid.api_base", s.sendgrid.api_base),
        ("mailgun.api_base", s.mailgun.api_base),
        ("postmark.api_base", s.postmark.api_base),
        ("ses.endpoint_url", s.ses.endpoint_url),
    ):
        if url and not url.startswith(("http://", "https://")):
            problems.append(f"{where}: must start with https:// (or be empty for the official API)")
    for name in ("sendgrid", "mailgun", "postmark", "ses"):
        if getattr(s, name).timeout <= 0:
            problems.append(f"{name}.timeout: must be more than 0 seconds")
    if not s.postmark.message_stream.strip():
        problems.append('postmark.message_stream: name the broadcast stream, e.g. "broadcast"')
    for arn in s.ses.topic_arns:
        if not _TOPIC_ARN.match(arn):
            problems.append(
                f"ses.topic_arns: {arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
            )
    return problems


def sending_problems(settings: Settings, secrets: Secrets) -> list[str]:
    """What only sending needs (the provider's key, its domain or region, links that work
    where the mail goes): commands that send nothing (fetch, stats, imports) run without it."""
    problems = _link_problems(settings)
    transport = settings.delivery.transport
    if transport == "mailgun" and not settings.mailgun.domain.strip():
        problems.append("mailgun.domain: set the sending domain, e.g. mg.example.com")
    if transport == "ses" and not settings.ses.region.strip():
        problems.append("ses.region: set the AWS region, e.g. eu-west-1")
    for variable, attribute in TRANSPORT_SECRETS.get(transport, {}).items():
        if not getattr(secrets, attribute):
            problems.append(
                f"{variable}: not set; the {transport} transport needs it "
                f"(secrets come only from the environment)"
            )
    return problems


def transport_problems(settings: Settings, secrets: Secrets) -> list[str]:
    """Return what the chosen transport and the configured webhooks still lack.

    Settings that are valid on their own can still leave the chosen provider
    unusable: its key missing from the environment, no Mailgun domain.
    """
    problems = sending_problems(settings, secrets)
    if secrets.sendgrid_webhook_public_key:
        try:
            # Imported here: the cryptography library is needed only when a key is set.
            from newsletter.feedback import sendgrid

            sendgrid.load_key(secrets.sendgrid_webhook_public_key)
        except ValueError:
            problems.append(
                "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY: not a public key; paste the "
                "verification key exactly as SendGrid's Signed Event Webhook settings show it"
            )
    if bool(secrets.postmark_webhook_user) != bool(secrets.postmark_webhook_password):
        problems.append(
            "NEWSLETTER_POSTMARK_WEBHOOK_USER, NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD: "
            "set both (the user and password in the webhook URL), or neither"
        )
    return problems


def _source_problems(sources: Sources) -> list[str]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for name in ("folders", "feeds", "pages"):
        for index, entry in enumerate(getattr(sources, name)):
            try:
                spec = source_spec(name, index, entry, sources.announce_updates)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if (spec.kind, spec.location) in seen:
                problems.append(f"sources.{name}[{index}]: {spec.location} is listed twice")
            seen.add((spec.kind, spec.location))
    if sources.timeout <= 0:
        problems.append("sources.timeout: must be more than 0 seconds")
    if sources.max_bytes < 1024:
        problems.append("sources.max_bytes: must be at least 1024")
    if not 0 <= sources.max_redirects <= 20:
        problems.append("sources.max_redirects: must be between 0 and 20")
    if not 1 <= sources.max_items_per_feed <= 10_000:
        problems.append("sources.max_items_per_feed: must be between 1 and 10000")
    for network in sources.allowed_networks:
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            problems.append(
                f"sources.allowed_networks: {network!r} is not an address or network "
                f"such as 10.0.0.0/8"
            )
    return problems


def load(workspace: Path, env: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Read ``newsletter.toml`` from the workspace; return settings and problems."""
    env = os.environ if env is None else env
    path = workspace / CONFIG_FILE
    return collect(_read_file(path), env, str(path))
