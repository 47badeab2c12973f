"""Notifiers against REAL receivers on loopback: aiosmtpd (STARTTLS, verified), an HTTP webhook, Alertmanager."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from alerts.model import Alert, AlertState
from alerts.notifiers import DeliveryError, NotificationBatch
from alerts.notifiers.alertmanager import AlertmanagerNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.outbox import Deliverer, Outbox
from collectors.model import Severity
from config.secret import Secret
from tests.receivers import MailReceiver, WebhookReceiver, alertmanager_peer, am_alerts, smtp_receiver
from tests.tlscerts import make_pki

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

@pytest.fixture
def smtp_server(tmp_path):
    with smtp_receiver(tmp_path / "smtp-tls", SMTP_PORT, PASSWORD) as (sink, cert):
        yield sink, cert


async def test_email_arrives_over_verified_starttls_with_login(smtp_server, caplog):
    sink, cert = smtp_server
    notifier = EmailNotifier("127.0.0.1", SMTP_PORT, "facwatch@example.org", ["oncall@example.org"],
                             username="facwatch", password=Secret(PASSWORD), ca_file=str(cert))
    started = time.time()
    await notifier.send(firing_batch("mail"))
    arrived, message = sink.received[0]
    text = message.as_string()
    print(f"\nemail latency {1000 * (arrived - started):.1f} ms")
    assert arrived - started < WINDOW
    assert "UPS A on battery" in text and "runbook: https://runbooks.example/ups" in text
    assert PASSWORD not in caplog.text and PASSWORD not in repr(notifier)


async def test_email_to_a_server_with_an_untrusted_certificate_fails_retryably(smtp_server, tmp_path):
    other_ca = make_pki(tmp_path / "other").ca_file  # a different CA: verification must fail, never fall back
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

    sink = MailReceiver()
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

@pytest.fixture
def webhook_sink():
    sinks: list[WebhookReceiver] = []

    def make(statuses: list[int] | None = None) -> WebhookReceiver:
        sink = WebhookReceiver(KEY, WEBHOOK_PORT, statuses)
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


URL = f"http://127.0.0.1:{WEBHOOK_PORT}/facwatch"


async def test_webhook_arrives_signed_with_alertmanager_shape(webhook_sink):
    sink = webhook_sink()
    started = time.time()
    await WebhookNotifier(URL, Secret(KEY)).send(firing_batch("noc_webhook"))
    arrived, body = sink.received[0]
    print(f"\nwebhook latency {1000 * (arrived - started):.1f} ms")
    assert arrived - started < WINDOW and sink.bad_signatures == 0
    assert body["status"] == "firing" and body["groupLabels"] == {"site": "s1"}
    assert body["alerts"][0]["labels"]["alertname"] == "ups_on_battery"
    assert body["alerts"][0]["annotations"]["summary"] == "UPS A on battery"


async def test_webhook_with_wrong_key_is_refused_and_not_retried(webhook_sink):
    sink = webhook_sink()
    with pytest.raises(DeliveryError) as caught:
        await WebhookNotifier(URL, Secret("not-the-key")).send(firing_batch("noc_webhook"))
    assert not caught.value.retryable and sink.bad_signatures == 1


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


async def _outage(deliverer: Deliverer, sink: WebhookReceiver) -> float:
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
    recovered = time.time()
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
    with alertmanager_peer(tmp_path, AM_PORT) as base:
        yield base


async def test_alertmanager_shows_the_pushed_alert_and_its_resolve(alertmanager):
    notifier = AlertmanagerNotifier(alertmanager)
    started = time.monotonic()
    await notifier.send(firing_batch("am"))
    alerts: list[dict] = []
    while time.monotonic() - started < WINDOW and not alerts:
        alerts = am_alerts(alertmanager, "ups_on_battery")
        await asyncio.sleep(0.02)
    print(f"\nalertmanager latency {1000 * (time.monotonic() - started):.1f} ms")
    assert alerts and alerts[0]["labels"]["device"] == "dh1-ups-a" and alerts[0]["status"]["state"] == "active"
    assert alerts[0]["annotations"]["summary"] == "UPS A on battery"
    await notifier.send(firing_batch("am", resolved=True))
    assert not am_alerts(alertmanager, "ups_on_battery")
