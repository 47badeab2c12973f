"""Resolves owed across a restart (real SQLite file, fake clock, a recording notifier at the seam): an escalated
or paged alert that resolved, was acknowledged (escalations) or is gone before its resolve went out gets it
once after the restart; one still firing is neither resolved nor paged again."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from alerts.model import Alert, AlertState
from alerts.notifiers import NotificationBatch
from alerts.notify_config import NotifyConfig, NotifyFile
from alerts.outbox import Outbox
from alerts.pipeline import NotificationPipeline
from alerts.state import AlertStateStore
from collectors.model import Severity
from tests.unit.alerts.test_commands import NOTIFY, FakeClock

T0 = 1_800_000_000.0
class Recorder:
    """The notifier seam: keeps every batch it is asked to send."""

    def __init__(self, sent: list[NotificationBatch]):
        self.sent = sent

    async def send(self, batch: NotificationBatch) -> None:
        self.sent.append(batch)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "facwatch.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sent() -> list[NotificationBatch]:
    return []


def ups(device: str, state: AlertState = AlertState.FIRING, **kw) -> Alert:
    return Alert("ups_on_battery", {"site": "demo", "device": device, "room": "dh1", "device_class": "ups",
                                    "point": "output.source"}, Severity.WARNING, state, summary=f"{device} on battery",
                 active_since=T0, fired_at=T0, updated_at=T0, **kw)


def pipeline(db: Path, clock: FakeClock, sent: list[NotificationBatch]) -> NotificationPipeline:
    config = NotifyConfig(NotifyFile.model_validate(NOTIFY), {}, db.parent / "notify.yaml")
    recorder = Recorder(sent)
    return NotificationPipeline(config, Outbox(db), clock, notifiers={"pager": recorder, "boss": recorder})


def run_until(p: NotificationPipeline, clock: FakeClock, until: float) -> None:
    while clock.t < until:
        asyncio.run(p.step())
        clock.t += 1.0


def to_boss(sent: list[NotificationBatch]) -> list[tuple[str, list[str]]]:
    return [(b.status, sorted(f"{a.labels['device']}:{a.state.value}" for a in b.alerts))
            for b in sent if b.receiver == "boss"]


def escalate(db: Path, clock: FakeClock, sent: list, *alerts: Alert) -> AlertStateStore:
    """A first run: the alerts fire (stored as the engine stores them) and escalate to the boss; then it dies."""
    store = AlertStateStore(db)
    for alert in alerts:
        store.save(alert, AlertState.PENDING)
    first = pipeline(db, clock, sent)
    first.submit(list(alerts))
    run_until(first, clock, T0 + 302)
    assert to_boss(sent) == [("firing", sorted(f"{a.labels['device']}:firing" for a in alerts))]
    return store


def test_an_alert_resolved_before_its_resolve_went_out_gets_it_after_the_restart(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"))
    store.save(ups("ups-a", AlertState.RESOLVED, resolved_at=T0 + 303), AlertState.FIRING)  # then the process died
    clock.t = T0 + 900
    second = pipeline(db, clock, sent)
    assert second.resume([], store.get) == 2  # the boss's resolve and the pager's
    run_until(second, clock, T0 + 1000)
    assert to_boss(sent) == [("firing", ["ups-a:firing"]), ("resolved", ["ups-a:resolved"])]
    assert [b.status for b in sent if b.receiver == "pager"] == ["firing", "resolved"]
    assert Outbox(db).escalations() == {}  # the dashboard no longer shows it escalated
    third = pipeline(db, clock, sent)  # and once means once
    assert third.resume([], store.get) == 0
    run_until(third, clock, T0 + 1100)
    assert len(to_boss(sent)) == 2


def test_an_alert_that_is_gone_gets_its_resolve_from_what_was_sent(db, clock, sent):
    escalate(db, clock, sent, ups("ups-a"))
    clock.t = T0 + 900
    second = pipeline(db, clock, sent)
    second.resume([], lambda fp: None)  # its rule was removed: nothing in the store describes it
    run_until(second, clock, T0 + 1000)
    (resolve,) = [b for b in sent if b.receiver == "boss" and b.status == "resolved"]
    (alert,) = resolve.alerts
    assert alert.labels["device"] == "ups-a" and alert.resolved_at == T0 + 900
    assert alert.annotations["escalation"].startswith("ended: the alert is no longer evaluated")


def test_a_firing_alert_no_longer_evaluated_is_gone_too(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"))
    second = pipeline(db, clock, sent)
    second.resume([], store.get)  # firing in the store, but the engine did not submit it (no rule any more)
    run_until(second, clock, T0 + 400)
    assert to_boss(sent)[-1] == ("resolved", ["ups-a:resolved"])


def test_an_alert_acknowledged_while_down_ends_its_escalation(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"))
    acked = store.acknowledge(ups("ups-a").fingerprint, "alice", "generator on its way", T0 + 600)
    clock.t = T0 + 900
    second = pipeline(db, clock, sent)
    second.resume([acked], store.get)  # the engine re-submits it: still firing, now acknowledged
    run_until(second, clock, T0 + 2000)
    assert to_boss(sent) == [("firing", ["ups-a:firing"]), ("resolved", ["ups-a:resolved"])]
    assert [b for b in sent if b.receiver == "boss"][-1].alerts[0].annotations["escalation"] == (
        "ended: acknowledged by alice")


def test_an_alert_still_firing_stays_escalated_without_a_second_page(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"), ups("ups-b"))
    store.save(ups("ups-b", AlertState.RESOLVED, resolved_at=T0 + 320), AlertState.FIRING)
    clock.t = T0 + 900
    second = pipeline(db, clock, sent)
    second.resume([ups("ups-a")], store.get)
    run_until(second, clock, T0 + 3000)  # within the repeat interval
    assert to_boss(sent) == [("firing", ["ups-a:firing", "ups-b:firing"]),
                             ("firing", ["ups-a:firing", "ups-b:resolved"])]  # ups-b's resolve, ups-a as before
    assert set(Outbox(db).escalations()) == {ups("ups-a").fingerprint}
    pages = [(b.status, b.alerts[0].labels["device"]) for b in sent if b.receiver == "pager"]
    assert pages == [("firing", "ups-a"), ("firing", "ups-b"), ("resolved", "ups-b")]  # ups-a not paged again


def test_nothing_is_sent_when_every_escalated_alert_still_fires(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"))
    second = pipeline(db, clock, sent)
    assert second.resume([ups("ups-a")], store.get) == 0
    run_until(second, clock, T0 + 3000)
    assert len(to_boss(sent)) == 1


def test_an_alert_in_a_new_episode_gets_the_resolve_of_the_old_one(db, clock, sent):
    store = escalate(db, clock, sent, ups("ups-a"))
    pending = replace(ups("ups-a", AlertState.PENDING), fired_at=None, active_since=T0 + 800, updated_at=T0 + 800)
    store.save(pending, AlertState.RESOLVED)
    second = pipeline(db, clock, sent)
    second.resume([], store.get)
    run_until(second, clock, T0 + 400)
    (alert,) = [b for b in sent if b.receiver == "boss"][-1].alerts
    assert alert.state is AlertState.RESOLVED and alert.annotations["escalation"] == "ended: the alert cleared"


def test_a_resolve_owed_to_the_pager_is_sent_and_a_refire_pages_at_once(db, clock, sent):
    store = AlertStateStore(db)
    store.save(ups("ups-a"), AlertState.PENDING)
    first = pipeline(db, clock, sent)
    first.submit([ups("ups-a")])
    run_until(first, clock, T0 + 71)  # paged at T0 + 10, the group flushed again at T0 + 70
    resolved = ups("ups-a", AlertState.RESOLVED, resolved_at=T0 + 71)
    store.save(resolved, AlertState.FIRING)
    first.submit([resolved])  # waits for the group's next flush at T0 + 130: the process dies first
    run_until(first, clock, T0 + 80)
    assert [b.status for b in sent if b.receiver == "pager"] == ["firing"]
    second = pipeline(db, clock, sent)
    second.resume([], store.get)
    run_until(second, clock, T0 + 85)
    assert [b.status for b in sent if b.receiver == "pager"] == ["firing", "resolved"]
    again = replace(ups("ups-a"), fired_at=T0 + 200)
    store.save(again, AlertState.PENDING)
    second.submit([again])
    run_until(second, clock, T0 + 215)  # after group_wait (10 s), not after the hour's repeat interval
    assert [b.status for b in sent if b.receiver == "pager"] == ["firing", "resolved", "firing"]


def test_the_heartbeat_is_left_alone(db, clock, sent):
    doc = {**NOTIFY, "watchdog": {"receiver": "boss", "interval_minutes": 1}}
    config = NotifyConfig(NotifyFile.model_validate(doc), {}, db.parent / "notify.yaml")
    notifiers = {"pager": Recorder(sent), "boss": Recorder(sent)}
    first = NotificationPipeline(config, Outbox(db), clock, notifiers=notifiers)
    run_until(first, clock, T0 + 5)
    second = NotificationPipeline(config, Outbox(db), clock, notifiers=notifiers)
    assert second.resume([], lambda fp: None) == 0
    run_until(second, clock, T0 + 10)
    assert [(b.group_key, b.status) for b in sent] == [("watchdog", "firing")]
