"""Users, server-side sessions, logins and kiosk tokens, each privileged step written to the audit sink.

Sessions are rows, not signed cookies, so they can be revoked: logout deletes the row; a password
change or a disable deletes every row of the user. The browser holds a random id; the table holds its
SHA-256. A session ends after ``idle_s`` without user activity or ``absolute_s`` after login, whatever
happens. The audit record is written BEFORE a change is made (fail closed: a change the sink cannot
record does not happen).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auth.audit import AuditSink, AuthAction, SqliteAuditSink
from auth.db import Database
from auth.model import USER_ROLES, AuthorisationRefused, Identity, IdentityKind, LoginRefused, Role
from auth.passwords import Hasher, policy_problem
from auth.throttle import LoginThrottle, ThrottlePolicy
from auth.tokens import KioskCheck, KioskToken, KioskTokens, token_hash

log = logging.getLogger(__name__)
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
WRONG_CREDENTIALS = "wrong user name or password"
KIOSK_REFUSAL_AUDIT_S = 600.0  # a refused kiosk token is audited once per 10 min, not on every refresh
THROTTLED = "too many failed logins; wait a few minutes and try again"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Session lifetimes: 15 min idle and 12 h absolute (one NOC shift), as RELIABILITY S4 suggests."""

    idle_s: float = 15 * 60
    absolute_s: float = 12 * 3600
    touch_every_s: float = 30.0  # last_seen is written at most this often


@dataclass(frozen=True, slots=True)
class User:
    """A user account (the hash stays in the store)."""

    name: str
    role: Role
    enabled: bool
    created_at: float
    password_changed_at: float


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created: ``token`` goes into the session cookie, ``csrf`` into the CSRF cookie."""

    token: str
    csrf: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A valid session found by its cookie."""

    identity: Identity
    csrf: str


class AuthService:
    """Everything the web guard and the CLI need; one per process, safe to share between threads."""

    def __init__(self, db: Database, audit: AuditSink | None = None, *, clock: Callable[[], float] = time.time,
                 hasher: Hasher | None = None, sessions: SessionPolicy = SessionPolicy(),
                 throttle: ThrottlePolicy | None = None):
        self.db = db
        self.audit = audit or SqliteAuditSink(db, clock=clock)
        self.clock = clock
        self.hasher = hasher or Hasher()
        self.policy = sessions
        self.throttle = LoginThrottle(db, throttle or ThrottlePolicy())
        self.kiosk = KioskTokens(db)
        self._kiosk_refusals: dict[str, float] = {}  # token hash → last audited, so a stale screen cannot flood

    @classmethod
    def open(cls, path: str | Path, audit: AuditSink | None = None, **options) -> AuthService:
        """The service over the shared SQLite file at ``path`` (tables created if missing)."""
        return cls(Database(path), audit, **options)

    # --- users -------------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role | str, password: str, *, actor: str, source: str) -> User:
        """Create an enabled user; ValueError (safe to print) if the name, role or password is refused."""
        role = _user_role(role)
        if not USER_NAME.match(name):
            raise ValueError("a user name is letters, digits, '.', '_', '@' and '-' (at most 64)")
        _check_policy(password)
        if self.user(name) is not None:
            raise ValueError(f"user {name!r} exists")
        digest, now = self.hasher.hash(password), self.clock()
        self._record(actor, AuthAction.USER_ADD, name, {"role": role.value}, source)
        with self.db.write() as conn:
            conn.execute("INSERT INTO auth_user (name, role, password_hash, enabled, created_at, "
                         "password_changed_at) VALUES (?, ?, ?, 1, ?, ?)", (name, role.value, digest, now, now))
        return User(name, role, True, now, now)

    def set_password(self, name: str, password: str, *, actor: str, source: str) -> None:
        """Change a password and end every session of the user."""
        user = self._existing(name)
        _check_policy(password)
        digest = self.hasher.hash(password)
        self._record(actor, AuthAction.USER_PASSWORD, user.name, {"sessions_ended": "all"}, source)
        with self.db.write() as conn:
            conn.execute("UPDATE auth_user SET password_hash = ?, password_changed_at = ? WHERE name = ?",
                         (digest, self.clock(), user.name))
            conn.execute("DELETE FROM auth_session WHERE user_name = ?", (user.name,))

    def disable(self, name: str, *, actor: str, source: str) -> None:
        """Disable a user and end every session of the user."""
        user = self._existing(name)
        self._record(actor, AuthAction.USER_DISABLE, user.name, {"before": "enabled" if user.enabled else
                                                                 "disabled", "after": "disabled"}, source)
        with self.db.write() as conn:
            conn.execute("UPDATE auth_user SET enabled = 0, disabled_at = ? WHERE name = ?",
                         (self.clock(), user.name))
            conn.execute("DELETE FROM auth_session WHERE user_name = ?", (user.name,))

    def user(self, name: str) -> User | None:
        """The user of that name (case-insensitive), or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT name, role, enabled, created_at, password_changed_at FROM auth_user "
                               "WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def users(self) -> list[User]:
        """Every user, by name."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT name, role, enabled, created_at, password_changed_at FROM auth_user "
                                "ORDER BY name").fetchall()
        return [_user(row) for row in rows]

    # --- logins and sessions -----------------------------------------------------------------------
    def login(self, name: str, password: str, source: str) -> NewSession:
        """Check a password and open a session; LoginRefused (throttled or wrong) otherwise."""
        now = self.clock()
        name = name.strip()
        if self.throttle.blocked(name, source, now):
            self._record(self._actor_for(name), AuthAction.LOGIN_FAILED, "session",
                         {"reason": "throttled", **self._name_details(name)}, source)
            raise LoginRefused(THROTTLED)
        stored, user = self._stored_hash(name)
        ok = self.hasher.verify(stored, password)
        if not ok or user is None:
            reason = "unknown user" if user is None else ("disabled" if stored is None else "wrong password")
            self.throttle.failed(name, source, now)
            self._record(self._actor_for(name), AuthAction.LOGIN_FAILED, "session",
                         {"reason": reason, **self._name_details(name)}, source)
            raise LoginRefused(WRONG_CREDENTIALS)
        self.throttle.succeeded(user.name)
        self._rehash_if_needed(user.name, stored, password)
        return self._open_session(user, source, IdentityKind.SESSION)

    def proxy_session(self, name: str, source: str) -> NewSession:
        """A session for a user a trusted reverse proxy has authenticated; LoginRefused if unknown or disabled."""
        user = self.user(name)
        if user is None or not user.enabled:
            self._record(self._actor_for(name), AuthAction.LOGIN_FAILED, "session",
                         {"reason": "proxy user unknown or disabled", "via": "proxy", **self._name_details(name)},
                         source)
            raise LoginRefused("no enabled facwatch account for the user the proxy authenticated")
        return self._open_session(user, source, IdentityKind.PROXY)

    def session(self, token: str, source: str, *, activity: bool = True) -> ActiveSession | None:
        """The session of a cookie, or None if unknown, expired, ended or its user is disabled.

        ``activity=False`` (a timer refresh, not a person) reads the session without extending it.
        """
        now = self.clock()
        digest = token_hash(token)
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT s.user_name, s.csrf, s.kind, s.created_at, s.last_seen, u.role, u.enabled "
                "FROM auth_session s JOIN auth_user u ON u.name = s.user_name WHERE s.id_hash = ?",
                (digest,)).fetchone()
        if row is None:
            return None
        user_name, csrf, kind, created_at, last_seen, role, enabled = row
        if not enabled or now - created_at >= self.policy.absolute_s or now - last_seen >= self.policy.idle_s:
            self._delete_session(digest)
            return None
        if activity and now - last_seen >= self.policy.touch_every_s:
            with self.db.write() as conn:
                conn.execute("UPDATE auth_session SET last_seen = ? WHERE id_hash = ?", (now, digest))
        return ActiveSession(Identity(user_name, Role(role), source, IdentityKind(kind)), csrf)

    def logout(self, token: str, source: str) -> None:
        """End one session (a no-op for an unknown one)."""
        active = self.session(token, source, activity=False)
        if active is not None:
            self._record(active.identity.name, AuthAction.LOGOUT, "session", None, source)
        self._delete_session(token_hash(token))

    # --- kiosk tokens ------------------------------------------------------------------------------
    def create_kiosk_token(self, name: str, *, actor: str, source: str, expires_at: float | None = None,
                           network: str | None = None) -> str:
        """A new kiosk token, shown once."""
        details = {"expires_at": expires_at, "network": network}
        self._record(actor, AuthAction.TOKEN_CREATE, f"kiosk:{name}", details, source)
        return self.kiosk.create(name, actor, self.clock(), expires_at=expires_at, network=network)

    def revoke_kiosk_token(self, name: str, *, actor: str, source: str) -> bool:
        """Revoke a kiosk token; False if no active token has that name."""
        if not any(t.name.lower() == name.lower() and t.active for t in self.kiosk.list()):
            return False
        self._record(actor, AuthAction.TOKEN_REVOKE, f"kiosk:{name}", None, source)
        return self.kiosk.revoke(name, actor, self.clock())

    def kiosk_tokens(self) -> list[KioskToken]:
        """Every kiosk token ever created (never the tokens themselves)."""
        return self.kiosk.list()

    def kiosk_identity(self, token: str, source: str) -> tuple[Identity | None, KioskCheck]:
        """The wall-screen identity of a kiosk token, or None with the reason (audited)."""
        checked = self.kiosk.check(token, source, self.clock())
        if checked.problem is None and checked.name is not None:
            return Identity(f"kiosk:{checked.name}", Role.KIOSK, source, IdentityKind.KIOSK), checked
        subject = f"kiosk:{checked.name}" if checked.name else "kiosk:(unknown)"
        digest, now = token_hash(token), self.clock()
        if now - self._kiosk_refusals.get(digest, -KIOSK_REFUSAL_AUDIT_S) >= KIOSK_REFUSAL_AUDIT_S:
            self._kiosk_refusals[digest] = now
            if len(self._kiosk_refusals) > 10_000:
                self._kiosk_refusals.clear()
            self._record(subject, AuthAction.KIOSK_REFUSED, subject, {"reason": checked.problem}, source)
        return None, checked

    # --- authorisation -----------------------------------------------------------------------------
    def refuse(self, identity: Identity | None, needed: str, subject: str) -> AuthorisationRefused:
        """Record and log a refusal; returns the exception for the caller to raise."""
        who = identity.name if identity else "anonymous"
        role = identity.role.value if identity else None
        source = identity.source if identity else None
        log.warning("refused: %s (%s) from %s tried %s (needs %s)", who, role, source, subject, needed)
        self._record(who, AuthAction.REFUSED, subject, {"needed": needed, "role": role}, source)
        return AuthorisationRefused(identity, needed)

    # --- internals ---------------------------------------------------------------------------------
    def _open_session(self, user: User, source: str, kind: IdentityKind) -> NewSession:
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        identity = Identity(user.name, user.role, source, kind)
        self._record(user.name, AuthAction.LOGIN, "session", {"role": user.role.value, "via": kind.value}, source)
        with self.db.write() as conn:
            conn.execute("INSERT INTO auth_session (id_hash, user_name, csrf, kind, source, created_at, last_seen) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (token_hash(token), user.name, csrf, kind.value, source,
                                                          now, now))
        return NewSession(token, csrf, identity)

    def _delete_session(self, digest: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM auth_session WHERE id_hash = ?", (digest,))

    def _stored_hash(self, name: str) -> tuple[str | None, User | None]:
        """The hash to verify against (None for unknown or disabled users) and the user."""
        with self.db.read() as conn:
            row = conn.execute("SELECT name, role, enabled, created_at, password_changed_at, password_hash "
                               "FROM auth_user WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None, None
        user = _user(row[:5])
        return (row[5] if user.enabled else None), user

    def _rehash_if_needed(self, name: str, stored: str | None, password: str) -> None:
        if stored is not None and self.hasher.needs_rehash(stored):
            with self.db.write() as conn:
                conn.execute("UPDATE auth_user SET password_hash = ? WHERE name = ?",
                             (self.hasher.hash(password), name))

    def _existing(self, name: str) -> User:
        user = self.user(name)
        if user is None:
            raise ValueError(f"no user {name!r}")
        return user

    def _actor_for(self, name: str) -> str:
        """The submitted name if it is a user; else a placeholder (people type passwords into the name field)."""
        user = self.user(name) if USER_NAME.match(name) else None
        return user.name if user else "(unknown user)"

    def _name_details(self, name: str) -> dict[str, str]:
        if self._actor_for(name) != "(unknown user)":
            return {}
        # enough to group repeated attempts with the same name, not enough to read it back
        return {"name_sha256": hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]}

    def _record(self, actor: str, action: AuthAction, subject: str, details: dict | None, source: str | None) -> None:
        self.audit.record(actor, action.value, subject, details, source)


def _user(row: tuple) -> User:
    return User(row[0], Role(row[1]), bool(row[2]), row[3], row[4])


def _user_role(role: Role | str) -> Role:
    try:
        value = Role(role)
    except ValueError:
        value = None
    if value not in USER_ROLES:
        raise ValueError(f"role must be one of {', '.join(r.value for r in USER_ROLES)}")
    return value


def _check_policy(password: str) -> None:
    problem = policy_problem(password)
    if problem:
        raise ValueError(problem)
