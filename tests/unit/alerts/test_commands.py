"""Operator commands: request validation, the applier's outcomes, stored silences in the pipeline (real SQLite
file, restarts), escalation resolves and heartbeats — all on a fake clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerts.commands import MAX_SILENCE_S, ActionStore, CommandApplier
from alerts.engine import AlertEngine
from alerts.model import Alert, AlertState
from alerts.notify_config import NotifyConfig, NotifyFile
from alerts.outbox import Outbox
from alerts.pipeline import NotificationPipeline
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import Reading, Severity
from config.load import load_site
from facwatch.runtime import Alerting, ReadingWriter
from tests.conftest import SKELETON_CONFIG

T0 = 1_800_000_000.0
UPS = "dh1-ups-a"

NOTIFY = {
    "receivers": {"pager": {"type": "log"}, "boss": {"type": "log"}},
    "route": {"receiver": "pager", "group_by": ["site", "device"], "group_wait": 10, "group_interval": 60,
              "repeat_interval": 3600},
    "escalations": [{"match": {}, "after_minutes": 5, "receiver": "boss"}],
    "delivery": {"meta_receivers": ["pager"]},
}


class FakeClock:
    def __init__(self, now: float = T0):
        self.t = now

    def __call__(self) -> float:
        return self.t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "facwatch.db"


def alert(device: str = UPS, severity: Severity = Severity.WARNING, state: AlertState = AlertState.FIRING,
          **kw) -> Alert:
    return Alert("ups_on_battery", {"site": "demo", "device": device, "room": "dh1", "device_class": "ups",
                                    "point": "output.source"}, severity, state, summary=f"{device} on battery",
                 fired_at=T0, resolved_at=T0 + 1 if state == AlertState.RESOLVED else None, **kw)


def pipeline(db: Path, clock: FakeClock, doc: dict | None = None) -> NotificationPipeline:
    config = NotifyConfig(NotifyFile.model_validate(doc or NOTIFY), {}, db.parent / "notify.yaml")
    return NotificationPipeline(config, Outbox(db), clock, actions=ActionStore(db, clock))


def run_until(p: NotificationPipeline, clock: FakeClock, until: float) -> None:
    while clock.t < until:
        p.flush_due(clock.t)
        clock.t += 1.0


def sent(p: NotificationPipeline, receiver: str) -> list[tuple[str, list[str]]]:
    """(status, devices) of every batch the receiver got, oldest first."""
    rows = p.outbox.conn.execute("SELECT batch FROM notify_outbox WHERE receiver=? ORDER BY id", (receiver,))
    batches = [json.loads(r[0]) for r in rows]
    return [(b["status"], [f"{a['labels']['device']}:{a['state']}" for a in b["alerts"]]) for b in batches]


def engine_with_ups_on_battery(db: Path, clock: FakeClock) -> AlertEngine:
    engine = AlertEngine(load_site(SKELETON_CONFIG), load_rules(), AlertStateStore(db), clock)
    engine.observe([Reading(UPS, "output.source", clock.t, 5.0, text="battery")])
    engine.tick(clock.t)
    return engine


def firing(engine: AlertEngine, rule: str = "ups_on_battery") -> Alert:
    return next(a for a in engine.alerts() if a.rule == rule and a.state == AlertState.FIRING)


# -- requests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.request_silence({UPS: "x"}, T0 + 60, " ", "alice"), "reason is required"),
    (lambda s: s.request_silence({"device": UPS}, T0 + MAX_SILENCE_S + 1, "swap", "alice"), "at most 31 days"),
    (lambda s: s.request_silence({}, T0 + 60, "swap", "alice"), "at least one label matcher"),
    (lambda s: s.request_silence({"device": UPS}, T0 - 1, "swap", "alice"), "end after it starts"),
    (lambda s: s.request_silence({"device": UPS}, T0 + 60, "swap", ""), "author is required"),
    (lambda s: s.request_ack("abc", "alice", "x" * 2001), "note is longer than 2000"),
    (lambda s: s.request_silence({"device": UPS}, T0 + 60, "x" * 2001, "alice"), "reason is longer than 2000"),
    (lambda s: s.request_ack("", "alice"), "fingerprint is required"),
    (lambda s: s.request_silence({"device": UPS}, T0 + 60, "swap", "alice", severities=("CRIT",)), "severities"),
])
def test_invalid_requests_are_refused_before_they_are_stored(db, clock, call, message):
    store = ActionStore(db, clock)
    with pytest.raises(ValueError, match=message):
        call(store)
    assert store.history() == []


def test_a_valid_request_is_pending_with_author_and_source(db, clock):
    store = ActionStore(db, clock)
    command_id = store.request_silence({"device": UPS}, T0 + 3600, "battery swap", "alice", source="10.0.0.7")
    [pending] = store.pending()
    assert (pending.id, pending.kind, pending.author, pending.source) == (command_id, "silence", "alice", "10.0.0.7")


# -- the applier ------------------------------------------------------------------------------------------

def test_ack_is_applied_and_recorded_with_who_and_note(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    actions = ActionStore(db, clock)
    fp = firing(engine).fingerprint
    actions.request_ack(fp, "alice", "on my way")
    clock.t += 5
    [done] = CommandApplier(actions, engine).apply_pending()
    assert (done.outcome, done.detail) == ("applied", f"acknowledged ups_on_battery on {UPS}")
    acked = AlertStateStore(db).get(fp)
    assert (acked.acknowledged_by, acked.ack_note, acked.acknowledged_at) == ("alice", "on my way", T0 + 5)
    assert actions.pending() == [] and actions.history()[0].outcome == "applied"


def test_ack_of_an_unknown_fingerprint_is_refused_with_a_clear_detail(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    actions = ActionStore(db, clock)
    actions.request_ack("0123456789abcdef", "alice")
    [done] = CommandApplier(actions, engine).apply_pending()
    assert (done.outcome, done.detail) == ("refused", "no alert with fingerprint 0123456789abcdef")


def test_ack_of_a_resolved_alert_is_refused(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    fp = firing(engine).fingerprint
    clock.t += 10
    engine.observe([Reading(UPS, "output.source", clock.t, 3.0, text="normal")])
    engine.tick(clock.t)
    actions = ActionStore(db, clock)
    actions.request_ack(fp, "alice")
    [done] = CommandApplier(actions, engine).apply_pending()
    assert done.outcome == "refused" and "is resolved, not pending or firing" in done.detail


def test_a_crashing_apply_is_refused_with_the_error_and_the_queue_goes_on(db, clock, monkeypatch):
    engine = engine_with_ups_on_battery(db, clock)
    actions = ActionStore(db, clock)
    fp = firing(engine).fingerprint

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(engine, "acknowledge", broken)
    actions.request_ack(fp, "alice")
    actions.request_silence({"device": UPS}, T0 + 600, "battery swap", "bob")
    outcomes = [(c.kind, c.outcome, c.detail) for c in CommandApplier(actions, engine).apply_pending()]
    assert outcomes == [("ack", "refused", "internal error, not applied: RuntimeError: disk on fire"),
                        ("silence", "applied", f"silence #1 created for device={UPS}")]
    assert actions.pending() == []


def test_a_silence_command_applied_twice_makes_one_silence(db, clock):
    actions = ActionStore(db, clock)
    actions.request_silence({"device": UPS}, T0 + 600, "battery swap", "bob")
    [command] = actions.pending()
    assert actions.add_silence(command) == actions.add_silence(command)  # e.g. finish() failed, then a retry
    assert len(actions.silences()) == 1


def test_unknown_command_kind_is_refused(db, clock):
    actions = ActionStore(db, clock)
    actions.conn.execute("INSERT INTO operator_command (kind, payload, author, source, requested_at) "
                         "VALUES ('reboot', '{}', 'mallory', 'cli', ?)", (T0,))
    [done] = CommandApplier(actions, engine_with_ups_on_battery(db, clock)).apply_pending()
    assert (done.outcome, done.detail) == ("refused", "unknown command kind 'reboot'")


def test_expire_ends_a_silence_and_a_second_expire_is_refused(db, clock):
    actions = ActionStore(db, clock)
    applier = CommandApplier(actions, engine_with_ups_on_battery(db, clock))
    actions.request_silence({"device": UPS}, T0 + 600, "battery swap", "bob", kind="maintenance")
    applier.apply_pending()
    [silence] = actions.silences()
    actions.request_expire(silence.id, "carol")
    actions.request_expire(silence.id, "carol")
    actions.request_expire(99, "carol")
    assert [(c.outcome, c.detail) for c in applier.apply_pending()] == [
        ("applied", f"silence #{silence.id} expired"),
        ("refused", f"no active silence #{silence.id} (unknown, or already ended)"),
        ("refused", "no active silence #99 (unknown, or already ended)")]
    assert actions.silences() == [] and actions.silences(include_ended=True)[0].expired_by == "carol"


# -- stored silences in the pipeline ----------------------------------------------------------------------

def silence_via_applier(db: Path, clock: FakeClock, p: NotificationPipeline | None, matchers: dict, **kw) -> int:
    actions = ActionStore(db, clock)
    actions.request_silence(matchers, kw.pop("ends_at", T0 + 600), kw.pop("reason", "battery swap"), "bob", **kw)
    engine = AlertEngine(load_site(SKELETON_CONFIG), [], AlertStateStore(db), clock)
    [done] = CommandApplier(actions, engine, pipeline=p).apply_pending()
    assert done.outcome == "applied", done.detail
    return actions.silences()[0].id


def test_stored_silence_mutes_survives_a_restart_and_stops_muting_when_it_ends(db, clock):
    first = pipeline(db, clock)
    silence_via_applier(db, clock, first, {"device": UPS}, ends_at=T0 + 600)
    first.submit([alert(UPS), alert("dh1-ups-b")])
    run_until(first, clock, T0 + 100)
    assert sent(first, "pager") == [("firing", ["dh1-ups-b:firing"])]
    del first  # a restart: the silence is read back from the file

    second = pipeline(db, clock)
    second.submit([alert(UPS)])
    run_until(second, clock, T0 + 599)
    assert [s for s, _ in sent(second, "pager")] == ["firing"]
    run_until(second, clock, T0 + 700)  # ended: the next flush pages
    assert sent(second, "pager")[-1] == ("firing", [f"{UPS}:firing"])


def test_silence_severities_filter_mutes_only_those_severities(db, clock):
    p = pipeline(db, clock)
    silence_via_applier(db, clock, p, {"site": "demo"}, severities=("warning",))
    p.submit([alert(UPS, Severity.WARNING), alert("dh1-ups-b", Severity.CRITICAL)])
    run_until(p, clock, T0 + 100)
    assert sent(p, "pager") == [("firing", ["dh1-ups-b:firing"])]


def test_maintenance_mutes_like_a_silence_and_is_labelled_as_maintenance(db, clock):
    p = pipeline(db, clock)
    silence_id = silence_via_applier(db, clock, p, {"device": UPS}, kind="maintenance", reason="UPS service")
    p.submit([alert(UPS)])
    run_until(p, clock, T0 + 100)
    muted = p.muted_by(alert(UPS))
    assert sent(p, "pager") == []
    assert (muted.kind, muted.describe()) == ("maintenance", f"maintenance #{silence_id} by bob: UPS service")


def test_expire_via_the_applier_unmutes_at_the_next_flush(db, clock):
    p = pipeline(db, clock)
    silence_id = silence_via_applier(db, clock, p, {"device": UPS})
    p.submit([alert(UPS)])
    run_until(p, clock, T0 + 30)
    actions = ActionStore(db, clock)
    actions.request_expire(silence_id, "carol")
    CommandApplier(actions, AlertEngine(load_site(SKELETON_CONFIG), [], AlertStateStore(db), clock),
                   pipeline=p).apply_pending()
    run_until(p, clock, T0 + 80)  # group interval 60 s after the first flush at 10 s
    assert sent(p, "pager") == [("firing", [f"{UPS}:firing"])]


def test_silence_written_by_another_process_is_picked_up_within_seconds(db, clock):
    p = pipeline(db, clock)
    assert p.muted_by(alert(UPS)) is None  # stored silences read now (none yet), then cached
    clock.t += 1
    silence_via_applier(db, clock, None, {"device": UPS})  # no pipeline to tell: it must re-read by itself
    assert p.muted_by(alert(UPS)) is None
    clock.t += 5
    assert p.muted_by(alert(UPS)).reason == "battery swap"


def test_resolve_of_an_alert_never_notified_because_silenced_is_not_sent(db, clock):
    p = pipeline(db, clock)
    silence_via_applier(db, clock, p, {"device": UPS})
    p.submit([alert(UPS), alert("dh1-ups-b")])
    run_until(p, clock, T0 + 30)
    p.submit([alert(UPS, state=AlertState.RESOLVED)])
    run_until(p, clock, T0 + 300)
    assert sent(p, "pager") == [("firing", ["dh1-ups-b:firing"])]


def test_resolve_of_an_alert_paged_before_the_silence_is_sent(db, clock):
    p = pipeline(db, clock)
    p.submit([alert(UPS)])
    run_until(p, clock, T0 + 30)
    silence_via_applier(db, clock, p, {"device": UPS})
    p.submit([alert(UPS, state=AlertState.RESOLVED)])
    run_until(p, clock, T0 + 300)
    assert sent(p, "pager") == [("firing", [f"{UPS}:firing"]), ("resolved", [f"{UPS}:resolved"])]


# -- escalation -------------------------------------------------------------------------------------------

def test_escalated_alert_that_resolves_sends_the_resolve_to_the_escalation_receiver(db, clock):
    p = pipeline(db, clock)
    p.submit([alert(UPS)])
    run_until(p, clock, T0 + 301)
    assert sent(p, "boss") == [("firing", [f"{UPS}:firing"])]
    assert set(Outbox(db).escalations()) == {alert(UPS).fingerprint}  # another connection, as the dashboard
    p.submit([alert(UPS, state=AlertState.RESOLVED)])
    run_until(p, clock, T0 + 400)
    assert sent(p, "boss") == [("firing", [f"{UPS}:firing"]), ("resolved", [f"{UPS}:resolved"])]
    assert Outbox(db).escalations() == {}


def test_ack_through_the_applier_ends_the_escalation_with_a_resolve(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    p = pipeline(db, clock)
    p.submit(engine.alerts())
    run_until(p, clock, T0 + 301)
    fp = firing(engine).fingerprint
    assert Outbox(db).escalations() == {fp: ("boss", T0 + 300)}
    actions = ActionStore(db, clock)
    actions.request_ack(fp, "alice", "on it")
    CommandApplier(actions, engine, p.submit, p).apply_pending()
    run_until(p, clock, T0 + 900)
    statuses = [s for s, _ in sent(p, "boss")]
    assert statuses == ["firing", "resolved"]  # no re-escalation after the ack either
    assert Outbox(db).escalations() == {}


def test_acknowledged_alert_is_never_escalated(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    p = pipeline(db, clock)
    p.submit(engine.alerts())
    run_until(p, clock, T0 + 60)
    actions = ActionStore(db, clock)
    actions.request_ack(firing(engine).fingerprint, "alice")
    CommandApplier(actions, engine, p.submit, p).apply_pending()
    run_until(p, clock, T0 + 900)
    assert sent(p, "boss") == []


# -- heartbeats and the runtime's wiring ------------------------------------------------------------------

class MemoryStore:
    def __init__(self):
        self.batches = []

    def write(self, batch) -> None:
        self.batches.append(list(batch))

    def write_events(self, events) -> None:
        pass

    def apply_retention(self, now: float) -> int:
        return 0


def test_reading_writer_beats_collector_after_written_batches_at_most_once_per_interval(db):
    beats = []
    writer = ReadingWriter(MemoryStore(), flush_s=0.01, heartbeat=lambda: beats.append(1), beat_every_s=3600)
    writer.put([Reading(UPS, "output.source", T0, 3.0)])
    writer.close()
    assert beats == [1]
    quiet = []
    ReadingWriter(MemoryStore(), flush_s=0.01, heartbeat=lambda: quiet.append(1)).close()
    assert quiet == []  # nothing written: no sign of life


def test_alerting_applies_commands_and_beats_alerting_on_its_tick(db):
    alerting = Alerting(load_site(SKELETON_CONFIG), db)
    dashboard = ActionStore(db)  # the dashboard's own connection
    alerting.observe([Reading(UPS, "output.source", 1_000.0, 5.0, text="battery")])
    alerting.tick(1_000.0)
    fp = firing(alerting.engine).fingerprint
    dashboard.request_ack(fp, "alice", "on it", source="10.0.0.7")
    alerting.apply_commands()
    assert AlertStateStore(db).get(fp).acknowledged_by == "alice"
    assert dashboard.history()[0].outcome == "applied"
    assert dashboard.heartbeats()["alerting"].at == 1_000.0
    alerting.state.close()
    alerting.actions.close()


# -- audit, fail closed ---------------------------------------------------------------------------------------

class BrokenAudit:
    """An audit log whose disk is gone: every append fails."""

    def __init__(self):
        self.attempts = 0

    def append(self, *args, **kwargs):
        from evidence.auditlog import AuditWriteError

        self.attempts += 1
        raise AuditWriteError("audit record not stored: disk I/O error")

    def close(self) -> None:
        pass


def audit_log(db: Path, clock: FakeClock):
    from evidence.auditlog import AuditLog
    from evidence.keys import generate_key_file

    return AuditLog(db, generate_key_file(db.parent / "audit.key"), clock=clock)


def test_every_applied_command_is_audited_with_who_where_before_and_after(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    actions, audit = ActionStore(db, clock), audit_log(db, clock)
    fp = firing(engine).fingerprint
    applier = CommandApplier(actions, engine, audit=audit)
    actions.request_ack(fp, "alice", "on my way", source="10.0.0.7")
    actions.request_silence({"device": UPS}, T0 + 600, "battery swap", "bob", kind="maintenance", source="noc-3")
    applier.apply_pending()
    [silence] = actions.silences()
    actions.request_expire(silence.id, "carol", source="cli@ops")
    applier.apply_pending()
    entries = audit.entries()
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("alert.ack", "alice", "10.0.0.7"), ("maintenance", "bob", "noc-3"), ("maintenance", "carol", "cli@ops")]
    ack = json.loads(entries[0].details)
    assert ack["before"] == {"state": "firing", "acknowledged_by": None}
    assert ack["after"] == {"acknowledged_by": "alice", "note": "on my way"} and ack["command_id"] == 1
    assert json.loads(entries[1].details)["after"]["reason"] == "battery swap"
    expire = json.loads(entries[2].details)
    assert expire["before"]["expired_at"] is None and expire["after"]["expired_by"] == "carol"


def test_a_command_the_audit_log_cannot_record_is_refused_and_not_applied(db, clock):
    engine = engine_with_ups_on_battery(db, clock)
    actions = ActionStore(db, clock)
    fp = firing(engine).fingerprint
    actions.request_ack(fp, "alice")
    actions.request_silence({"device": UPS}, T0 + 600, "battery swap", "bob")
    done = CommandApplier(actions, engine, audit=BrokenAudit()).apply_pending()
    assert [(c.outcome, c.detail) for c in done] == [
        ("refused", "not applied: the audit log cannot record it (audit record not stored: disk I/O error)")] * 2
    assert AlertStateStore(db).get(fp).acknowledged_by is None
    assert actions.silences() == []


def test_a_refusal_found_before_anything_changes_is_not_audited(db, clock):
    actions, audit = ActionStore(db, clock), audit_log(db, clock)
    actions.request_expire(99, "carol")
    [done] = CommandApplier(actions, engine_with_ups_on_battery(db, clock), audit=audit).apply_pending()
    assert done.outcome == "refused" and audit.entries() == []


def test_alert_transitions_are_audited_from_the_runtime(db):
    alerting = Alerting(load_site(SKELETON_CONFIG), db)
    alerting.observe([Reading(UPS, "output.source", 1_000.0, 5.0, text="battery")])
    alerting.tick(1_000.0)
    transitions = [e for e in alerting.audit.entries() if e.action == "alert.transition"]
    assert transitions and transitions[-1].actor == "facwatch"
    last = json.loads(transitions[-1].details)
    assert last["after"]["state"] == "firing" and last["rule"] == "ups_on_battery"
    assert last["labels"]["device"] == UPS
    alerting.close()


def test_a_transition_the_audit_log_cannot_take_is_kept_retried_and_raises_a_meta_alert(db, tmp_path):
    notify = tmp_path / "notify.yaml"
    notify.write_text(json.dumps(NOTIFY))
    alerting = Alerting(load_site(SKELETON_CONFIG), db, notify)
    real, submitted = alerting.audit, []
    alerting.audit = BrokenAudit()
    original = alerting.pipeline.submit
    alerting.pipeline.submit = lambda alerts: (submitted.extend(alerts), original(alerts))
    alerting.observe([Reading(UPS, "output.source", 1_000.0, 5.0, text="battery")])
    alerting.tick(1_000.0)
    assert alerting.audit_failures >= 2 and alerting._backlog
    assert [(a.rule, a.state.value) for a in submitted if a.rule == "audit_log_failing"] == [
        ("audit_log_failing", "firing")]
    waiting = len(alerting._backlog)
    alerting.audit = real  # the disk is back
    alerting.tick(1_001.0)
    assert not alerting._backlog
    assert len([e for e in real.entries() if e.action == "alert.transition"]) >= waiting
    assert [a.state.value for a in submitted if a.rule == "audit_log_failing"] == ["firing", "resolved"]
    real.close()
    alerting.close()
