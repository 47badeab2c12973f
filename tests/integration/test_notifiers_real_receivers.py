"""Notifiers against REAL receivers on loopback: aiosmtpd (STARTTLS, verified), an HTTP webhook, Alertmanager."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alerts.model import Alert, AlertState
from alerts.notifiers import DeliveryError, NotificationBatch
from alerts.notifiers.alertmanager import AlertmanagerNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.webhook import SIGNATURE_HEADER, WebhookNotifier
from alerts.outbox import Deliverer, Outbox
from collectors.model import Severity
from config.secret import Secret
from tests.peers import PeerProcess, require, wait_for_tcp

pytestmark = pytest.mark.integration

SMTP_PORT, WEBHOOK_PORT, AM_PORT = 29025, 29080, 29093
KEY = "webhook-canary-key-0123456789"
PASSWORD = "smtp-canary-password-9876"
WINDOW = 5.0  # seconds a notification may take to arrive on loopback


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - before:
        time.sleep(0.05)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


def firing_batch(receiver: str, resolved: bool = False) -> NotificationBatch:
    now = time.time()
    alert = Alert("ups_on_battery", {"device": "dh1-ups-a", "site": "s1", "room": "dh1", "device_class": "ups",
                                     "point": "ups.status"}, Severity.CRITICAL,
                  AlertState.RESOLVED if resolved else AlertState.FIRING, value=1.0, summary="UPS A on battery",
                  annotations={"runbook": "https://runbooks.example/ups"}, fired_at=now - 60,
                  resolved_at=now if resolved else None)
    return NotificationBatch(receiver, "route:site=s1", [alert], "resolved" if resolved else "firing",
                             {"site": "s1"})


# --- e-mail: aiosmtpd with STARTTLS, the client verifying a throwaway CA -------------------------------------

def make_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed CA-flagged certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class MailSink:
    """Keeps what arrives; require_starttls and auth_required make the server refuse anything in clear."""

    def __init__(self):
        self.received: list[tuple[float, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((time.monotonic(), envelope.content.decode(errors="replace")))
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = make_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = MailSink()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"facwatch" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_required=True)
    controller.start()
    yield sink, cert
    controller.stop()


async def test_email_arrives_over_verified_starttls_with_login(smtp_server, caplog):
    sink, cert = smtp_server
    notifier = EmailNotifier("127.0.0.1", SMTP_PORT, "facwatch@example.org", ["oncall@example.org"],
                             username="facwatch", password=Secret(PASSWORD), ca_file=str(cert))
    started = time.monotonic()
    await notifier.send(firing_batch("mail"))
    arrived, text = sink.received[0]
    print(f"\nemail latency {1000 * (arrived - started):.1f} ms")
    assert arrived - started < WINDOW
    assert "UPS A on battery" in text and "runbook: https://runbooks.example/ups" in text
    assert PASSWORD not in caplog.text and PASSWORD not in repr(notifier)


async def test_email_to_a_server_with_an_untrusted_certificate_fails_retryably(smtp_server, tmp_path):
    (tmp_path / "other").mkdir()
    other_ca, _ = make_cert(tmp_path / "other")  # a different CA: verification must fail, never fall back
    notifier = EmailNotifier("127.0.0.1", SMTP_PORT, "facwatch@example.org", ["oncall@example.org"],
                             username="facwatch", password=Secret(PASSWORD), ca_file=str(other_ca))
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(firing_batch("mail"))
    assert caught.value.retryable and "SSLCertVerificationError" in caught.value.reason
    assert smtp_server[0].received == []


async def test_email_wrong_password_is_not_retried(smtp_server):
    _, cert = smtp_server
    notifier = EmailNotifier("127.0.0.1", SMTP_PORT, "facwatch@example.org", ["oncall@example.org"],
                             username="facwatch", password=Secret("wrong-canary"), ca_file=str(cert))
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(firing_batch("mail"))
    assert not caught.value.retryable and "wrong-canary" not in caught.value.reason


async def test_email_refuses_a_relay_without_starttls_unless_insecure():
    from aiosmtpd.controller import Controller

    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT + 1)  # no tls_context: clear text only
    controller.start()
    try:
        strict = EmailNotifier("127.0.0.1", SMTP_PORT + 1, "facwatch@example.org", ["oncall@example.org"])
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            await strict.send(firing_batch("mail"))
        assert sink.received == []
        lax = EmailNotifier("127.0.0.1", SMTP_PORT + 1, "facwatch@example.org", ["oncall@example.org"],
                            insecure=True)
        await lax.send(firing_batch("mail"))
        assert len(sink.received) == 1
    finally:
        controller.stop()


# --- webhook: http.server in a thread, verifying the HMAC --------------------------------------------------

class WebhookSink:
    """A webhook receiver whose answers are scripted: a list of statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.received: list[tuple[float, dict]] = []
        self.rejected = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
                status = sink.statuses.pop(0) if sink.statuses else 200
                if not hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), expected):
                    status, sink.rejected = 401, sink.rejected + 1
                elif status == 200:
                    sink.received.append((time.monotonic(), json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.handler = Handler
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), self.handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


@pytest.fixture
def webhook_sink():
    sinks: list[WebhookSink] = []

    def make(statuses: list[int] | None = None) -> WebhookSink:
        sink = WebhookSink(statuses)
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


URL = f"http://127.0.0.1:{WEBHOOK_PORT}/facwatch"


async def test_webhook_arrives_signed_with_alertmanager_shape(webhook_sink):
    sink = webhook_sink()
    started = time.monotonic()
    await WebhookNotifier(URL, Secret(KEY)).send(firing_batch("noc_webhook"))
    arrived, body = sink.received[0]
    print(f"\nwebhook latency {1000 * (arrived - started):.1f} ms")
    assert arrived - started < WINDOW and sink.rejected == 0
    assert body["status"] == "firing" and body["groupLabels"] == {"site": "s1"}
    assert body["alerts"][0]["labels"]["alertname"] == "ups_on_battery"
    assert body["alerts"][0]["annotations"]["summary"] == "UPS A on battery"


async def test_webhook_with_wrong_key_is_refused_and_not_retried(webhook_sink):
    sink = webhook_sink()
    with pytest.raises(DeliveryError) as caught:
        await WebhookNotifier(URL, Secret("not-the-key")).send(firing_batch("noc_webhook"))
    assert not caught.value.retryable and sink.rejected == 1


async def test_webhook_503_then_refused_then_recovered_is_delivered_once(webhook_sink, tmp_path, caplog):
    sink = webhook_sink([503] * 10_000)  # 503 until the server is stopped
    outbox = Outbox(tmp_path / "facwatch.db")
    log_sent: list[NotificationBatch] = []

    class Log:
        async def send(self, batch):
            log_sent.append(batch)

    deliverer = Deliverer(outbox, {"noc_webhook": WebhookNotifier(URL, Secret(KEY), timeout=2), "ops_log": Log()},
                          initial_backoff=0.05, max_backoff=0.2, failing_after=0.5,
                          meta_receivers=("noc_webhook", "ops_log"))
    outbox.enqueue(firing_batch("noc_webhook"), time.time())
    recovered_at = await _outage(deliverer, sink)
    arrived = sink.received[0][0]
    print(f"\nwebhook delivered {1000 * (arrived - recovered_at):.0f} ms after recovery; attempts "
          f"{[(round(t % 100, 2), r) for t, name, r in deliverer.attempts if name == 'noc_webhook']}")
    assert len(sink.received) == 1 and arrived - recovered_at < 1.0  # within one max_backoff cycle (+ slack)
    assert any(r.endswith("HTTP 503") for _, _, r in deliverer.attempts)
    assert any(r.endswith("ConnectionRefusedError") for _, _, r in deliverer.attempts)
    assert [b.status for b in log_sent] == ["firing", "resolved"]  # the meta-alert, on the other receiver
    assert KEY not in caplog.text and all(KEY not in (r["last_error"] or "") for r in outbox.rows())


async def _outage(deliverer: Deliverer, sink: WebhookSink) -> float:
    """Drive delivery through 503s, then a stopped server, then recovery; returns when it came back."""
    for _ in range(20):
        await deliverer.deliver_due(time.time())
        await asyncio.sleep(0.05)
    sink.stop()  # now the connection is refused
    for _ in range(15):
        await deliverer.deliver_due(time.time())
        await asyncio.sleep(0.05)
    assert sink.received == []
    sink.statuses.clear()
    sink.start()
    recovered = time.monotonic()
    for _ in range(40):
        await deliverer.deliver_due(time.time())
        await asyncio.sleep(0.05)
    return recovered


async def test_webhook_400_is_dead_lettered_not_retried(webhook_sink, tmp_path):
    webhook_sink([400])
    outbox = Outbox(tmp_path / "facwatch.db")
    deliverer = Deliverer(outbox, {"noc_webhook": WebhookNotifier(URL, Secret(KEY))}, initial_backoff=0.01)
    outbox.enqueue(firing_batch("noc_webhook"), time.time())
    for _ in range(5):
        await deliverer.deliver_due(time.time())
        await asyncio.sleep(0.02)
    assert [(r["state"], r["attempts"]) for r in outbox.rows()] == [("dead", 1)]
    assert outbox.rows()[0]["last_error"].endswith("HTTP 400")


# --- Alertmanager: Debian's prometheus-alertmanager --------------------------------------------------------

@pytest.fixture
def alertmanager(tmp_path):
    binary = require("prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    peer = PeerProcess([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{AM_PORT}", "--cluster.listen-address="],
                       tmp_path / "alertmanager.log")
    try:
        wait_for_tcp(AM_PORT, timeout=20)
        yield f"http://127.0.0.1:{AM_PORT}"
    finally:
        peer.stop()


def _am_alerts(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as response:
        return json.loads(response.read())


async def test_alertmanager_shows_the_pushed_alert_and_its_resolve(alertmanager):
    notifier = AlertmanagerNotifier(alertmanager)
    started = time.monotonic()
    await notifier.send(firing_batch("am"))
    alerts: list[dict] = []
    while time.monotonic() - started < WINDOW and not alerts:
        alerts = [a for a in _am_alerts(alertmanager) if a["labels"].get("alertname") == "ups_on_battery"]
        await asyncio.sleep(0.02)
    print(f"\nalertmanager latency {1000 * (time.monotonic() - started):.1f} ms")
    assert alerts and alerts[0]["labels"]["device"] == "dh1-ups-a" and alerts[0]["status"]["state"] == "active"
    assert alerts[0]["annotations"]["summary"] == "UPS A on battery"
    await notifier.send(firing_batch("am", resolved=True))
    assert not [a for a in _am_alerts(alertmanager) if a["labels"].get("alertname") == "ups_on_battery"]
