"""Login rate limiting per user name and per source address, kept in the shared file (survives restarts).

After ``per_user`` failures for one name within ``window_s``, or ``per_source`` failures from one
address, further attempts are refused without checking the password until the oldest failure in the
window ages out. Unknown names are counted like real ones, so the limit says nothing about which
names exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from auth.db import Database


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failed logins are tolerated, and for how long they count."""

    per_user: int = 5
    per_source: int = 20
    window_s: float = 15 * 60


class LoginThrottle:
    """Counts failed logins; ``blocked`` says whether to refuse the next attempt outright."""

    def __init__(self, db: Database, policy: ThrottlePolicy = ThrottlePolicy()):
        self._db = db
        self.policy = policy

    def blocked(self, user: str, source: str, now: float) -> bool:
        """True if the user name or the source address has used up its failures."""
        since = now - self.policy.window_s
        with self._db.read() as conn:
            users = self._count(conn, "user", user.lower(), since)
            sources = self._count(conn, "source", source, since)
        return users >= self.policy.per_user or sources >= self.policy.per_source

    def failed(self, user: str, source: str, now: float) -> None:
        """Count one failed attempt (and forget failures older than the window)."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM auth_login_failure WHERE time < ?", (now - self.policy.window_s,))
            conn.executemany("INSERT INTO auth_login_failure (scope, key, time) VALUES (?, ?, ?)",
                             [("user", user.lower(), now), ("source", source, now)])

    def succeeded(self, user: str) -> None:
        """A correct password clears the name's failures (not the address's: others may share it)."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM auth_login_failure WHERE scope = 'user' AND key = ?", (user.lower(),))

    @staticmethod
    def _count(conn, scope: str, key: str, since: float) -> int:
        row = conn.execute("SELECT COUNT(*) FROM auth_login_failure WHERE scope = ? AND key = ? AND time >= ?",
                           (scope, key, since)).fetchone()
        return int(row[0])
