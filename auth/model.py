"""Who may do what: roles, the permissions they grant, and the identity a request carries.

Roles are sets of permissions, so ``require_role("operator")`` means "has every permission an operator
has": an admin passes, an auditor (who exports evidence but does not acknowledge) does not. A kiosk
(wall screen) is not a user role: it may only show the wall views.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """One thing an identity may do."""

    VIEW_WALL = "view_wall"        # the NOC wall views (kiosk tokens get only this)
    VIEW = "view"                  # every page
    ACKNOWLEDGE = "acknowledge"
    SILENCE = "silence"
    MAINTENANCE = "maintenance"
    EXPORT = "export"              # evidence packs for auditors
    MANAGE_USERS = "manage_users"
    MANAGE_TOKENS = "manage_tokens"
    CONFIGURE = "configure"


class Role(StrEnum):
    """A user's role; ``kiosk`` is reserved for wall-screen tokens and cannot be given to a user."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    ADMIN = "admin"
    KIOSK = "kiosk"


_VIEW = frozenset({Permission.VIEW_WALL, Permission.VIEW})
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.KIOSK: frozenset({Permission.VIEW_WALL}),
    Role.VIEWER: _VIEW,
    Role.OPERATOR: _VIEW | {Permission.ACKNOWLEDGE, Permission.SILENCE, Permission.MAINTENANCE},
    Role.AUDITOR: _VIEW | {Permission.EXPORT},
    Role.ADMIN: frozenset(Permission),
}
USER_ROLES = (Role.VIEWER, Role.OPERATOR, Role.AUDITOR, Role.ADMIN)


class IdentityKind(StrEnum):
    """How an identity was established."""

    SESSION = "session"  # logged in with a password
    PROXY = "proxy"      # asserted by a trusted reverse proxy (its own login, e.g. OIDC)
    KIOSK = "kiosk"      # a wall-screen token
    CLI = "cli"          # a local command (facwatch users/tokens)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, with which role, from where.

    Example: ``Identity("alice", Role.OPERATOR, "10.0.5.17", IdentityKind.SESSION)``; a wall screen is
    ``Identity("kiosk:NOC-1", Role.KIOSK, "10.0.9.3", IdentityKind.KIOSK)``.
    """

    name: str
    role: Role
    source: str
    kind: IdentityKind

    @property
    def is_kiosk(self) -> bool:
        """True for a wall-screen token."""
        return self.kind is IdentityKind.KIOSK

    def may(self, permission: Permission) -> bool:
        """True if the role grants ``permission``."""
        return permission in PERMISSIONS[self.role]

    def has_role(self, role: Role | str) -> bool:
        """True if this identity has every permission of ``role``."""
        return PERMISSIONS[Role(role)] <= PERMISSIONS[self.role]


class AuthorisationRefused(PermissionError):
    """An identity asked for something its role does not grant; the guard answers 403."""

    def __init__(self, identity: Identity | None, needed: str):
        who = identity.name if identity else "anonymous"
        super().__init__(f"{who} may not do this (needs {needed})")
        self.identity = identity
        self.needed = needed


class LoginRefused(Exception):
    """A login failed; ``str()`` is safe to show (it never says whether the user exists)."""
