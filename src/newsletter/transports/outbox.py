"""The outbox transport: one .eml file per message, so nothing leaves the machine."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import AccountError, ConfigError, os_error_line
from newsletter.transports.base import (
    MIME,
    Envelope,
    NothingToPrepare,
    Outcome,
    outcomes_one_by_one,
)

if TYPE_CHECKING:
    from newsletter.transports.signing import DkimSigning

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class OutboxTransport(NothingToPrepare):
    name = "outbox"
    batch_size = 1
    needs = MIME

    def __init__(self, directory: Path, sign: DkimSigning | None = None):
        self.directory = directory
        self.sign = sign  # DKIM, as the SMTP transport signs
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"delivery.outbox_dir: cannot create {directory} ({exc})") from None

    def check(self) -> str:
        """The folder takes a file."""
        probe = self.directory / ".write-test"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"delivery.outbox_dir: cannot write to {self.directory} ({exc.strerror})"
            ) from None
        return f"outbox {self.directory}: writable"

    def _path(self, key: str) -> Path:
        return self.directory / f"{_SAFE.sub('_', key)}.eml"

    def send(self, envelope: Envelope) -> str | None:
        path = self._path(envelope.key)
        partial = path.with_suffix(".eml.part")
        data = self.sign(envelope.data, False) if self.sign else envelope.data
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            # A full disk or an unwritable folder stops every message, not this
            # one: the campaign pauses with the folder named, and resumes later.
            partial.unlink(missing_ok=True)
            raise AccountError(
                os_error_line(exc, partial, label=f"delivery.outbox_dir {self.directory}")
            ) from None
        # The rename is atomic: a file named .eml is always a whole message,
        # which is what lets was_sent() settle in-flight rows after a crash.
        os.replace(partial, path)
        return path.name

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return outcomes_one_by_one(self.send, envelopes)

    def was_sent(self, key: str) -> bool | None:
        return self._path(key).exists()

    def close(self) -> None:
        if self.sign is not None:
            self.sign.close()  # its signing helper, if it started one
