"""The web guard: every request to the dashboard's Flask server needs an identity, except an allow-list.

``install(app.server, service)`` adds a ``before_request`` hook, so Dash's own endpoints
(``/_dash-layout``, ``/_dash-dependencies``, ``/_dash-update-component``, ``/_dash-component-suites/…``,
``/assets/…``) are covered as much as the pages are. An identity comes from, in this order:

1. a server-side session (cookie ``facwatch_session``, made by ``POST /login``);
2. a trusted reverse proxy's ``X-Forwarded-User`` — only when the connection comes from an address in
   ``trusted_proxies``; from anywhere else the header is ignored (and logged);
3. a kiosk token (``?kiosk=…`` once, then cookie ``facwatch_kiosk``), valid for the wall views only. A
   kiosk token that stops working shows "kiosk token revoked — ask an admin", never a login form.

CSRF: cookies are ``SameSite=Strict``, and every state-changing request (anything but GET/HEAD/OPTIONS,
including Dash's ``POST /_dash-update-component``) must carry the per-session token in the
``X-CSRFToken`` header (or a ``csrf_token`` form field) and, when the browser sends one, an ``Origin``
of this host. The token is also in the readable cookie ``_csrf_token``: the names are Dash's defaults,
so the Dash renderer copies the cookie into the header on every request by itself. A foreign page can
neither read the cookie nor set the header without a CORS preflight, which this server never grants.

Callbacks ask ``current_identity()`` who is calling and call ``require_role("operator")`` (or
``require_permission``) before acting: refusals raise ``AuthorisationRefused``, are logged and audited,
and answer 403. Hidden buttons are not a control; the check in the callback is.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, current_app, g, redirect, request

from auth.model import AuthorisationRefused, Identity, LoginRefused, Permission, Role
from auth.pages import kiosk_out_of_scope_page, kiosk_refused_page, login_page, logout_page
from auth.service import AuthService

log = logging.getLogger(__name__)

SESSION_COOKIE = "facwatch_session"
KIOSK_COOKIE = "facwatch_kiosk"
LOGIN_CSRF_COOKIE = "facwatch_login_csrf"
CSRF_COOKIE = "_csrf_token"  # dash.Dash(csrf_token_name=...) default: the renderer reads this cookie …
CSRF_HEADER = "X-CSRFToken"  # … and sends it in this header (csrf_header_name default)
KIOSK_PARAM = "kiosk"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KIOSK_MAX_AGE_S = 400 * 86400  # the longest lifetime browsers accept; the token's own expiry is server-side
EXTENSION = "facwatch_auth"

DEFAULT_KIOSK_PATHS = ("/wall", "/power", "/rooms", "/fire")
# What a wall page needs besides its own path: the Dash shell, its scripts (and the callbacks, checked apart).
DASH_SHELL = ("/_dash-layout", "/_dash-dependencies", "/_favicon.ico")
DASH_STATIC_PREFIXES = ("/_dash-component-suites/", "/assets/")
# Dash callback inputs that choose what a page shows: a kiosk may only ask for its own paths.
_LOCATION_PROPS = frozenset({"pathname", "href"})
_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass
class Guard:
    """The installed guard's settings; kept in ``flask_app.extensions["facwatch_auth"]``."""

    service: AuthService
    allow: frozenset[str] = frozenset()
    allow_prefixes: tuple[str, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    proxy_user_header: str = "X-Forwarded-User"
    kiosk_paths: tuple[str, ...] = DEFAULT_KIOSK_PATHS
    kiosk_outputs: frozenset[str] | None = None
    secure_cookies: bool = True
    _untrusted_header_sources: set[str] = field(default_factory=set)


def install(flask_app: Flask, service: AuthService, *, allow: Iterable[str] = (),
            trusted_proxies: Iterable[str] = (), proxy_user_header: str = "X-Forwarded-User",
            kiosk_paths: Iterable[str] = DEFAULT_KIOSK_PATHS, kiosk_outputs: Iterable[str] | None = None,
            secure_cookies: bool = True) -> Guard:
    """Guard every route of ``flask_app`` (``dash_app.server``) and add ``/login`` and ``/logout``.

    ``allow``: extra paths served without credentials (exact, or a prefix ending in ``/``), e.g. a health
    check; they must not return data. ``kiosk_outputs``: if given, the only callback output component
    ids a kiosk may trigger (for dict ids, the ``type``). ``secure_cookies=False`` only for plain HTTP on
    loopback (the demo); anything reachable from the network belongs behind TLS.
    """
    allowed = list(allow)
    guard = Guard(
        service=service,
        allow=frozenset(p for p in allowed if not p.endswith("/")),
        allow_prefixes=tuple(p for p in allowed if p.endswith("/")),
        trusted_proxies=tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies),
        proxy_user_header=proxy_user_header,
        kiosk_paths=tuple(kiosk_paths),
        kiosk_outputs=frozenset(kiosk_outputs) if kiosk_outputs is not None else None,
        secure_cookies=secure_cookies,
    )
    if not secure_cookies:
        log.warning("session cookies without the Secure flag: only for plain HTTP on loopback")
    flask_app.extensions[EXTENSION] = guard
    flask_app.add_url_rule("/login", "facwatch_login", _login, methods=["GET", "POST"])
    flask_app.add_url_rule("/logout", "facwatch_logout", _logout, methods=["GET", "POST"])
    flask_app.before_request_funcs.setdefault(None, []).insert(0, _guard_request)
    flask_app.after_request(_after_request)
    flask_app.register_error_handler(AuthorisationRefused, _refused)
    return guard


# --- what callbacks use ------------------------------------------------------------------------------
def current_identity() -> Identity | None:
    """Who made the current request (user, role, source address; a kiosk is ``kiosk:NAME``)."""
    return g.get("facwatch_identity")


def require_role(role: Role | str, subject: str | None = None) -> Identity:
    """The caller's identity if its role includes every permission of ``role``; else refuse (403, audited)."""
    identity = current_identity()
    if identity is None or not identity.has_role(role):
        raise _guard().service.refuse(identity, f"role {Role(role).value}", subject or _subject())
    return identity


def require_permission(permission: Permission | str, subject: str | None = None) -> Identity:
    """The caller's identity if its role grants ``permission``; else refuse (403, audited)."""
    identity = current_identity()
    if identity is None or not identity.may(Permission(permission)):
        raise _guard().service.refuse(identity, f"permission {Permission(permission).value}",
                                      subject or _subject())
    return identity


def client_address() -> str:
    """The client's address: the peer, or the nearest untrusted X-Forwarded-For hop behind a trusted proxy."""
    guard = _guard()
    peer = request.remote_addr or "unknown"
    if not _trusted(guard, peer):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(guard, hop):
            return hop
    return peer


# --- the guard ---------------------------------------------------------------------------------------
def _guard() -> Guard:
    return current_app.extensions[EXTENSION]


def _guard_request() -> Response | None:
    guard = _guard()
    path = request.path
    if path in ("/login", "/logout") or path in guard.allow or path.startswith(guard.allow_prefixes):
        return None
    source = client_address()
    identity, csrf = _session_identity(guard, source)
    proxied = _proxy_identity(guard, source, identity)
    if proxied is not None:
        identity, csrf = proxied
    if identity is None:
        kiosk = _kiosk(guard, source)
        if kiosk is not None:
            return kiosk
        identity, csrf = g.get("facwatch_identity"), g.get("facwatch_csrf")
    if identity is None:
        return _unauthenticated()
    g.facwatch_identity = identity
    if request.method not in SAFE_METHODS and not _csrf_ok(csrf):
        guard.service.refuse(identity, "a valid CSRF token and same-origin request", f"{request.method} {path}")
        return _json(403, "refused: missing or wrong CSRF token")
    return None


def _session_identity(guard: Guard, source: str) -> tuple[Identity | None, str | None]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None, None
    active = guard.service.session(token, source, activity=_is_activity())
    if active is None:
        g.facwatch_clear = [SESSION_COOKIE, CSRF_COOKIE]  # stale: let the browser forget it
        return None, None
    return active.identity, active.csrf


def _proxy_identity(guard: Guard, source: str, current: Identity | None) -> tuple[Identity, str] | None:
    """A session for the user a trusted proxy asserts (a new one when the asserted user changes)."""
    name = request.headers.get(guard.proxy_user_header, "").strip()
    if not name:
        return None
    peer = request.remote_addr or "unknown"
    if not guard.trusted_proxies or not _trusted(guard, peer):
        if peer not in guard._untrusted_header_sources and len(guard._untrusted_header_sources) < 1000:
            guard._untrusted_header_sources.add(peer)
            log.warning("ignored %s from %s: not a trusted proxy", guard.proxy_user_header, peer)
        return None
    if current is not None and current.name.lower() == name.lower():
        return None
    try:
        new = guard.service.proxy_session(name, source)
    except LoginRefused:
        return None
    if current is not None:  # the proxy now speaks for someone else: end the old user's session
        guard.service.logout(request.cookies.get(SESSION_COOKIE, ""), source)
    g.facwatch_new_session = new
    return new.identity, new.csrf


def _kiosk(guard: Guard, source: str) -> Response | None:
    """Check a kiosk token if one is presented; a Response ends the request (redirect or refusal)."""
    from_url = request.args.get(KIOSK_PARAM)
    token = from_url or request.cookies.get(KIOSK_COOKIE)
    if not token:
        return None
    identity, checked = guard.service.kiosk_identity(token, source)
    if identity is None:
        return _html(403, kiosk_refused_page(checked.problem or "unknown"))
    if from_url and request.method == "GET":
        # Swap the token in the URL for a cookie at once, so it stays out of history, logs and Referer.
        rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != KIOSK_PARAM])
        response = redirect(request.path + (f"?{rest}" if rest else ""), code=303)
        _set_cookie(response, KIOSK_COOKIE, token, http_only=True, max_age=KIOSK_MAX_AGE_S)
        _set_cookie(response, CSRF_COOKIE, _kiosk_csrf(token), http_only=False, max_age=KIOSK_MAX_AGE_S)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    if not _kiosk_may(guard):
        guard.service.refuse(identity, "a wall view", f"{request.method} {request.path}")
        return _html(403, kiosk_out_of_scope_page()) if _wants_html() else _json(403, "refused: not a wall view")
    g.facwatch_identity, g.facwatch_csrf = identity, _kiosk_csrf(token)
    return None


def _kiosk_may(guard: Guard) -> bool:
    """A kiosk may load the wall paths, Dash's shell and static files, and callbacks of wall views only."""
    path = request.path
    if request.method in SAFE_METHODS and (_on_paths(path, guard.kiosk_paths) or path in DASH_SHELL
                                           or path.startswith(DASH_STATIC_PREFIXES)):
        return True
    if path != "/_dash-update-component" or request.method != "POST":
        return False
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return False
    for item in [*_as_list(body.get("inputs")), *_as_list(body.get("state"))]:
        if isinstance(item, dict) and item.get("property") in _LOCATION_PROPS:
            value = item.get("value")
            if not isinstance(value, str) or not _on_paths(urlsplit(value).path, guard.kiosk_paths):
                return False
    return guard.kiosk_outputs is None or _output_ids(body) <= guard.kiosk_outputs


def _output_ids(body: dict) -> set[str]:
    """The component ids a Dash callback request writes to (dict ids by their ``type``)."""
    ids: set[str] = set()
    for item in _as_list(body.get("outputs")):
        if not isinstance(item, dict):
            ids.add("")  # unexpected shape: matches nothing, so the request is refused
            continue
        comp = item.get("id")
        ids.add(str(comp.get("type")) if isinstance(comp, dict) else str(comp))
    return ids or {""}


def _as_list(value: Any) -> list:
    """Dash sends one item for a single input/output and a list (of lists, for ALL/MATCH) otherwise."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _as_list(item)] if value else []
    return []


def _on_paths(path: str, paths: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)


def _csrf_ok(expected: str | None) -> bool:
    """The request carries the session's CSRF token and, if the browser says where it comes from, this host."""
    if not expected:
        return False
    given = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return False
    return _same_origin()


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not every client sends Origin; the token above is the control
    return urlsplit(origin).netloc.lower() == request.host.lower()


def _kiosk_csrf(token: str) -> str:
    """A kiosk's CSRF value: derived from its token (a kiosk has no server-side session)."""
    return hashlib.sha256(b"facwatch-kiosk-csrf:" + token.encode("utf-8", "surrogatepass")).hexdigest()


def _is_activity() -> bool:
    """False for Dash callbacks fired only by timers: a tab left open must still reach the idle timeout."""
    if request.path != "/_dash-update-component":
        return True
    body = request.get_json(silent=True)
    changed = body.get("changedPropIds") if isinstance(body, dict) else None
    if not isinstance(changed, list) or not changed:
        return True
    return not all(isinstance(c, str) and c.endswith(".n_intervals") for c in changed)


def _trusted(guard: Guard, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in guard.trusted_proxies)


def _wants_html() -> bool:
    return request.method == "GET" and request.accept_mimetypes.accept_html and not request.path.startswith("/_dash")


def _unauthenticated() -> Response:
    if _wants_html() and not request.path.startswith(DASH_STATIC_PREFIXES):
        target = request.full_path if request.query_string else request.path
        return redirect("/login?" + urlencode({"next": target}), code=303)
    return _json(401, "authentication required")


def _subject() -> str:
    """What a refused caller tried: the callback's output for Dash requests, else method and path."""
    body = request.get_json(silent=True) if request.is_json else None
    output = body.get("output") if isinstance(body, dict) else None
    return f"callback {output}" if isinstance(output, str) else f"{request.method} {request.path}"


# --- login and logout --------------------------------------------------------------------------------
def _login() -> Response:
    guard = _guard()
    next_path = _safe_next(request.values.get("next", "/"))
    if request.method == "GET":
        return _login_form(next_path)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()) or not _same_origin():
        log.warning("login form refused from %s: missing or wrong CSRF token", client_address())
        return _login_form(next_path, "the form expired; please sign in again", 403)
    try:
        new = guard.service.login(request.form.get("username", ""), request.form.get("password", ""),
                                  client_address())
    except LoginRefused as exc:
        return _login_form(next_path, str(exc), 401)
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # no session fixation: whatever id the browser had is ended, the new one is fresh
        guard.service.logout(old, client_address())
    response = redirect(next_path, code=303)
    _set_session_cookies(response, new.token, new.csrf)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _login_form(next_path: str, message: str | None = None, status: int = 200) -> Response:
    # Keep the browser's token if it has one: the browser loads other URLs while the form is open (Chrome
    # asks for /favicon.ico, which is sent here too), and a fresh token would void the open form's.
    given = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    csrf = given if _LOGIN_TOKEN.fullmatch(given) else secrets.token_urlsafe(32)
    response = _html(status, login_page(csrf, next_path, message))
    _set_cookie(response, LOGIN_CSRF_COOKIE, csrf, http_only=True, path="/login")
    return response


def _logout() -> Response:
    guard = _guard()
    token = request.cookies.get(SESSION_COOKIE)
    active = guard.service.session(token, client_address(), activity=False) if token else None
    if active is None:
        response = redirect("/login", code=303)
    elif request.method == "GET":
        return _html(200, logout_page(active.csrf, active.identity.name))
    elif not _csrf_ok(active.csrf):
        guard.service.refuse(active.identity, "a valid CSRF token", "POST /logout")
        return _json(403, "refused: missing or wrong CSRF token")
    else:
        guard.service.logout(token or "", client_address())
        response = redirect("/login", code=303)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/")
    return response


def _safe_next(value: str) -> str:
    """Only a local path after login: never another host (protocol-relative, backslash or absolute URLs)."""
    parts = urlsplit(value)
    # browsers drop tabs and newlines from URLs and read a backslash as a slash: "/\t/evil" is "//evil"
    odd = "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)
    if odd or parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value if value not in ("/login", "/logout") else "/"


# --- responses and cookies ---------------------------------------------------------------------------
def _after_request(response: Response) -> Response:
    new = g.pop("facwatch_new_session", None)
    if new is not None:
        _set_session_cookies(response, new.token, new.csrf)
    for name in g.pop("facwatch_clear", []):
        response.delete_cookie(name, path="/")
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith(DASH_STATIC_PREFIXES):
        headers.setdefault("Cache-Control", "no-store")
    if _guard().secure_cookies:  # browsers ignore it over plain HTTP
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _set_session_cookies(response: Response, token: str, csrf: str) -> None:
    _set_cookie(response, SESSION_COOKIE, token, http_only=True)
    _set_cookie(response, CSRF_COOKIE, csrf, http_only=False)  # the Dash renderer must read it


def _set_cookie(response: Response, name: str, value: str, *, http_only: bool, path: str = "/",
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, secure=_guard().secure_cookies,
                        httponly=http_only, samesite="Strict")


def _refused(exc: AuthorisationRefused) -> Response:
    return _json(403, "refused: your role does not allow this")


def _json(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status=status, mimetype="application/json")


def _html(status: int, body: str) -> Response:
    return Response(body, status=status, mimetype="text/html")
