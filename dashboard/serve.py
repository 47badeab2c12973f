"""Serve the dashboard with waitress (a production WSGI server, never Flask's debug server)."""

from __future__ import annotations

import logging
import threading

import dash
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from dashboard.app import MAX_REQUEST_BYTES

log = logging.getLogger(__name__)


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
