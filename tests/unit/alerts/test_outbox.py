"""Outbox durability and delivery on a fake clock: restarts, SIGKILL, retries, backoff, dead letters, meta-alerts."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from alerts.model import Alert, AlertState
from alerts.notifiers import DeliveryError, NotificationBatch
from alerts.outbox import Deliverer, LogEntry, Outbox
from alerts.watchdog import Watchdog
from collectors.model import Severity

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0


class FakeNotifier:
    """Records batches; ``script(now)`` may raise DeliveryError to act out an outage."""

    def __init__(self, script=None):
        self.script = script
        self.sent: list[tuple[float, NotificationBatch]] = []
        self.now = T0

    async def send(self, batch: NotificationBatch) -> None:
        if self.script is not None:
            self.script(self.now)
        self.sent.append((self.now, batch))


def batch(receiver: str = "webhook", key: str = "g1") -> NotificationBatch:
    alert = Alert("ups_on_battery", {"device": "dh1-ups-a", "site": "s1"}, Severity.CRITICAL, AlertState.FIRING,
                  value=1.0, summary="UPS A on battery", fired_at=T0)
    return NotificationBatch(receiver, key, [alert], "firing", {"site": "s1"})


async def drive(deliverer: Deliverer, notifiers: list[FakeNotifier], start: float, end: float, step: float = 1.0):
    now = start
    while now <= end:
        for n in notifiers:
            n.now = now
        await deliverer.deliver_due(now)
        now += step


async def test_enqueued_batch_survives_a_crash_and_is_delivered_once(tmp_path):
    db = tmp_path / "facwatch.db"
    Outbox(db).enqueue(batch(), T0)  # the object is dropped without close: the row must be on disk already
    notifier = FakeNotifier()
    outbox = Outbox(db)
    await Deliverer(outbox, {"webhook": notifier}).deliver_due(T0 + 1)
    again = FakeNotifier()
    await Deliverer(Outbox(db), {"webhook": again}).deliver_due(T0 + 2)  # a second restart
    assert len(notifier.sent) == 1 and again.sent == []


async def test_sigkilled_process_loses_no_enqueued_notification(tmp_path):
    db = tmp_path / "facwatch.db"
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from alerts.outbox import Outbox, LogEntry
        from tests.unit.alerts.test_outbox import batch
        outbox = Outbox({str(db)!r})
        outbox.enqueue(batch(), {T0}, LogEntry(frozenset({{"f"}}), frozenset(), {T0}))
        print("enqueued", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"enqueued"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    outbox = Outbox(db)
    assert [r["state"] for r in outbox.rows()] == ["pending"]
    assert outbox.last_notified("webhook", "g1") == LogEntry(frozenset({"f"}), frozenset(), T0)
    notifier = FakeNotifier()
    await Deliverer(outbox, {"webhook": notifier}).deliver_due(T0 + 1)
    assert len(notifier.sent) == 1 and [r["state"] for r in outbox.rows()] == ["delivered"]


async def test_receiver_down_10_minutes_is_retried_with_backoff_and_meta_alert_goes_elsewhere(tmp_path):
    def outage(now: float) -> None:
        if now < T0 + 300:
            raise DeliveryError("127.0.0.1: HTTP 503", retryable=True)
        if now < T0 + 600:
            raise DeliveryError("127.0.0.1: ConnectionRefusedError", retryable=True)

    outbox = Outbox(tmp_path / "facwatch.db")
    webhook, log = FakeNotifier(outage), FakeNotifier()
    deliverer = Deliverer(outbox, {"webhook": webhook, "ops_log": log}, initial_backoff=2, max_backoff=60,
                          failing_after=300, meta_receivers=("webhook", "ops_log"))
    outbox.enqueue(batch(), T0)
    await drive(deliverer, [webhook, log], T0, T0 + 700)
    tries = [t - T0 for t, r, _ in deliverer.attempts if r == "webhook"]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[:6] == [2, 4, 8, 16, 32, 60] and set(gaps[6:-1]) == {60}  # doubling, capped
    assert len(webhook.sent) == 1 and webhook.sent[0][0] - (T0 + 600) <= 60  # within one retry cycle of recovery
    meta = [(t - T0, b.alerts[0].rule, b.status) for t, b in log.sent]
    assert meta[0] == (300, "notification_failing", "firing")  # raised after 5 min, on the other receiver
    assert meta[1][2] == "resolved"


async def test_4xx_is_dead_lettered_with_reason_and_not_retried(tmp_path):
    def refuse(now: float) -> None:
        raise DeliveryError("127.0.0.1: HTTP 400", retryable=False)

    outbox = Outbox(tmp_path / "facwatch.db")
    webhook = FakeNotifier(refuse)
    deliverer = Deliverer(outbox, {"webhook": webhook})
    outbox.enqueue(batch(), T0)
    await drive(deliverer, [webhook], T0, T0 + 600)
    assert len(deliverer.attempts) == 1
    assert [(r["state"], r["attempts"], r["last_error"]) for r in outbox.rows()] == [("dead", 1, "127.0.0.1: HTTP 400")]


async def test_retry_after_longer_than_backoff_is_honoured(tmp_path):
    def busy(now: float) -> None:
        if now < T0 + 1:
            raise DeliveryError("127.0.0.1: HTTP 429", retryable=True, retry_after=120)

    outbox = Outbox(tmp_path / "facwatch.db")
    webhook = FakeNotifier(busy)
    deliverer = Deliverer(outbox, {"webhook": webhook})
    outbox.enqueue(batch(), T0)
    await drive(deliverer, [webhook], T0, T0 + 200)
    assert [t - T0 for t, _ in webhook.sent] == [120]


async def test_unknown_receiver_is_dead_lettered(tmp_path):
    outbox = Outbox(tmp_path / "facwatch.db")
    outbox.enqueue(batch("gone"), T0)
    await Deliverer(outbox, {}).deliver_due(T0)
    assert outbox.rows()[0]["state"] == "dead"


def test_watchdog_sends_every_interval_and_survives_restart(tmp_path):
    db = tmp_path / "facwatch.db"
    dog = Watchdog(Outbox(db), "deadman", interval=120, started=T0)
    sent = [t for t in range(0, 600, 10) if dog.tick(T0 + t)]
    assert sent == [0, 120, 240, 360, 480]
    restarted = Watchdog(Outbox(db), "deadman", interval=120, started=T0 + 590)
    assert not restarted.tick(T0 + 590) and restarted.tick(T0 + 600)


def test_escalations_keep_the_first_escalation_time_and_drop_ended_alerts(tmp_path):
    db = tmp_path / "facwatch.db"
    outbox = Outbox(db)
    key = "escalation/0:boss"
    outbox.enqueue(batch("boss", key), T0, LogEntry(frozenset({"fp-a"}), frozenset(), T0))
    outbox.enqueue(batch("boss", key), T0 + 60, LogEntry(frozenset({"fp-a", "fp-b"}), frozenset(), T0 + 60))
    outbox.enqueue(batch("pager", "0:pager:site=s1"), T0, LogEntry(frozenset({"fp-c"}), frozenset(), T0))
    assert Outbox(db).escalations() == {"fp-a": ("boss", T0), "fp-b": ("boss", T0 + 60)}  # a reader elsewhere
    outbox.enqueue(batch("boss", key), T0 + 90, LogEntry(frozenset({"fp-b"}), frozenset({"fp-a"}), T0 + 90))
    assert Outbox(db).escalations() == {"fp-b": ("boss", T0 + 60)}
