"""A workspace: the folder with newsletter.toml, the database, articles, subscribers, outbox.

This is the edge where settings, secrets and files meet; the core functions
receive what they need from here as arguments.
"""

from __future__ import annotations

import dataclasses
import os
import secrets as secrets_lib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from newsletter import classify, config
from newsletter.config import Secrets, Settings
from newsletter.errors import ConfigError, InputError
from newsletter.render import DEFAULTS_DIR, TemplateSet
from newsletter.store import Store
from newsletter.tracking import Signer
from newsletter.transports import Transport, eai_refusal, open_transport

KEY_FILE = ".secret_key"

STARTER_CONFIG = """\
# newsletter settings. Every key can be overridden by an environment variable
# NEWSLETTER_<SECTION>__<KEY>, e.g. NEWSLETTER_WEB__PORT=9000.
# Secrets never go here: NEWSLETTER_SECRET_KEY (link signing; otherwise the
# generated .secret_key file beside this one), NEWSLETTER_SMTP_PASSWORD.

[database]
path = "newsletter.db"

[sender]
from_name = "Riverbend Physical Therapy"
from_address = "news@clinic.example.com"
reply_to = "frontdesk@clinic.example.com"
postal_address = "120 Riverside Avenue, Suite 4, Springfield, OR 97477, USA"

[site]
# The public address of the web server; every tracking and unsubscribe link starts here.
base_url = "http://127.0.0.1:8080"

[delivery]
# outbox writes one .eml file per message into outbox_dir; nothing leaves the machine.
transport = "outbox"
outbox_dir = "outbox"
rate_per_second = 0
concurrency = 1
# processes that share a large campaign; 0: one per CPU core (at most concurrency)
processes = 0

[smtp]
host = "localhost"
port = 587
security = "starttls"
username = ""

[sources]
folders = ["articles"]
feeds = []
pages = []

[subscribers]
# CSV files in this folder are imported on every poll; addresses already known keep their status.
folder = "subscribers"
import_confirmed = false

[schedule]
poll_interval = 300
# off: campaigns only by hand; instant: a newsletter as soon as new articles arrive;
# digest: one newsletter of the new articles at each digest_cron time (in timezone).
mode = "instant"
digest_cron = "0 9 * * mon"
timezone = "UTC"
# A due time missed by more than this many seconds is reported, never sent by itself.
misfire_grace_time = 3600
# instant: wait until no new article has come for this many seconds (a burst, one email)
quiet_period = 0
# make automatic newsletters as drafts for someone to approve
hold_as_draft = false

[automation]
# sent to each new subscriber once they confirm, after welcome_delay seconds:
# a template set ("" for none) and an email with the latest N articles (0 for none)
welcome_template = ""
welcome_delay = 0
latest_articles = 0

[web]
host = "127.0.0.1"
port = 8080
# reverse proxies whose X-Forwarded-For is believed, e.g. ["127.0.0.1"] behind nginx
trusted_proxies = []
# admins sign in with a code from an authenticator app as well as the password
require_2fa = false

[tracking]
enabled = true
truncate_ip = true
# count opens and clicks without linking them to anyone
anonymous = false
# delete raw opens, clicks and views older than this many days (0: keep them)
retention_days = 0

[templates]
# auto: "announcement" for a single article, "digest" for several; or name a set.
default = "auto"
# inbox preview text of campaigns that set none: auto (the article's summary, or the
# titles of several), a fixed text, or "" for none
preheader = "auto"
# language of the emails (lang attribute; ar, he, fa ... are written right to left)
language = "en"
"""

GITIGNORE = """\
# Local state and secrets of this workspace
newsletter.db*
.secret_key
outbox/
"""


def init_workspace(directory: Path) -> list[str]:
    """Create a workspace on the embedded defaults; never overwrite what is there.

    Returns the paths created, relative to the workspace.
    """
    created: list[str] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{directory}: cannot write the workspace here ({exc.strerror})") from None

    def write(name: str, text: str, mode: int | None = None) -> None:
        path = directory / name
        if path.exists():
            return
        path.write_text(text, encoding="utf-8")
        if mode is not None:
            os.chmod(path, mode)
        created.append(name)

    write(config.CONFIG_FILE, STARTER_CONFIG)
    write(".gitignore", GITIGNORE)
    write(KEY_FILE, secrets_lib.token_urlsafe(32) + "\n", mode=0o600)
    for folder in ("articles", "subscribers"):
        target = directory / folder
        if target.exists():
            continue
        shutil.copytree(DEFAULTS_DIR / folder, target)
        created.append(folder + "/")
    templates = directory / "templates"
    if not templates.exists():
        templates.mkdir()
        (templates / "README.txt").write_text(
            "Put a template set here to override the built-in one of the same name:\n"
            "templates/<name>/subject.txt, body.html, body.txt\n",
            encoding="utf-8",
        )
        created.append("templates/")
    return created


@dataclass
class Workspace:
    """Settings, secrets and the shared handles of one workspace."""

    root: Path
    settings: Settings
    secrets: Secrets
    problems: list[str] = field(default_factory=list)
    # What only sending needs and lacks: raised by transport(), not by open().
    sending_problems: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, root: Path, env: Mapping[str, str] | None = None, strict: bool = True
    ) -> Workspace:
        env = os.environ if env is None else env
        root = root.resolve()
        settings, problems = config.load(root, env)
        secrets = Secrets.from_env(env)
        if not secrets.secret_key:
            key_file = root / KEY_FILE
            if key_file.exists():
                secrets = dataclasses.replace(secrets, secret_key=key_file.read_text().strip())
            else:
                problems.append(
                    "NEWSLETTER_SECRET_KEY: not set and no .secret_key file in the workspace; "
                    "set the variable to a long random string"
                )
        # A missing provider key stops what sends (transport()), not what only reads.
        sending = config.sending_problems(settings, secrets)
        problems.extend(p for p in config.transport_problems(settings, secrets) if p not in sending)
        if settings.tracking.signals_file:
            signals_path = root / settings.tracking.signals_file
            if not signals_path.is_file():
                problems.append(
                    f"tracking.signals_file: {signals_path} does not exist; copy the built-in "
                    f"machine_signals.toml there or leave the key empty"
                )
            elif not strict:  # `config check` reads it whole; commands read it when needed
                try:
                    load_signals(signals_path)
                except ConfigError as exc:
                    problems.append(str(exc))
        if strict and problems:
            more = (
                f" (and {len(problems) - 1} more; run `newsletter config check`)"
                if len(problems) > 1
                else ""
            )
            raise ConfigError(problems[0] + more)
        return cls(root, settings, secrets, problems + sending, sending)

    def path(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def open_store(self) -> Store:
        """A new connection to the workspace database, its schema brought up to date."""
        store = Store(self.path(self.settings.database.path))
        store.migrate()
        return store

    @cached_property
    def store(self) -> Store:
        """The connection of the calling thread (CLI commands, tests)."""
        return self.open_store()

    @cached_property
    def signer(self) -> Signer:
        return Signer(self.secrets.secret_key)

    @cached_property
    def signals(self) -> classify.Signals:
        """The machine signals: the workspace's own file if configured, else the built-in one."""
        name = self.settings.tracking.signals_file
        return load_signals(self.path(name) if name else classify.DEFAULT_SIGNALS)

    def transport(self) -> Transport:
        self.require_sending()
        return open_transport(self.settings, self.secrets, self.root)

    def eai_refusal(self) -> str | None:
        """Why no email could reach an internationalised mailbox through this workspace's
        transport, or None (it can, or cannot tell); asked once, when first needed."""
        if "_eai_refusal" not in self.__dict__:
            if self.sending_problems:
                return None  # nothing can be sent yet; the send will say why
            self.__dict__["_eai_refusal"] = eai_refusal(self.settings, self.secrets, self.root)
        return self.__dict__["_eai_refusal"]

    def require_sending(self) -> None:
        """Stop with what sending still lacks (the provider's key), naming it."""
        if self.sending_problems:
            more = len(self.sending_problems) - 1
            raise ConfigError(
                self.sending_problems[0]
                + (f" (and {more} more; run `newsletter config check`)" if more else "")
            )

    def templates(self, name: str) -> TemplateSet:
        return TemplateSet(name, self.root / "templates")

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def load_signals(path: Path) -> classify.Signals:
    """Read a machine-signals file (and the CSVs it names beside it); ConfigError names the key."""

    def read_beside(name: str) -> str:
        return (path.parent / name).read_text(encoding="utf-8")

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"tracking.signals_file: cannot read {path} ({exc})") from None
    try:
        return classify.parse_signals(text, str(path), read_beside)
    except classify.SignalsError as exc:
        raise ConfigError(f"tracking.signals_file: {exc}") from None
