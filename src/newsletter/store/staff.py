"""Staff accounts of the dashboard and their sessions."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from newsletter.addresses import mailbox_key
from newsletter.errors import InputError, NotFound
from newsletter.store.base import StoreBase, _iso


class StaffQueries(StoreBase):
    # -- staff accounts and sessions ------------------------------------------

    def add_staff_user(self, email: str, role: str, password_hash: str, now: datetime) -> int:
        try:
            with self.transaction():
                cursor = self.conn.execute(
                    "INSERT INTO staff_users (email, email_key, role, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [email, mailbox_key(email), role, password_hash, _iso(now)],
                )
        except sqlite3.IntegrityError:
            raise InputError(
                f"{email}: already a staff account; remove it first with `newsletter users remove`"
            ) from None
        assert cursor.lastrowid is not None  # an INSERT sets it
        return cursor.lastrowid

    def staff_user(self, email: str) -> dict[str, Any] | None:
        """The account of ``email``'s mailbox, however the address is spelled."""
        return self._row("SELECT * FROM staff_users WHERE email_key = ?", [mailbox_key(email)])

    def staff_users(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, email, role, created_at, signed_in_at, "
            "totp_secret IS NOT NULL AS has_2fa FROM staff_users ORDER BY email"
        )

    def remove_staff_user(self, email: str) -> None:
        """Delete the account; its sessions go with it (ON DELETE CASCADE)."""
        with self.transaction():
            cursor = self.conn.execute(
                "DELETE FROM staff_users WHERE email_key = ?", [mailbox_key(email)]
            )
        if cursor.rowcount != 1:
            raise NotFound(f"{email}: no such staff account; see `newsletter users list`")

    def add_staff_session(
        self, token_hash: str, user_id: int, csrf: str, now: datetime, expires: datetime
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "DELETE FROM staff_sessions WHERE expires_at <= ?", [_iso(now)]
            )  # expired rows of everyone go at each sign-in, so the table stays small
            self.conn.execute(
                "INSERT INTO staff_sessions VALUES (?, ?, ?, ?, ?)",
                [token_hash, user_id, csrf, _iso(now), _iso(expires)],
            )
            self.conn.execute(
                "UPDATE staff_users SET signed_in_at = ? WHERE id = ?", [_iso(now), user_id]
            )

    def staff_session(self, token_hash: str, now: datetime) -> dict[str, Any] | None:
        """The live session with this token hash and its user, or None."""
        return self._row(
            "SELECT s.token_hash, s.csrf, s.expires_at, u.id AS user_id, u.email, u.role, "
            "u.totp_secret IS NOT NULL AS has_2fa "
            "FROM staff_sessions s JOIN staff_users u ON u.id = s.user_id "
            "WHERE s.token_hash = ? AND s.expires_at > ?",
            [token_hash, _iso(now)],
        )

    def end_staff_session(self, token_hash: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM staff_sessions WHERE token_hash = ?", [token_hash])

    # -- two-factor sign-in ----------------------------------------------------

    def staff_user_by_id(self, user_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM staff_users WHERE id = ?", [user_id])

    def set_totp_pending(self, user_id: int, sealed_secret: str | None) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE staff_users SET totp_pending = ? WHERE id = ?", [sealed_secret, user_id]
            )

    def enable_totp(
        self, user_id: int, sealed_secret: str, step: int, code_hashes: list[str]
    ) -> None:
        """Turn two-factor sign-in on with the secret just confirmed by a code of ``step``."""
        with self.transaction():
            self.conn.execute(
                "UPDATE staff_users SET totp_secret = ?, totp_pending = NULL, "
                "totp_last_step = ?, recovery_codes = ? WHERE id = ?",
                [sealed_secret, step, json.dumps(code_hashes), user_id],
            )

    def reset_totp(self, email: str) -> None:
        """Turn two-factor sign-in off for the account; its sessions end."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE staff_users SET totp_secret = NULL, totp_pending = NULL, "
                "totp_last_step = NULL, recovery_codes = '[]' WHERE email_key = ?",
                [mailbox_key(email)],
            )
            if cursor.rowcount != 1:
                raise NotFound(f"{email}: no such staff account; see `newsletter users list`")
            self.conn.execute(
                "DELETE FROM staff_sessions WHERE user_id = "
                "(SELECT id FROM staff_users WHERE email_key = ?)",
                [mailbox_key(email)],
            )

    def use_totp_step(self, user_id: int, step: int) -> bool:
        """Spend the code of time step ``step``: False if it (or a later one) was used."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE staff_users SET totp_last_step = ? WHERE id = ? "
                "AND (totp_last_step IS NULL OR totp_last_step < ?)",
                [step, user_id, step],
            )
        return cursor.rowcount == 1

    def use_recovery_code(self, user_id: int, code_hash: str) -> int | None:
        """Spend a recovery code; the number left, or None if it is not one of them."""
        with self.transaction():
            stored = self._value("SELECT recovery_codes FROM staff_users WHERE id = ?", [user_id])
            hashes = json.loads(stored or "[]")
            if code_hash not in hashes:
                return None
            hashes.remove(code_hash)
            self.conn.execute(
                "UPDATE staff_users SET recovery_codes = ? WHERE id = ?",
                [json.dumps(hashes), user_id],
            )
        return len(hashes)
