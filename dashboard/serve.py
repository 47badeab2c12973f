"""Serve the dashboard with waitress (a production WSGI server, never Flask's debug server).

``web_access`` decides, before anything listens, whether the dashboard needs accounts: with users in the
store it always does; without users it may only listen on loopback (the demo), never on the network.
waitress speaks plain HTTP: HTTPS comes from a reverse proxy in front (docs/deploy.md).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import dash
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from dashboard.app import MAX_REQUEST_BYTES

log = logging.getLogger(__name__)

NO_ACCOUNTS = ("the dashboard would listen on {host} without accounts, so anyone who can reach it could "
               "acknowledge and silence alerts. Create an admin first: facwatch users add NAME --role admin "
               "(or listen on 127.0.0.1 only)")
PLAIN_HTTP = ("the dashboard would take passwords over plain HTTP on {host}. Put a TLS reverse proxy in front "
              "and list it in dashboard.trusted_proxies (docs/deploy.md), or set dashboard.secure_cookies: "
              "false to accept clear-text logins on this network")


class ServeRefused(Exception):
    """Serving the dashboard this way would be unsafe; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class WebSecurity:
    """How the dashboard is reached: the reverse proxies it trusts and whether cookies need HTTPS.

    ``secure_cookies=None`` means: Secure cookies unless plain HTTP on loopback with no proxy.
    Example: ``WebSecurity(trusted_proxies=("127.0.0.1",))`` behind nginx on the same host.
    """

    trusted_proxies: tuple[str, ...] = ()
    secure_cookies: bool | None = None

    def __post_init__(self) -> None:
        for proxy in self.trusted_proxies:
            ipaddress.ip_network(proxy, strict=False)  # ValueError now, not at the first request


@dataclass(frozen=True, slots=True)
class WebAccess:
    """The outcome of the start-up policy: accounts on or off, and the cookie flag."""

    accounts: bool
    secure_cookies: bool
    trusted_proxies: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (``localhost``, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard ("0.0.0.0", "::") reaches the network


def web_access(user_count: int, host: str, security: WebSecurity = WebSecurity()) -> WebAccess:
    """Accounts on when users exist; without users only on loopback; ServeRefused for unsafe set-ups."""
    loopback = is_loopback(host)
    proxied = bool(security.trusted_proxies)
    if user_count == 0:
        if not loopback:
            raise ServeRefused(NO_ACCOUNTS.format(host=host))
        return WebAccess(False, False, security.trusted_proxies)
    if security.secure_cookies is None:
        if not loopback and not proxied:
            raise ServeRefused(PLAIN_HTTP.format(host=host))
        secure = proxied
    else:
        secure = security.secure_cookies
        if not secure and not loopback:
            log.warning("dashboard accounts over plain HTTP on %s (secure_cookies: false): passwords and session "
                        "cookies cross the network in clear text", host)
    return WebAccess(True, secure, security.trusted_proxies)


def count_users(db_path: str | Path) -> int:
    """How many accounts the store holds (creates the auth tables if missing)."""
    from auth.db import Database

    with Database(db_path).read() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM auth_user").fetchone()[0])


class DashboardServer:
    """A waitress server that can be stopped from another thread.

    Example: ``server = make_server(app, "127.0.0.1", 8050); threading.Thread(target=server.run).start();
    ...; server.close()``.
    """

    def __init__(self, server: BaseWSGIServer):
        self._server = server
        self._running = threading.Event()
        self._stopped = threading.Event()

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        """The port it listens on (the real one when 0 was asked for)."""
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        """Where a browser finds the dashboard."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until ``close()`` (or Ctrl-C) in the calling thread."""
        self._running.set()
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop open connections, stop the worker threads; wait for ``run()`` to return."""
        if self._running.is_set() and not self._stopped.is_set():
            # The asyncore loop is not thread-safe: let the loop thread close its own sockets.
            self._server.trigger.pull_trigger(self._close_channels)
            self._stopped.wait(timeout)
        else:
            self._close_channels()
        self._server.task_dispatcher.shutdown()

    def _close_channels(self) -> None:
        """Close the listening socket, every open connection and the trigger; the loop ends when none are left."""
        for dispatcher in list(self._server._map.values()):
            if isinstance(dispatcher, HTTPChannel):
                dispatcher.handle_close()  # also releases its output buffers
            else:
                dispatcher.close()  # the listening socket and the trigger


def make_server(app: dash.Dash, host: str, port: int, threads: int = 8) -> DashboardServer:
    """A bound, not yet running, waitress server for ``app`` (port 0 picks a free port)."""
    # The body limit is Flask's too; waitress refuses a bigger body before buffering it.
    server = create_server(app.server, host=host, port=port, threads=threads, ident="facwatch",
                           max_request_body_size=MAX_REQUEST_BYTES)
    return DashboardServer(server)


def serve(app: dash.Dash, host: str, port: int, threads: int = 8) -> None:
    """Serve ``app`` on host:port until interrupted."""
    server = make_server(app, host, port, threads)
    log.info("dashboard on %s", server.url)
    try:
        server.run()
    finally:
        server.close()
