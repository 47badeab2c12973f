from dataclasses import replace
from datetime import UTC

from alerts.commands import Heartbeat
from alerts.model import Alert, AlertState
from collectors.model import Severity
from dashboard.status import HEARTBEAT_TIMEOUT_S, alert_rows, banner, new_critical, since_text, wall_view
from tests.unit.dashboard.plant_readings import healthy_readings
from tests.unit.dashboard.snapshots import T0, snapshot

# T0 is 2023-11-14 22:13:20 UTC


def beats(age_s: float) -> dict[str, Heartbeat]:
    return {name: Heartbeat(name, T0 - age_s, 1, "host") for name in ("collector", "alerting")}


def alert(rule, severity, *, state=AlertState.FIRING, fired_ago=60.0, by=None, device="ups-a", scenario=None):
    return Alert(rule, {"device": device}, severity, state, summary=f"{rule} summary", active_since=T0 - fired_ago,
                 fired_at=T0 - fired_ago if state == AlertState.FIRING else None, acknowledged_by=by,
                 scenario=scenario)


def texts(messages):
    return [m.text for m in messages]


def test_no_banner_when_data_and_components_are_fresh(plant_site, default_rules):
    assert banner(snapshot(plant_site, default_rules, heartbeats=beats(5))) == ()


def test_stale_data_says_since_when(plant_site, default_rules):
    old = healthy_readings(plant_site, T0 - 600)
    messages = banner(snapshot(plant_site, default_rules, old))
    assert texts(messages) == ["DATA STALE since 22:03"] and messages[0].kind == "stale"


def test_stopped_components_are_down_since_their_last_heartbeat(plant_site, default_rules):
    messages = banner(snapshot(plant_site, default_rules, heartbeats=beats(HEARTBEAT_TIMEOUT_S + 300)))
    assert texts(messages) == ["COLLECTOR DOWN since 22:07", "ALERT ENGINE DOWN since 22:07"]
    assert {m.kind for m in messages} == {"down"}


def test_a_component_that_never_beat_is_not_reported_down(plant_site, default_rules):
    assert banner(snapshot(plant_site, default_rules, heartbeats={})) == ()


def test_since_shows_the_date_when_not_today():
    assert since_text(T0 - 2 * 86_400, T0, UTC) == "2023-11-12 22:13"


def test_store_and_alert_state_failures_and_no_data(plant_site, default_rules):
    failed = replace(snapshot(plant_site, default_rules), readings=None, alerts_error=True)
    assert texts(banner(failed))[0].startswith("STORE UNAVAILABLE")
    assert any(t.startswith("ALERT STATE UNAVAILABLE") for t in texts(banner(failed)))
    assert texts(banner(snapshot(plant_site, default_rules, []))) == ["NO DATA YET — nothing has been collected"]


def test_alert_rows_firing_first_worst_first_with_age_owner_and_device_label(plant_site, default_rules):
    alerts = (alert("w_old", Severity.WARNING, fired_ago=3600), alert("c_new", Severity.CRITICAL, fired_ago=30),
              alert("pending", Severity.CRITICAL, state=AlertState.PENDING),
              alert("c_old", Severity.CRITICAL, fired_ago=600, by="j.smith"),
              alert("gone", Severity.CRITICAL, state=AlertState.RESOLVED),
              alert("drill", Severity.WARNING, fired_ago=5, scenario="mains_failure"))
    rows = alert_rows(snapshot(plant_site, default_rules, alerts=alerts))
    assert [r.summary.split()[0] for r in rows] == ["c_new", "c_old", "drill", "w_old", "pending"]
    first, second = rows[:2]
    assert (first.age_text, first.owner, first.acknowledged) == ("30 s", "unowned", False)
    assert first.device == "UPS A (ring A)"
    assert (second.age_text, second.owner, second.acknowledged) == ("10 min", "j.smith", True)
    assert rows[2].drill and rows[4].state == "pending"


def test_new_critical_are_firing_critical_and_not_acknowledged(plant_site, default_rules):
    alerts = (alert("a", Severity.CRITICAL), alert("b", Severity.CRITICAL, by="x"), alert("c", Severity.WARNING),
              alert("d", Severity.CRITICAL, state=AlertState.PENDING))
    found = new_critical(snapshot(plant_site, default_rules, alerts=alerts))
    assert found == [(alerts[0].fingerprint, "a summary")]


def test_wall_lists_firing_alerts_capped_and_counts_pending_ones(plant_site, default_rules):
    alerts = tuple(alert(f"r{i}", Severity.WARNING, device=f"d{i}") for i in range(20))
    pending = tuple(alert(f"p{i}", Severity.WARNING, state=AlertState.PENDING) for i in range(5))
    wall = wall_view(snapshot(plant_site, default_rules, alerts=alerts + pending))
    assert len(wall.alerts) == 12 and wall.alerts_hidden == 8 and wall.alerts_available
    assert wall.pending == 5 and all(row.state == "firing" for row in wall.alerts)
    assert not wall_view(snapshot(plant_site, default_rules)).alerts_available
