from datetime import UTC

import pytest

from alerts.model import Alert, AlertState
from alerts.rules import Rule, load_rules
from collectors.model import Event, Reading, Severity
from dashboard.data import TickCache
from dashboard.pages import PageContext
from dashboard.pages.trends import TrendsPage
from dashboard.trend_data import (
    CSV_HEADER,
    MAX_SERIES,
    SeriesChoice,
    alert_marks,
    csv_text,
    default_series,
    envelope_lines,
    parse_range,
    parse_series,
    refresh_period,
    safe_name,
    scenario_periods,
    series_options,
)
from storage.base import Bucket
from tests.unit.dashboard.conftest import T0, FakeStore

UPS, A01 = "dh1-ups-a", "dh1-rack-a01-inlet"
TEMP = f"{A01}|ambient.temperature"


def choice(site, key):
    (parsed,) = parse_series(site, [key])
    return parsed


def test_series_options_cover_every_numeric_point_of_every_device(demo_site):
    values = [o.value for o in series_options(demo_site)]
    assert TEMP in values and f"{UPS}|ups.load" in values
    assert f"{UPS}|output.source" not in values  # a state is not a line


def test_parse_series_keeps_only_offered_series_in_order_without_duplicates(demo_site):
    chosen = parse_series(demo_site, [f"{UPS}|ups.load", "evil|x", "<script>|a", TEMP, TEMP, 42, f"{UPS}|nope"])
    assert [c.key for c in chosen] == [f"{UPS}|ups.load", TEMP]
    assert parse_series(demo_site, None) == []
    assert parse_series(demo_site, TEMP)[0].key == TEMP


def test_parse_series_caps_the_number_of_lines(demo_site):
    values = [o.value for o in series_options(demo_site)]
    assert len(values) > MAX_SERIES
    assert len(parse_series(demo_site, values)) == MAX_SERIES


def test_ranges_are_only_those_offered():
    assert parse_range(3600) == 3600
    assert parse_range(365 * 86_400) == 365 * 86_400
    assert parse_range(3601) is None
    assert parse_range(True) is None
    assert parse_range("3600") is None


def test_default_series_follows_the_device_query(demo_site):
    assert default_series(demo_site, A01) == [TEMP]
    assert default_series(demo_site, "unknown") == default_series(demo_site)


def test_long_ranges_recompute_less_often_but_at_least_every_five_minutes():
    assert refresh_period(3600, 2) == 6
    assert refresh_period(900, 2) == 2
    assert refresh_period(365 * 86_400, 2) == 300


def test_envelopes_come_from_the_loaded_rules(demo_site):
    lines = envelope_lines(load_rules(), demo_site, choice(demo_site, TEMP))
    by_level = {(line.severity, line.bound): line.value for line in lines if
                line.rule == "inlet_temperature_out_of_envelope"}
    assert by_level == {(Severity.WARNING, "above"): 23, (Severity.WARNING, "below"): 19,
                        (Severity.CRITICAL, "above"): 32, (Severity.CRITICAL, "below"): 15}
    # derived-value rules (dew point, rate of change) are not levels of the raw point
    assert all(line.rule != "inlet_temperature_rate_15m" for line in lines)


def test_envelope_follows_a_changed_rule(demo_site):
    rule = Rule(name="load_high", kind="threshold", match={"point": "ups.load"}, warning={"above": 70})
    lines = envelope_lines([rule], demo_site, choice(demo_site, f"{UPS}|ups.load"))
    assert [(line.bound, line.value) for line in lines] == [("above", 70)]
    assert envelope_lines([rule], demo_site, choice(demo_site, TEMP)) == []


def alert(device, rule="inlet_temperature_out_of_envelope", severity=Severity.WARNING):
    return Alert(rule, {"device": device, "point": "ambient.temperature"}, severity, AlertState.FIRING)


def test_alert_marks_are_firing_and_resolved_transitions_of_shown_devices_in_the_window():
    mine, other = alert(A01), alert(UPS, "ups_on_battery")
    log = {mine.fingerprint: [(None, "pending", T0 - 50), ("pending", "firing", T0 - 40),
                              ("firing", "resolved", T0 - 10), ("resolved", "firing", T0 + 999)],
           other.fingerprint: [("pending", "firing", T0 - 30)]}
    marks = alert_marks({mine.fingerprint: mine, other.fingerprint: other}, log.__getitem__, {A01}, T0 - 100, T0)
    assert [(m.at, m.state, m.device) for m in marks] == [(T0 - 40, "firing", A01), (T0 - 10, "resolved", A01)]


def scenario_event(ts, state, name="mains_failure"):
    return Event(ts, None, "scenario", f"{name} {state}", Severity.INFO, {"scenario": name, "state": state})


def test_scenario_periods_pair_starts_with_ends_and_clip_to_the_window():
    events = [scenario_event(T0 - 90, "stopped"),  # started before the window
              scenario_event(T0 - 50, "started", "gen_fail"), scenario_event(T0 - 20, "finished", "gen_fail"),
              scenario_event(T0 - 5, "started"),
              Event(T0 - 4, "dh1-ups-a", "trap", "upsTrapOnBattery", Severity.WARNING)]
    periods = scenario_periods(events, T0 - 100, T0)
    assert [(p.name, p.start, p.end) for p in periods] == [
        ("mains_failure", T0 - 100, T0 - 90), ("gen_fail", T0 - 50, T0 - 20), ("mains_failure", T0 - 5, None)]


def test_only_slugs_reach_the_figure():
    assert safe_name("mains_failure") == "mains_failure"
    assert safe_name("<b onmouseover=x>") == "scenario"


def test_csv_has_one_row_per_bucket_and_series(demo_site):
    rows = csv_text([(choice(demo_site, TEMP), [Bucket(T0 + 6, 20.5, 21.5, 21.0, 3, 0),
                                                Bucket(T0, None, None, None, 0, 3)])], UTC).splitlines()
    assert rows[0] == ",".join(CSV_HEADER)
    assert rows[1] == "2023-11-14T22:13:20+00:00,dh1-rack-a01-inlet,ambient.temperature,degC,,,,0,3"
    assert rows[2] == "2023-11-14T22:13:26+00:00,dh1-rack-a01-inlet,ambient.temperature,degC,21.0,20.5,21.5,3,0"


# --- the page's callbacks, with a fake store and clock ------------------------------------------

@pytest.fixture
def page(demo_site, clock):
    from dashboard.data import DashboardSources
    store = FakeStore(readings=[Reading(A01, "ambient.temperature", T0, 21.0)],
                      buckets=[Bucket(T0 - 60 + i * 6, 21.0, 21.0, 21.0, 3, 0) for i in range(10)])
    store.events = lambda start, end, device=None, limit=1000: []
    ctx = PageContext(DashboardSources(demo_site, store, clock=clock), UTC, TickCache(2, clock))
    return TrendsPage(ctx), store, clock


def test_first_refresh_sends_a_figure_then_only_new_readings(page):
    trends, store, clock = page
    figure, extend, title, _details, shown = trends.refresh(0, [TEMP], 3600, None)
    assert figure.layout.uirevision == f"{TEMP}@3600"
    assert title == "Rack A01 inlet — ambient.temperature (°C) — last 1 h"
    assert len(store.query_calls) == 1 and store.query_calls[0][4] == 600  # downsampled in the store
    clock.now += 2
    store.readings.append(Reading(A01, "ambient.temperature", clock.now - 1, 21.5))
    figure, extend, *_rest, shown2 = trends.refresh(1, [TEMP], 3600, shown)
    assert figure is trends_no_update()
    assert extend[0]["y"] == [[21.5]] and extend[1] == [shown["traces"]["0"]]
    assert len(store.query_calls) == 1  # not re-queried within the bucket
    # nothing newer: nothing sent
    assert trends.refresh(2, [TEMP], 3600, shown2)[1] is trends_no_update()


def test_a_due_recompute_of_the_same_series_is_a_patch_that_keeps_the_zoom(page):
    trends, store, clock = page
    *_, shown = trends.refresh(0, [TEMP], 3600, None)
    clock.now += 10
    figure, *_ = trends.refresh(1, [TEMP], 3600, shown)
    assert type(figure).__name__ == "Patch"
    assert len(store.query_calls) == 2


def test_bad_choices_draw_nothing_and_query_nothing(page):
    trends, store, _ = page
    figure, *_ = trends.refresh(0, ["nope|x"], 3600, None)
    assert figure.data == () and store.query_calls == []
    assert trends.refresh(0, [TEMP], 12345, None)[0].data == ()


def test_store_failure_says_so_in_the_figure(page):
    trends, store, _ = page
    store.fail = OSError("disk")
    figure, *_ = trends.refresh(0, [TEMP], 3600, None)
    assert any(a.text == "store unavailable" for a in figure.layout.annotations)


def test_download_sends_the_shown_buckets_as_csv(page):
    trends, store, clock = page
    *_, shown = trends.refresh(0, [TEMP], 3600, None)
    clock.now += 100
    sent = trends.download(1, [TEMP], 3600, shown)
    assert sent["filename"].endswith(".csv")
    assert sent["content"].count("\n") == 11  # header + 10 buckets
    assert store.query_calls[-1][2:] == (T0 - 3600, T0, 600)  # the window the browser's figure shows
    trends.download(1, [TEMP], 3600, {"revision": "other", "built": 1.0})
    assert store.query_calls[-1][3] == clock.now  # another series shown: the window ends now


def trends_no_update():
    from dash import no_update
    return no_update


def test_series_choice_label_uses_the_device_name(demo_site):
    c = choice(demo_site, TEMP)
    assert isinstance(c, SeriesChoice)
    assert c.label == "Rack A01 inlet — ambient.temperature (°C)"
