"""Kiosk tokens: long-lived, read-only, revocable credentials for NOC wall screens.

Only a SHA-256 of each token is stored (a token has 256 random bits, so a slow hash adds nothing); the
token itself is shown once, at creation. A token can be limited to a network (the wall screens' VLAN)
and given an expiry; by default it does not expire, because a wall screen that silently falls back to
a login page at 3 a.m. is the failure this exists to prevent (grafana-kiosk#59).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass

from auth.db import Database

PREFIX = "fwk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def token_hash(token: str) -> str:
    """The stored form of a session id or kiosk token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class KioskToken:
    """A kiosk token's record (never the token itself)."""

    name: str
    created_at: float
    created_by: str
    expires_at: float | None
    network: str | None
    revoked_at: float | None
    last_used: float | None
    last_source: str | None

    @property
    def active(self) -> bool:
        """Not revoked (it may still have expired)."""
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class KioskCheck:
    """The outcome of presenting a kiosk token: the token's name if valid, else why not."""

    name: str | None
    problem: str | None = None


class KioskTokens:
    """Create, check, list and revoke kiosk tokens."""

    def __init__(self, db: Database, *, touch_every_s: float = 60.0):
        self._db = db
        self._touch_every_s = touch_every_s

    def create(self, name: str, by: str, now: float, *, expires_at: float | None = None,
               network: str | None = None) -> str:
        """A new token (returned once, never stored); ValueError if the name is taken or invalid."""
        if not NAME.match(name):
            raise ValueError("a token name is letters, digits, '.', '_' and '-' (at most 64), e.g. NOC-1")
        if network is not None:
            network = str(ipaddress.ip_network(network, strict=False))
        token = PREFIX + secrets.token_urlsafe(32)
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM auth_kiosk_token WHERE name = ? AND revoked_at IS NULL",
                            (name,)).fetchone():
                raise ValueError(f"a kiosk token named {name!r} exists; revoke it first")
            conn.execute("INSERT INTO auth_kiosk_token (name, token_hash, created_at, created_by, expires_at, "
                         "network) VALUES (?, ?, ?, ?, ?, ?)",
                         (name, token_hash(token), now, by, expires_at, network))
        return token

    def revoke(self, name: str, by: str, now: float) -> bool:
        """Revoke the active token of that name; False if there is none."""
        with self._db.write() as conn:
            cursor = conn.execute("UPDATE auth_kiosk_token SET revoked_at = ?, revoked_by = ? "
                                  "WHERE name = ? AND revoked_at IS NULL", (now, by, name))
        return cursor.rowcount > 0

    def check(self, token: str, source: str, now: float) -> KioskCheck:
        """Who this token is, or why it does not work; every call reads the table, so revocation is immediate."""
        if not token.startswith(PREFIX) or len(token) > 128:
            return KioskCheck(None, "not a kiosk token")
        with self._db.read() as conn:
            row = conn.execute("SELECT name, expires_at, network, revoked_at, last_used FROM auth_kiosk_token "
                               "WHERE token_hash = ?", (token_hash(token),)).fetchone()
        if row is None:
            return KioskCheck(None, "unknown token")
        name, expires_at, network, revoked_at, last_used = row
        problem = _problem(expires_at, network, revoked_at, source, now)
        if problem:
            return KioskCheck(name, problem)
        if last_used is None or now - last_used >= self._touch_every_s:
            with self._db.write() as conn:
                conn.execute("UPDATE auth_kiosk_token SET last_used = ?, last_source = ? WHERE token_hash = ?",
                             (now, source, token_hash(token)))
        return KioskCheck(name)

    def list(self) -> list[KioskToken]:
        """Every token ever created, newest first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT name, created_at, created_by, expires_at, network, revoked_at, last_used, "
                                "last_source FROM auth_kiosk_token ORDER BY id DESC").fetchall()
        return [KioskToken(*row) for row in rows]


def _problem(expires_at: float | None, network: str | None, revoked_at: float | None, source: str,
             now: float) -> str | None:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and now >= expires_at:
        return "expired"
    if network is not None and not _inside(source, network):
        return "used outside its network"
    return None


def _inside(source: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(source) in ipaddress.ip_network(network)
    except ValueError:
        return False
