"""Notification pipeline on a fake clock: grouping, dedup, silences, maintenance, inhibition, escalation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alerts.model import Alert, AlertState
from alerts.notifiers import build_notifiers
from alerts.notify_config import Match, NotifyConfig, NotifyFile, load_notify_config
from alerts.outbox import Outbox
from alerts.pipeline import NotificationPipeline, Silence
from collectors.model import Severity
from config.yamlfile import ConfigError
from tests.unit.alerts.test_commands import FakeClock

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0

BASE = {
    "receivers": {"pager": {"type": "log"}, "ops_log": {"type": "log"}, "boss": {"type": "log"}},
    "route": {"receiver": "ops_log", "group_by": ["site"], "group_wait": 30, "group_interval": 300,
              "repeat_interval": 3600,
              "routes": [{"match": {"severity": ["critical"]}, "receiver": "pager", "continue": True},
                         {"match": {}, "receiver": "ops_log"}]},
    "inhibit": [{"source": {"labels": {"alertname": "mains_failure"}},
                 "target": {"labels": {"alertname": "ups_on_battery"}}, "equal": ["site"]}],
    "escalations": [{"match": {"severity": ["critical"]}, "after_minutes": 15, "receiver": "boss"}],
    "delivery": {"meta_receivers": ["ops_log"]},
}


def alert(rule: str, device: str, site: str = "s1", severity: Severity = Severity.CRITICAL,
          state: AlertState = AlertState.FIRING, fired_at: float = T0, **kw) -> Alert:
    return Alert(rule, {"device": device, "site": site, "room": "dh1", "device_class": "ups", "point": "x"},
                 severity, state, summary=f"{rule} on {device}", fired_at=fired_at,
                 resolved_at=T0 if state == AlertState.RESOLVED else None, **kw)


def make(tmp_path: Path, doc: dict | None = None, clock: FakeClock | None = None) -> NotificationPipeline:
    config = NotifyConfig(NotifyFile.model_validate(doc or BASE), {}, tmp_path / "notify.yaml")
    return NotificationPipeline(config, Outbox(tmp_path / "facwatch.db"), clock or FakeClock())


def sent(pipeline: NotificationPipeline, receiver: str | None = None) -> list[dict]:
    return [r for r in pipeline.outbox.rows() if receiver is None or r["receiver"] == receiver]


def batches(pipeline: NotificationPipeline, receiver: str) -> list:
    return [b for b in (row.batch for row in pipeline.outbox.due(float("inf"), 10_000)) if b.receiver == receiver]


def run_until(pipeline: NotificationPipeline, clock: FakeClock, until: float, step: float = 1.0) -> None:
    while clock.t < until:
        pipeline.flush_due(clock.t)
        clock.t += step


def test_storm_of_40_alerts_in_5_s_gives_one_notification_per_receiver(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    for i in range(40):
        clock.t = T0 + i * 0.125  # 40 alerts inside 5 s, as a mains failure makes them
        pipeline.submit([alert("pdu_input_low", f"dh1-pdu-{i:02d}")])
    run_until(pipeline, clock, T0 + 290)
    assert len(sent(pipeline, "pager")) == 1 and len(sent(pipeline, "ops_log")) == 1
    assert len(batches(pipeline, "pager")[0].alerts) == 40


def test_nothing_is_sent_before_group_wait(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(pipeline, clock, T0 + 29)
    assert sent(pipeline) == []
    run_until(pipeline, clock, T0 + 31)
    assert len(sent(pipeline, "pager")) == 1


def test_still_firing_group_is_not_resent_within_repeat_interval(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(pipeline, clock, T0 + 3600)
    assert len(sent(pipeline, "pager")) == 1
    run_until(pipeline, clock, T0 + 3600 + 330)
    assert len(sent(pipeline, "pager")) == 2  # repeat_interval passed: re-page at the next group_interval


def test_new_alert_in_group_is_sent_at_next_group_interval_not_before(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(pipeline, clock, T0 + 40)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-02")])
    run_until(pipeline, clock, T0 + 320)
    assert len(sent(pipeline, "pager")) == 1
    run_until(pipeline, clock, T0 + 340)
    assert len(sent(pipeline, "pager")) == 2
    assert len(batches(pipeline, "pager")[1].alerts) == 2


def test_resolve_is_sent_once_and_the_group_ends(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(pipeline, clock, T0 + 40)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01", state=AlertState.RESOLVED)])
    run_until(pipeline, clock, T0 + 2000)
    assert [b.status for b in batches(pipeline, "pager")] == ["firing", "resolved"]
    assert pipeline.groups == {}


def test_pending_alerts_are_not_notified(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01", state=AlertState.PENDING)])
    run_until(pipeline, clock, T0 + 100)
    assert sent(pipeline) == []


def test_silenced_alert_is_not_sent_and_resumes_after_expiry(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.add_silence(Silence(Match(labels={"device": "dh1-pdu-01"}), ends_at=T0 + 1000,
                                 reason="PDU swap, ticket 4711", author="alice"))
    pipeline.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(pipeline, clock, T0 + 999)
    assert sent(pipeline) == []
    run_until(pipeline, clock, T0 + 1000 + 301)  # resumes at the next group_interval after expiry
    assert len(sent(pipeline, "pager")) == 1


def test_silence_without_reason_is_refused():
    with pytest.raises(ValueError, match="reason"):
        Silence(Match(), ends_at=T0 + 60, reason=" ", author="alice")


def test_maintenance_window_from_config_mutes_until_it_ends(tmp_path):
    doc = {**BASE, "maintenance": [{"match": {"labels": {"site": "s1"}}, "starts_at": T0 - 10, "ends_at": T0 + 500,
                                    "reason": "annual UPS service"}]}
    clock = FakeClock()
    pipeline = make(tmp_path, doc, clock)
    pipeline.submit([alert("ups_on_battery", "dh1-ups-a"), alert("ups_on_battery", "dh2-ups-a", site="s2")])
    run_until(pipeline, clock, T0 + 400)
    assert [b.group_labels for b in batches(pipeline, "pager")] == [{"site": "s2"}]
    run_until(pipeline, clock, T0 + 700)
    assert len(batches(pipeline, "pager")) == 2


def test_mains_failure_inhibits_ups_on_battery_at_the_same_site_only(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("ups_on_battery", f"dh1-ups-{x}") for x in "abc"]
                    + [alert("ups_on_battery", "dh2-ups-a", site="s2")])
    clock.t = T0 + 20  # the source arrives after the targets but within group_wait
    pipeline.submit([alert("mains_failure", "s1-utility")])
    run_until(pipeline, clock, T0 + 100)
    rules = {a.rule for b in batches(pipeline, "pager") for a in b.alerts if a.labels["site"] == "s1"}
    assert rules == {"mains_failure"}
    assert any(a.labels["site"] == "s2" for b in batches(pipeline, "pager") for a in b.alerts)


def test_unacknowledged_critical_escalates_after_15_minutes(tmp_path):
    clock = FakeClock()
    pipeline = make(tmp_path, clock=clock)
    pipeline.submit([alert("mains_failure", "s1-utility"), alert("mains_failure", "s2-utility", site="s2",
                                                                  acknowledged_by="bob", acknowledged_at=T0 + 60)])
    run_until(pipeline, clock, T0 + 899)
    assert batches(pipeline, "boss") == []
    run_until(pipeline, clock, T0 + 1000)
    escalated = batches(pipeline, "boss")
    assert len(escalated) == 1 and [a.labels["site"] for a in escalated[0].alerts] == ["s1"]


def test_restart_does_not_repage_within_repeat_interval(tmp_path):
    clock = FakeClock()
    first = make(tmp_path, clock=clock)
    first.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(first, clock, T0 + 40)
    del first  # "killed": no close; the notification log is on disk
    second = make(tmp_path, clock=clock)
    second.submit([alert("pdu_input_low", "dh1-pdu-01")])
    run_until(second, clock, T0 + 3000)
    assert len(sent(second, "pager")) == 1


def test_shipped_notify_yaml_loads(monkeypatch):
    monkeypatch.setenv("FACWATCH_WEBHOOK_KEY", "demo-key")
    config = load_notify_config(ROOT / "config" / "notify.yaml")
    assert set(config.file.receivers) == {"ops_log", "noc_webhook"}
    assert "demo-key" not in repr(config)


@pytest.mark.parametrize(("text", "message"), [
    ("receivers: {w: {type: webhook, url: 'http://127.0.0.1/x', hmac_key: inline}}", "never written inline"),
    ("receivers: {w: {type: webhook, url: 'http://10.0.0.9/x', hmac_key: {env: K}}}", "clear text"),
    ("receivers: {m: {type: email, host: smtp, from: a@b, to: [c@d], username: u}}", "username and password"),
    ("receivers: {l: {type: log}}\nroute: {receiver: nope}", "no receiver named 'nope'"),
    ("receivers: {l: {type: log, colour: red}}", "unknown key"),
])
def test_bad_notify_config_is_refused_with_file_and_line(tmp_path, monkeypatch, text, message):
    monkeypatch.setenv("K", "k")
    root = "route: {receiver: l, group_by: [site], group_wait: 1, group_interval: 1, repeat_interval: 1}"
    body = text if "route:" in text else f"{text}\n{root}"
    if "route: {receiver: nope}" in body:
        body = body.replace("route: {receiver: nope}", root.replace("receiver: l", "receiver: nope"))
    path = tmp_path / "notify.yaml"
    path.write_text(body + "\ndelivery: {meta_receivers: [l]}\n")
    with pytest.raises(ConfigError) as caught:
        load_notify_config(path)
    assert message in str(caught.value) and "notify.yaml:" in str(caught.value)


class RecordingNotifier:
    def __init__(self):
        self.sent = []

    async def send(self, batch) -> None:
        self.sent.append(batch)


async def test_run_loop_delivers_grouped_batches_and_the_watchdog_heartbeat(tmp_path):
    doc = {**BASE, "watchdog": {"receiver": "boss", "interval_minutes": 2}}
    clock = FakeClock()
    notifiers = {name: RecordingNotifier() for name in ("pager", "ops_log", "boss")}
    config = NotifyConfig(NotifyFile.model_validate(doc), {}, tmp_path / "notify.yaml")
    pipeline = NotificationPipeline(config, Outbox(tmp_path / "facwatch.db"), clock, notifiers)
    pipeline.submit([alert("pdu_input_low", f"dh1-pdu-{i:02d}") for i in range(30)])
    task = asyncio.create_task(pipeline.run(tick=1.0))
    while clock.t < T0 + 300:
        await asyncio.sleep(0)
    task.cancel()
    assert [len(b.alerts) for b in notifiers["pager"].sent] == [30]
    assert [len(b.alerts) for b in notifiers["ops_log"].sent] == [30]
    assert [b.alerts[0].rule for b in notifiers["boss"].sent] == ["watchdog"] * 3  # at 0, 120 and 240 s


def test_shipped_config_builds_a_notifier_per_receiver(monkeypatch):
    monkeypatch.setenv("FACWATCH_WEBHOOK_KEY", "demo-key")
    notifiers = build_notifiers(load_notify_config(ROOT / "config" / "notify.yaml"))
    assert {name: type(n).__name__ for name, n in notifiers.items()} == {
        "ops_log": "LogNotifier", "noc_webhook": "WebhookNotifier"}
