"""Serve the dashboard with production WSGI servers (never Flask's debug server or Werkzeug's debugger).

Plain HTTP is served by waitress; with ``dashboard.tls`` in the site file, HTTPS is served directly by
cheroot (CherryPy's server; waitress has no TLS): TLS 1.2 or later, no compression, Python's default
server ciphers, HSTS on every response. The other way to HTTPS is a reverse proxy in front
(``dashboard.trusted_proxies``, docs/deploy.md). Both servers have the same interface (``host``, ``port``,
``url``, ``run()``, ``close()``), the same request body limit and the same number of threads.

``web_access`` decides, before anything listens, whether the dashboard needs accounts: with users in the
store it always does; without users it may only listen on loopback (the demo), never on the network.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dash
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from config.tls_files import TlsFiles
from dashboard.app import MAX_REQUEST_BYTES

log = logging.getLogger(__name__)

NO_ACCOUNTS = ("the dashboard would listen on {host} without accounts, so anyone who can reach it could "
               "acknowledge and silence alerts. Create an admin first: facwatch users add NAME --role admin "
               "(or listen on 127.0.0.1 only)")
PLAIN_HTTP = ("the dashboard would take passwords over plain HTTP on {host}. Serve HTTPS directly with "
              "dashboard.tls (cert_file, key_file), or put a TLS reverse proxy in front and list it in "
              "dashboard.trusted_proxies (docs/deploy.md), or set dashboard.secure_cookies: false to accept "
              "clear-text logins on this network")
HSTS = ("Strict-Transport-Security", "max-age=31536000")  # one year: browsers then refuse plain HTTP here
MAX_REQUEST_HEADER_BYTES = 262_144  # waitress's default; cheroot's is unlimited


class ServeRefused(Exception):
    """Serving the dashboard this way would be unsafe; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class WebSecurity:
    """How the dashboard is reached: the reverse proxies it trusts, direct HTTPS, whether cookies need HTTPS.

    ``secure_cookies=None`` means: Secure cookies unless plain HTTP on loopback with no proxy; with
    ``tls`` (facwatch serves HTTPS itself) cookies are always Secure.
    Example: ``WebSecurity(trusted_proxies=("127.0.0.1",))`` behind nginx on the same host.
    """

    trusted_proxies: tuple[str, ...] = ()
    secure_cookies: bool | None = None
    tls: bool = False

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
        return WebAccess(False, security.tls, security.trusted_proxies)
    if security.tls:
        return WebAccess(True, True, security.trusted_proxies)  # HTTPS end to end: like a trusted proxy
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


class TlsDashboardServer:
    """A cheroot HTTPS server with ``DashboardServer``'s interface; every response carries HSTS.

    Example: ``server = make_server(app, "0.0.0.0", 8443, tls=site.dashboard_tls)``; ``server.url`` is https://.
    """

    def __init__(self, server: wsgi.Server):
        self._server = server

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._server.bind_addr[0])

    @property
    def port(self) -> int:
        """The port it listens on (the real one when 0 was asked for)."""
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        """Where a browser finds the dashboard."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until ``close()`` in the calling thread."""
        self._server.serve()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, stop the worker threads (each given ``timeout``)."""
        self._server.shutdown_timeout = timeout
        self._server.stop()


class _LoggingServer(wsgi.Server):
    """cheroot writes its errors to stderr; these go to the log instead (they never hold the key password)."""

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        log.log(level, "cheroot: %s", msg, exc_info=traceback)


def with_hsts(app: Callable) -> Callable:
    """``app`` with the Strict-Transport-Security header added to every response."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, HSTS], exc_info)

        return app(environ, start)

    return wrapped


def _tls_server(app: dash.Dash, host: str, port: int, threads: int, tls: TlsFiles) -> TlsDashboardServer:
    server = _LoggingServer((host, port), with_hsts(app.server), numthreads=threads, max=threads,
                            server_name="facwatch")
    server.max_request_body_size = MAX_REQUEST_BYTES
    server.max_request_header_size = MAX_REQUEST_HEADER_BYTES
    password = tls.key_password.reveal() if tls.key_password is not None else None
    adapter = BuiltinSSLAdapter(str(tls.cert_file), str(tls.key_file), private_key_password=password)
    adapter.context = tls.context()  # ours: TLS 1.2 minimum, no compression
    server.ssl_adapter = adapter
    server.prepare()  # binds now, like waitress, so a busy port fails here and port 0 is resolved
    return TlsDashboardServer(server)


def make_server(app: dash.Dash, host: str, port: int, threads: int = 8,
                tls: TlsFiles | None = None) -> DashboardServer | TlsDashboardServer:
    """A bound, not yet running server for ``app``: waitress, or cheroot over HTTPS with ``tls`` (port 0: free)."""
    if tls is not None:
        return _tls_server(app, host, port, threads, tls)
    # The body limit is Flask's too; waitress refuses a bigger body before buffering it.
    server = create_server(app.server, host=host, port=port, threads=threads, ident="facwatch",
                           max_request_body_size=MAX_REQUEST_BYTES)
    return DashboardServer(server)


def serve(app: dash.Dash, host: str, port: int, threads: int = 8, tls: TlsFiles | None = None) -> None:
    """Serve ``app`` on host:port until interrupted."""
    server = make_server(app, host, port, threads, tls)
    log.info("dashboard on %s", server.url)
    try:
        server.run()
    finally:
        server.close()
