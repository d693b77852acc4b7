"""Settings from ``newsletter.toml`` in the workspace, overridden by environment variables.

Every key ``[section] key`` can be overridden by ``NEWSLETTER_<SECTION>__<KEY>``
(``NEWSLETTER_WEB__PORT=9000``). Secrets never live in the file or the
database: they come only from the environment (see ``Secrets``), so the file
can be committed and shown on a settings page as it is.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
    concurrency: int = 1
    outbox_dir: str = "outbox"


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class Sources:
    feeds: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=lambda: ["articles"])
    pages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Subscribers:
    # CSV files here are imported on every poll; re-importing changes nothing.
    folder: str = "subscribers"
    import_confirmed: bool = False


@dataclass(frozen=True)
class Schedule:
    poll_interval: int = 300
    mode: str = "off"
    digest_cron: str = "0 9 * * mon"
    timezone: str = "UTC"


@dataclass(frozen=True)
class Web:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class Tracking:
    enabled: bool = True
    truncate_ip: bool = True


@dataclass(frozen=True)
class Templates:
    # "auto": the announcement design for one article, the digest for several.
    default: str = "auto"


@dataclass(frozen=True)
class Settings:
    database: Database = field(default_factory=Database)
    sender: Sender = field(default_factory=Sender)
    site: Site = field(default_factory=Site)
    delivery: Delivery = field(default_factory=Delivery)
    smtp: Smtp = field(default_factory=Smtp)
    sources: Sources = field(default_factory=Sources)
    subscribers: Subscribers = field(default_factory=Subscribers)
    schedule: Schedule = field(default_factory=Schedule)
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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Secrets:
        return cls(
            secret_key=env.get("NEWSLETTER_SECRET_KEY", ""),
            smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD", ""),
        )


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Convert a TOML or environment value to the type a setting declares."""
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
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
        text = path.read_text(encoding="utf-8")
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
            if any(word in key.lower() for word in SECRET_WORDS):
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
    settings = Settings(**sections)
    problems.extend(validate(settings))
    return settings, problems


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
    if s.delivery.rate_per_second < 0:
        problems.append("delivery.rate_per_second: must be 0 (no limit) or more")
    if s.smtp.security not in ("starttls", "ssl", "none"):
        problems.append("smtp.security: use one of starttls, ssl, none")
    if not 0 < s.smtp.port < 65536:
        problems.append("smtp.port: must be between 1 and 65535")
    if not 0 <= s.web.port < 65536:
        problems.append("web.port: must be between 0 and 65535")
    if s.schedule.mode not in ("off", "instant", "digest"):
        problems.append("schedule.mode: use one of off, instant, digest")
    for kind in ("feeds", "pages"):
        if getattr(s.sources, kind):
            problems.append(
                f"sources.{kind}: {kind} are not supported in this version yet; "
                f"use [sources] folders"
            )
    if s.schedule.mode == "digest":
        problems.append(
            "schedule.mode: digest is not supported in this version yet; use off or instant"
        )
    if s.schedule.poll_interval < 1:
        problems.append("schedule.poll_interval: must be at least 1 second")
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        ZoneInfo(s.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(f"schedule.timezone: unknown time zone {s.schedule.timezone!r}")
    return problems


def load(workspace: Path, env: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """Read ``newsletter.toml`` from the workspace; return settings and problems."""
    env = os.environ if env is None else env
    path = workspace / CONFIG_FILE
    return collect(_read_file(path), env, str(path))
