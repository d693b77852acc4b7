"""Whether settings that parsed make sense: each problem one line naming its key."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from newsletter.config.settings import (
    BOUNDS,
    TRANSPORTS,
    Consent,
    Secrets,
    Settings,
    Sources,
    Subscribers,
    Templates,
    Web,
    source_spec,
)
from newsletter.errors import ConfigError


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
