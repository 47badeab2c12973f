"""Who is acting: every privileged callback asks here, on the server, never by hiding a button.

With accounts configured (``sources.auth``) the actor is the logged-in identity, refused (and audited by
the guard) unless its role grants the permission. Without accounts — the loopback demo — the
dashboard is open and the operator types a name, recorded with the request's address.
"""

from __future__ import annotations

from dataclasses import dataclass

import flask

from auth.model import AuthorisationRefused, Identity, Permission
from auth.web import current_identity, require_permission
from dashboard.data import DashboardSources

OPEN_ACTOR = "(no accounts)"  # who acts on an open dashboard when an action asks for no typed name


@dataclass(frozen=True, slots=True)
class Actor:
    """A person allowed to do something, and where the request came from."""

    name: str
    source: str


class Refused(Exception):
    """The action is not allowed; the message is safe to show."""


def authorise(sources: DashboardSources, permission: Permission | str, typed_name: str | None = None, *,
              named: bool = True) -> Actor:
    """The actor for ``permission``, or Refused with a message for the page.

    ``named=False``: on an open dashboard the action needs no typed name (e.g. starting a demo scenario).
    """
    if sources.auth is None:
        name = (typed_name or "").strip()
        if not name and named:
            raise Refused("enter your name: this dashboard has no accounts, so actions are signed by name")
        return Actor(name[:200] or OPEN_ACTOR, _source())
    try:
        identity = require_permission(Permission(permission))
    except AuthorisationRefused as exc:
        raise Refused(f"refused: your role does not allow {Permission(permission).value}") from exc
    return Actor(identity.name, identity.source)


def accounts_enabled(sources: DashboardSources) -> bool:
    """True when actions are signed by the logged-in identity (no name field needed)."""
    return sources.auth is not None


def viewer(sources: DashboardSources) -> Identity | None:
    """The identity of the current request when accounts are on (None without accounts or outside a request)."""
    if sources.auth is None or not flask.has_request_context():
        return None
    return current_identity()


def _source() -> str:
    try:
        return flask.request.remote_addr or "unknown"
    except RuntimeError:  # outside a request (unit tests calling a callback directly)
        return "unknown"
