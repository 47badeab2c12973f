from datetime import UTC

import pytest
from dash import no_update

from alerts.commands import ActionStore, Command, SilenceRecord
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from collectors.model import Severity
from dashboard.alert_views import (
    action_rows,
    active_rows,
    describe_command,
    history_entries,
    history_rows,
    silence_matchers,
    silence_rows,
    silence_window,
)
from dashboard.data import DashboardSources, TickCache
from dashboard.pages import PageContext
from dashboard.pages.alerts import READ_ONLY, AlertsPage
from tests.unit.dashboard.conftest import T0, FakeStore

UPS, A01 = "dh1-ups-a", "dh1-rack-a01-inlet"


def alert(rule, device, state=AlertState.FIRING, severity=Severity.WARNING, **kwargs):
    return Alert(rule, {"device": device, "point": "p"}, severity, state, fired_at=kwargs.pop("fired_at", T0 - 60),
                 **kwargs)


def silence(id_, matchers, starts=T0 - 10, ends=T0 + 100, expired=None):
    return SilenceRecord(id_, "silence", matchers, None, "reason", "op", starts, ends, starts, expired)


def test_active_rows_are_firing_first_then_worst_then_oldest(demo_site):
    alerts = [alert("a", A01, fired_at=T0 - 10), alert("b", UPS, severity=Severity.CRITICAL),
              alert("c", A01, AlertState.PENDING, severity=Severity.CRITICAL),
              alert("d", A01, AlertState.RESOLVED), alert("e", A01, fired_at=T0 - 100)]
    rows = active_rows(demo_site, alerts, [], {}, T0)
    assert [r.rule for r in rows] == ["b", "e", "a", "c"]
    assert rows[0].where == "UPS A"


def test_status_says_acknowledged_silenced_or_escalated(demo_site):
    acked = alert("a", A01, acknowledged_by="j.smith", ack_note="on it")
    muted, escalated = alert("b", UPS), alert("c", UPS, severity=Severity.CRITICAL)
    rows = {r.rule: r for r in active_rows(
        demo_site, [acked, muted, escalated],
        [silence(7, {"device": UPS, "alertname": "b"}), silence(8, {"device": UPS}, ends=T0 - 1)],
        {escalated.fingerprint: ("duty_manager", T0 - 5)}, T0)}
    assert rows["a"].status == "acknowledged" and rows["a"].ack_note == "on it"
    assert rows["b"].status == "silenced" and rows["b"].silenced_by == (7,)  # #8 has ended
    assert rows["c"].status == "escalated" and rows["c"].escalated == ("duty_manager", T0 - 5)


def test_history_is_newest_first_across_alerts(demo_site):
    a, b = alert("a", A01), alert("b", UPS)
    log = {a.fingerprint: [(None, "pending", T0 - 30), ("pending", "firing", T0 - 20)],
           b.fingerprint: [(None, "firing", T0 - 25)]}
    rows = history_rows(demo_site, history_entries({a.fingerprint: a, b.fingerprint: b}, log.__getitem__))
    assert [(r.rule, r.where, r.from_state, r.to_state) for r in rows] == [
        ("a", "Rack A01 inlet", "pending", "firing"), ("b", "UPS A", "—", "firing"),
        ("a", "Rack A01 inlet", "—", "pending")]


def test_history_reads_labels_as_the_transition_table_stores_them(demo_site):
    (row,) = history_rows(demo_site, [("r", '{"device": "dh1-ups-a"}', None, "firing", "warning", T0, "drill")])
    assert (row.where, row.scenario) == ("UPS A", "drill")


def test_silence_rows_say_whether_each_is_in_force():
    rows = silence_rows([silence(1, {"device": UPS}), silence(2, {"device": UPS}, starts=T0 + 10),
                         silence(3, {"device": UPS}, expired=T0 - 1)], T0)
    assert [(r.id, r.state) for r in rows] == [(1, "active"), (2, "scheduled"), (3, "ended")]
    assert rows[2].ends_at == T0 - 1


def test_silence_form_needs_a_known_device_or_a_rule_and_an_offered_duration(demo_site):
    assert silence_matchers(demo_site, UPS, None) == {"device": UPS}
    assert silence_matchers(demo_site, None, "ups_on_battery") == {"alertname": "ups_on_battery"}
    with pytest.raises(ValueError, match="choose a device or a rule"):
        silence_matchers(demo_site, None, "")
    with pytest.raises(ValueError, match="unknown device"):
        silence_matchers(demo_site, "<script>", None)
    assert silence_window(None, 3600, T0) == (T0, T0 + 3600)
    assert silence_window(86_400, 3600, T0) == (T0 + 86_400, T0 + 90_000)  # booked ahead
    with pytest.raises(ValueError, match="expiry is required"):
        silence_window(0, None, T0)
    with pytest.raises(ValueError, match="expiry is required"):
        silence_window(0, 99, T0)
    with pytest.raises(ValueError, match="when the silence starts"):
        silence_window(17, 3600, T0)


def test_commands_are_described_in_words():
    a = alert("ups_on_battery", UPS)
    ack = Command(1, "ack", {"fingerprint": a.fingerprint, "note": "on it"}, "op", "10.0.0.7", T0)
    assert describe_command(ack, {a.fingerprint: a}) == f"acknowledge ups_on_battery on {UPS}: on it"
    mute = Command(2, "silence", {"kind": "maintenance", "matchers": {"device": UPS}, "reason": "battery swap"},
                   "op", "cli", T0, T0 + 1, "applied", "maintenance #1 created")
    assert describe_command(mute) == f"maintenance device={UPS}: battery swap"
    rows = action_rows([mute, Command(3, "expire_silence", {"silence_id": 1}, "op", "cli", T0)])
    assert [(r.what, r.outcome) for r in rows] == [(f"maintenance device={UPS}: battery swap", "applied"),
                                                   ("expire silence #1", "pending")]


# --- the page's actions, against real stores in a temporary file -----------------------------------

@pytest.fixture
def page(demo_site, clock, tmp_path):
    db = tmp_path / "f.db"
    state, actions = AlertStateStore(db), ActionStore(db, clock=clock)
    firing = alert("ups_on_battery", UPS, updated_at=T0 - 60)
    state.save(firing, None)
    ctx = PageContext(DashboardSources(demo_site, FakeStore(), clock=clock, alerts=state, actions=actions), UTC,
                      TickCache(2, clock))
    yield AlertsPage(ctx), actions, firing
    state.close()
    actions.close()


def test_acknowledge_queues_a_command_with_author_note_and_source(page):
    alerts_page, actions, firing = page
    message = alerts_page.acknowledge(1, "j.smith", firing.fingerprint, "<b>on it</b>")
    assert "acknowledgement #1 requested" in message.children
    (command,) = actions.pending()
    assert (command.kind, command.author, command.source) == ("ack", "j.smith", "unknown")
    assert command.payload == {"fingerprint": firing.fingerprint, "note": "<b>on it</b>"}


def test_a_refused_request_shows_the_stores_message(page):
    alerts_page, actions, firing = page
    assert alerts_page.acknowledge(1, "  ", firing.fingerprint, "").children.startswith("enter your name")
    text = alerts_page.silence(1, "op", UPS, None, "silence", 3600, "").children
    assert text == "not sent: reason is required"
    assert alerts_page.acknowledge(None, "op", firing.fingerprint, "") is no_update
    assert actions.pending() == []


def test_silence_and_expire_queue_commands(page):
    alerts_page, actions, _ = page
    assert "maintenance window #1 requested from" in alerts_page.silence(1, "op", UPS, None, "maintenance", 3600,
                                                                          "battery swap", 3600).children
    assert "expiry of silence #4" in alerts_page.expire_silence(4, "op").children
    assert [c.kind for c in actions.pending()] == ["silence", "expire_silence"]
    assert actions.pending()[0].payload["kind"] == "maintenance"
    assert actions.pending()[0].payload["starts_at"] == T0 + 3600


def test_refresh_lists_the_alert_and_offers_it_for_acknowledgement(page):
    alerts_page, _, firing = page
    active, options, _silences, _actions, history, _note, _sent = alerts_page.refresh(1)
    assert options == [{"label": "WARNING · ups_on_battery · UPS A", "value": firing.fingerprint}]
    assert "ups_on_battery" in str(active) and "ups_on_battery" in str(history)


def test_read_only_dashboard_refuses_actions(demo_site, clock):
    ctx = PageContext(DashboardSources(demo_site, FakeStore(), clock=clock), UTC, TickCache(2, clock))
    alerts_page = AlertsPage(ctx)
    assert alerts_page.acknowledge(1, "op", "fp", "").children == READ_ONLY
    assert alerts_page.silence(1, "op", UPS, None, "silence", 3600, "r").children == READ_ONLY
    assert "no alert state" in str(alerts_page.refresh(1)[0])


def test_refresh_reads_once_per_tick_and_resends_nothing_unchanged(page):
    alerts_page, _, _ = page
    *_, sent = alerts_page.refresh(1)
    options = alerts_page.refresh(1)[1]
    calls = []
    original = alerts_page.ctx.sources.alerts.load
    alerts_page.ctx.sources.alerts.load = lambda: calls.append(1) or original()
    assert alerts_page.refresh(2, options)[1] is no_update  # same tick, same choices: nothing re-read or re-sent
    assert calls == []
    outputs = alerts_page.refresh(3, options, sent)
    assert all(out is no_update for out in outputs[:-1])
    assert outputs[-1] == sent
