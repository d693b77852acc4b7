"""The one exception tree of newsletter.

Core modules raise these; only the edges (cli.py, web/) turn them into exit
codes or HTTP answers. Every message names what is wrong and where (file and
line, config key, address, campaign id) and what to do about it::

    NewsletterError
     ├── ConfigError        a setting is missing or invalid (names the key)
     ├── InputError         a file or argument given by the user is unusable
     ├── NotFound           an id or address that is not in the database
     ├── StateError         the action does not fit the object's current state
     ├── TemplateError      a template failed to load or render (name, line)
     ├── SourceError        an article source could not be read
     └── TransportError     a message could not be handed to the provider
          ├── TransientError   try again later (4xx SMTP, 429, 5xx, timeouts)
          ├── PermanentError   never retry this recipient (5xx SMTP, rejected)
          │    ├── MessageRejected   this message refused; the address is not at fault
          │    │    └── AddressUnusable  this transport cannot carry this address
          │    └── AccountError      nothing can go until the settings change
          └── InDoubtError     the request went out but no answer came back

An OSError (a full disk, a file that cannot be written) is turned into one
line by ``os_error_line`` where it is caught.
"""

import errno
import os


class NewsletterError(Exception):
    """Base of every error that newsletter reports to its user."""


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the key."""


class InputError(NewsletterError):
    """A file or argument given by the user cannot be used."""


class NotFound(NewsletterError):
    """An id or address that the database does not hold."""


class StateError(NewsletterError):
    """The requested action does not fit the object's current state."""


class TemplateError(NewsletterError):
    """A template failed to load or render."""


class SourceError(NewsletterError):
    """An article source could not be fetched or parsed."""


class TransportError(NewsletterError):
    """A message could not be handed over to the mail provider."""


class TransientError(TransportError):
    """The provider asked us to try again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds, from Retry-After or a rate-limit reset


class PermanentError(TransportError):
    """The provider refused this recipient for good: the address is bounced and suppressed."""


class MessageRejected(PermanentError):
    """The provider refused this message for good, but the address is not at fault
    (content refused, an address it cannot carry): the row fails, nobody is suppressed."""


class AddressUnusable(MessageRejected):
    """This transport cannot carry this one address (an internationalised mailbox where
    SMTPUTF8 is not offered): the row fails with the reason, nobody is suppressed, and
    it says nothing about the rest of the campaign."""


class AccountError(PermanentError):
    """Nothing can go until the settings change: a refused login or API key, an
    unverified sender, no STARTTLS. Raised out of ``send_batch``: the campaign pauses
    with the reason and its rows wait; no subscriber is marked bounced for it."""


class InDoubtError(TransportError):
    """The request reached the provider but no answer came back (a read timeout).

    The provider may have taken the messages, so they must not be retried as if
    they had failed: the rows stay in flight and the ledger's in-doubt rule
    settles them.
    """


# -- operating-system errors, in one line ---------------------------------------------

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def os_error_line(exc: OSError, path: object = None, label: str | None = None) -> str:
    """One line for an OSError: which file (and, when it is full, which disk) and what to do.

    ``path`` is the file being written when the error does not carry it (a
    write() error does not); ``label`` names it otherwise (a setting). A full
    disk is named by the mount point holding the file, found with a stat or two.
    """
    target = exc.filename or path
    place = label or (str(target) if target else "a file")
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE:
        what = "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is used up"
        disk = _mount_point(str(target)) if target else None
        on = f" (the disk mounted at {disk})" if disk else ""
        return f"{place}: {what}{on}: {reason}; free some space there and try again"
    return f"{place}: {reason}"


def _mount_point(path: str) -> str | None:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    try:
        current = os.path.abspath(path)
        while not os.path.ismount(current):
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent
        return current
    except OSError:
        return None
