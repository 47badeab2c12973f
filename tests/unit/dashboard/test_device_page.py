from datetime import UTC

import pytest

from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Event, Quality, Reading, Severity
from dashboard.data import DashboardSources, TickCache
from dashboard.device_views import (
    event_rows,
    find_device,
    health_view,
    missing_rows,
    point_rows,
    unreachable_periods,
)
from dashboard.pages import PageContext
from dashboard.pages.device import DevicePage
from storage.base import Bucket
from tests.unit.dashboard.conftest import T0, FakeStore

UPS = "dh1-ups-a"


@pytest.fixture
def ups(demo_site):
    return demo_site.device(UPS)


def readings(now=T0):
    return [Reading(UPS, "ups.load", now - 1, 45), Reading(UPS, "output.source", now - 1, 5),
            Reading(UPS, "input.voltage", now - 1, None, Quality.MISSING),
            Reading(UPS, "ups.model", now - 1, None, text="<script>x</script>"),
            Reading(UPS, REACHABLE_POINT, now - 1, 1), Reading(UPS, POLL_DURATION_POINT, now - 1, 0.123)]


def test_every_profile_point_and_the_health_points_are_listed(demo_site, ups):
    rows = {r.point: r for r in point_rows(demo_site, ups, readings(), T0)}
    assert set(rows) >= {"ups.load", "output.source", "battery.charge", REACHABLE_POINT, POLL_DURATION_POINT}
    assert (rows["ups.load"].value, rows["ups.load"].unit, rows["ups.load"].quality) == ("45", "%", "good")
    assert (rows["output.source"].value, rows["output.source"].severity) == ("battery", "warning")
    assert (rows["input.voltage"].value, rows["input.voltage"].quality) == ("—", "missing")
    assert rows["battery.charge"].quality == "no data"
    assert rows["ups.model"].value == "<script>x</script>"  # shown as text by the page
    assert rows["ups.load"].age == "1 s ago"


def test_old_readings_are_marked_stale(demo_site, ups):
    rows = {r.point: r for r in point_rows(demo_site, ups, readings(T0 - 600), T0)}
    assert rows["ups.load"].quality == "stale"


def test_health_says_reachable_duration_and_age(demo_site, ups):
    health = health_view(demo_site, ups, readings(), T0)
    assert (health.reachable, health.state, health.poll_duration, health.last_poll) == (
        "reachable", "ok", "0.12 s", "1 s ago")
    assert health.poll_interval == "every 2 s"
    assert health_view(demo_site, ups, [], T0).reachable == "no data"
    down = [Reading(UPS, REACHABLE_POINT, T0 - 1, 0)]
    assert health_view(demo_site, ups, down, T0).state == "critical"


def test_unreachable_buckets_merge_into_periods_newest_first():
    buckets = [Bucket(T0, 1, 1, 1, 5, 0), Bucket(T0 + 900, 0, 1, 0.5, 5, 0), Bucket(T0 + 1800, 0, 0, 0, 5, 0),
               Bucket(T0 + 4500, 0, 1, 0.8, 5, 0), Bucket(T0 + 5400, None, None, None, 0, 5)]
    periods = unreachable_periods(buckets, 900)
    assert [(p.start, p.end) for p in periods] == [(T0 + 4500, T0 + 5400), (T0 + 900, T0 + 2700)]


def test_missing_readings_are_listed_by_interval_and_point():
    rows = missing_rows({"ups.load": [Bucket(T0, 1, 1, 1, 3, 2), Bucket(T0 + 900, 1, 1, 1, 5, 0)],
                         "input.voltage": [Bucket(T0 + 900, None, None, None, 0, 5)]})
    assert [(r.start, r.point, r.missing, r.good) for r in rows] == [(T0 + 900, "input.voltage", 5, 0),
                                                                     (T0, "ups.load", 2, 3)]


def test_events_are_newest_first_with_a_short_payload():
    events = [Event(T0, UPS, "trap", "upsTrapOnBattery", Severity.WARNING, {"oid": "1.3.6", "big": "x" * 500}),
              Event(T0 + 5, UPS, "trap", "upsTrapTestCompleted", Severity.INFO)]
    rows = event_rows(events)
    assert [r.name for r in rows] == ["upsTrapTestCompleted", "upsTrapOnBattery"]
    assert len(rows[1].detail) == 200 and rows[1].detail.endswith("…")


def test_only_configured_devices_are_found(demo_site):
    assert find_device(demo_site, UPS).id == UPS
    assert find_device(demo_site, "../etc") is None
    assert find_device(demo_site, ["x"]) is None


def test_page_renders_a_device_and_survives_a_failing_store(demo_site, clock):
    store = FakeStore(readings=readings())
    store.events = lambda start, end, device=None, limit=1000: []
    page = DevicePage(PageContext(DashboardSources(demo_site, store, clock=clock), UTC, TickCache(2, clock)))
    body = str(page.refresh(1, UPS))
    assert "UPS A" in body and "battery" in body and "answered every poll" in body
    assert "choose a configured device" in str(page.refresh(1, "nope"))
    store.fail = OSError("disk")
    clock.now += 2
    assert "store unavailable" in str(page.refresh(2, UPS))


def test_numeric_points_link_to_their_trend(demo_site, clock):
    store = FakeStore(readings=readings())
    store.events = lambda start, end, device=None, limit=1000: []
    page = DevicePage(PageContext(DashboardSources(demo_site, store, clock=clock), UTC, TickCache(2, clock)))
    body = str(page.refresh(1, UPS))
    assert "href='/trends?series=dh1-ups-a%7Cups.load'" in body
    assert "series=dh1-ups-a%7Coutput.source" not in body  # a state is no line
