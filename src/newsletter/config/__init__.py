"""Settings from ``newsletter.toml`` in the workspace, overridden by environment variables.

Every key ``[section] key`` can be overridden by ``NEWSLETTER_<SECTION>__<KEY>``
(``NEWSLETTER_WEB__PORT=9000``). Secrets never live in the file or the
database: they come only from the environment (see ``Secrets``), so the file
can be committed and shown on a settings page as it is.

One package, four parts: ``settings`` the dataclasses, secrets and ranges
(declarative), ``key_docs`` what each key means, ``load`` reading the file and
the environment, ``checks`` judging the values. Everything is importable from
here, as ``from newsletter.config import Settings``.
"""

from __future__ import annotations

from newsletter.config.checks import (
    HEADER_KEYS,
    TRANSPORT_SECRETS,
    link_warnings,
    local_relay_warnings,
    sending_problems,
    transport_problems,
    validate,
)
from newsletter.config.key_docs import (
    KEY_DOCS,
    SECRET_DOCS,
    SOURCE_OPTION_DOCS,
)
from newsletter.config.load import (
    collect,
    load,
    unknown_overrides,
)
from newsletter.config.settings import (
    BOUNDS,
    CONFIG_FILE,
    DAY,
    ENV_PREFIX,
    SECRET_WORDS,
    SOURCE_KINDS,
    SOURCE_OPTIONS,
    TRANSPORTS,
    WIX_API_BASE,
    Automation,
    Consent,
    Database,
    Delivery,
    Dkim,
    Mailgun,
    Postmark,
    Schedule,
    Secrets,
    Sender,
    SendGrid,
    Ses,
    Settings,
    Site,
    Smtp,
    SourceList,
    Sources,
    SourceSpec,
    Subscribers,
    Templates,
    Tracking,
    Web,
    source_spec,
)

__all__ = [
    "Automation",
    "BOUNDS",
    "CONFIG_FILE",
    "Consent",
    "DAY",
    "Database",
    "Delivery",
    "Dkim",
    "ENV_PREFIX",
    "HEADER_KEYS",
    "KEY_DOCS",
    "Mailgun",
    "Postmark",
    "SECRET_DOCS",
    "SECRET_WORDS",
    "SOURCE_KINDS",
    "SOURCE_OPTIONS",
    "SOURCE_OPTION_DOCS",
    "Schedule",
    "Secrets",
    "SendGrid",
    "Sender",
    "Ses",
    "Settings",
    "Site",
    "Smtp",
    "SourceList",
    "SourceSpec",
    "Sources",
    "Subscribers",
    "TRANSPORTS",
    "TRANSPORT_SECRETS",
    "Templates",
    "Tracking",
    "WIX_API_BASE",
    "Web",
    "collect",
    "link_warnings",
    "load",
    "local_relay_warnings",
    "sending_problems",
    "source_spec",
    "transport_problems",
    "unknown_overrides",
    "validate",
]
