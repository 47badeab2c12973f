"""Real notification receivers on loopback for the integration tests: webhook, SMTP, Alertmanager.

Shared by tests/integration/test_notifiers_real_receivers.py (one notifier at a time) and
tests/integration/test_alerting_acceptance.py (the whole runtime). Every receiver records the wall-clock
time (``time.time()``) at which something arrived, so tests can compare it with times facwatch logs.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import hashlib
import hmac
import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.notifiers.webhook import SIGNATURE_HEADER
from tests.peers import PeerProcess, require, wait_for_tcp
from tests.tlscerts import make_pki

# --- webhook: http.server in a thread, verifying the HMAC ------------------------------------------------

class WebhookReceiver:
    """A real HTTP webhook endpoint that verifies the HMAC signature.

    It answers the scripted ``statuses`` first, then ``status`` (200 unless told otherwise); a bad
    signature is answered 401. ``stop()`` closes the socket (connections refused), ``start()`` listens again.
    """

    def __init__(self, key: str, port: int, statuses: list[int] | None = None):
        self.key = key
        self.port = port
        self.status = 200
        self.statuses = list(statuses or [])
        self.received: list[tuple[float, dict]] = []   # (wall time, body) of every accepted POST
        self.refused: list[tuple[float, int]] = []     # (wall time, status) of every POST answered non-2xx
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def reset(self, status: int) -> None:
        """Forget what arrived so far; answer ``status`` from now on."""
        self.status = status
        self.statuses.clear()
        self.received.clear()
        self.refused.clear()

    def start(self) -> None:
        """Listen (again): from now on connections are accepted."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the socket: from now on connections are refused."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def _answer(self, body: bytes, signature: str) -> int:
        """Record one POST and return the status to answer."""
        expected = "sha256=" + hmac.new(self.key.encode(), body, hashlib.sha256).hexdigest()
        status = self.statuses.pop(0) if self.statuses else self.status
        if not hmac.compare_digest(signature, expected):
            status, self.bad_signatures = 401, self.bad_signatures + 1
        if status < 300:
            self.received.append((time.time(), json.loads(body)))
        else:
            self.refused.append((time.time(), status))
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(receiver._answer(body, self.headers.get(SIGNATURE_HEADER, "")))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler


# --- e-mail: aiosmtpd with STARTTLS and a login -------------------------------------------------------------

class MailReceiver:
    """aiosmtpd's handler: keeps (wall time, parsed message) of every mail accepted."""

    def __init__(self) -> None:
        self.received: list[tuple[float, email.message.EmailMessage]] = []

    def reset(self) -> None:
        """Forget what arrived so far."""
        self.received.clear()

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((time.time(), message))  # type: ignore[arg-type]
        return "250 OK"

    def subjects(self) -> list[str]:
        """The Subject of every mail, in arrival order."""
        return [str(m["Subject"]) for _, m in self.received]


@contextlib.contextmanager
def smtp_receiver(directory: Path, port: int, password: str) -> Iterator[tuple[MailReceiver, Path]]:
    """aiosmtpd that insists on STARTTLS and login ``facwatch``/``password``; yields it and the CA to trust."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    pki = make_pki(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    sink = MailReceiver()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"facwatch" and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_required=True)
    controller.start()
    try:
        yield sink, pki.ca_file
    finally:
        controller.stop()


# --- Alertmanager: Debian's prometheus-alertmanager ---------------------------------------------------------

@contextlib.contextmanager
def alertmanager_peer(directory: Path, port: int) -> Iterator[str]:
    """A real Alertmanager on 127.0.0.1:``port`` routing to nowhere; yields its base URL."""
    binary = require("prometheus-alertmanager")
    config = directory / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    peer = PeerProcess([binary, f"--config.file={config}", f"--storage.path={directory / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                       directory / "alertmanager.log")
    try:
        wait_for_tcp(port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        peer.stop()


def am_alerts(base: str, alertname: str) -> list[dict]:
    """Alertmanager's current (active) alerts of one name."""
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as response:
        return [a for a in json.loads(response.read()) if a["labels"].get("alertname") == alertname]


def am_received_total(base: str) -> float:
    """alertmanager_alerts_received_total summed over status and API version: alerts it was POSTed."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("alertmanager_alerts_received_total"))
