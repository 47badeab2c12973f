import threading
from datetime import UTC

import pytest

from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Kind, PointSpec, Quality, Reading, Severity
from dashboard.data import (
    MISSING_TEXT,
    TREND_MAX_POINTS,
    TickCache,
    format_age,
    format_clock,
    format_number,
    header_view,
    page_model,
    point_options,
    room_groups,
    stale_after,
    tile_view,
    tile_views,
    trend_request,
    unit_symbol,
    value_view,
    worst,
)

T0 = 1_700_000_000.0  # a multiple of the 2 s refresh: tick boundaries fall on T0 + 2k
UPS = "dh1-ups-a"
A01 = "dh1-rack-a01-inlet"
A02 = "dh1-rack-a02-inlet"


def spec(demo_site, device_id, point):
    return demo_site.profile(demo_site.device(device_id)).point(point)


def ups_readings(ts=T0, **overrides):
    """A healthy UPS (summary points + health) with per-point overrides (value, or a Reading)."""
    values = {"output.source": 3, "ups.load": 45, "battery.charge": 100, "battery.runtime": 25,
              "battery.status": 2, "input.voltage": 230, REACHABLE_POINT: 1}
    values.update(overrides)
    return [v if isinstance(v, Reading) else Reading(UPS, point, ts, v) for point, v in values.items()]


def tile(demo_site, device_id, readings, now=T0 + 4):
    return tile_view(demo_site, demo_site.device(device_id), readings, now)


# --- number, unit, age formatting ------------------------------------------------------------------

@pytest.mark.parametrize(("device", "point", "value", "text"), [
    (A01, "ambient.temperature", 21.4, "21.4"),       # 0.1 degC resolution
    (A01, "ambient.temperature", 21.0, "21.0"),       # resolution kept, so digits do not jump
    (A01, "ambient.humidity", 45.0, "45.0"),
    (UPS, "input.voltage", 230, "230"),               # whole volts
    (UPS, "battery.charge", 45, "45"),
    (UPS, "battery.voltage", 230.1, "230"),           # three digits are enough at a glance
    (UPS, "battery.voltage", 54.3, "54.3"),
    (UPS, "battery.current", 4.2, "4.2"),
    (UPS, "input.frequency", 50.0, "50.0"),
    (UPS, "output.realpower", 18000, "18\u202f000"),  # thousands grouped, SI style
    (UPS, "ups.load", 0, "0"),
    (A01, "ambient.temperature", -0.04, "0.0"),       # never "-0.0"
    (A01, "ambient.temperature", -20.5, "-20.5"),
    (UPS, "input.line_bads", 12, "12"),               # counters are whole
])
def test_format_number_by_magnitude_and_resolution(demo_site, device, point, value, text):
    assert format_number(value, spec(demo_site, device, point)) == text


def test_format_number_of_floats_uses_magnitude_only():
    duration = PointSpec(POLL_DURATION_POINT, Kind.GAUGE, "float", unit="s")
    assert [format_number(v, duration) for v in (0.3512, 3.51, 35.1, 351.2)] == ["0.35", "3.5", "35.1", "351"]


@pytest.mark.parametrize(("unit", "symbol"), [("degC", "°C"), ("%RH", "%RH"), ("V", "V"), (None, ""), ("", "")])
def test_unit_symbol(unit, symbol):
    assert unit_symbol(unit) == symbol


@pytest.mark.parametrize(("age", "text"), [
    (0, "0 s ago"), (4.9, "4 s ago"), (59.9, "59 s ago"), (60, "1 min ago"), (3599, "59 min ago"),
    (7200, "2 h ago"), (5 * 86_400 + 5, "5 d ago"), (-3, "0 s ago"),
])
def test_format_age(age, text):
    assert format_age(age) == text


def test_format_clock_in_given_zone():
    assert format_clock(T0, UTC) == "2023-11-14 22:13:20 UTC"


# --- tiles -----------------------------------------------------------------------------------------

def test_healthy_sensor_tile_shows_values_with_units_and_age(demo_site):
    view = tile(demo_site, A01, [Reading(A01, "ambient.temperature", T0, 21.4),
                                 Reading(A01, "ambient.humidity", T0, 45.0),
                                 Reading(A01, REACHABLE_POINT, T0, 1)])
    assert (view.state, view.status_text, view.age_text) == ("ok", "OK", "4 s ago")
    assert [v.display for v in view.values] == ["21.4 °C", "45.0 %RH"]
    assert [v.status for v in view.values] == ["good", "good"]
    assert (view.label, view.device_class, view.room) == ("Rack A01 inlet", "thsensor", "Data hall 1")
    assert view.reasons == ()


def test_readings_of_other_devices_are_ignored(demo_site):
    view = tile(demo_site, A01, [Reading(A02, "ambient.temperature", T0, 30.0)])
    assert view.state == "nodata"
    assert view.values[0].text == MISSING_TEXT


def test_state_points_show_the_state_name_and_set_the_tile_colour(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"output.source": 5}))
    assert view.state == "warning"
    assert view.status_text == "WARNING"
    source = view.values[0]
    assert (source.point, source.text, source.unit, source.severity) == ("output.source", "battery", "",
                                                                         Severity.WARNING)
    assert view.reasons == ("output source: battery",)


def test_tile_takes_the_worst_state_and_lists_the_worst_reason_first(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"output.source": 5, "battery.status": 3}))
    assert view.state == "critical"
    assert view.reasons == ("battery status: batteryLow", "output source: battery")


def test_state_points_outside_the_summary_count_too(demo_site):
    view = tile(demo_site, UPS, [*ups_readings(), Reading(UPS, "ups.test.result", T0, 3)])
    assert view.state == "critical"
    assert view.reasons == ("ups test result: doneError",)


def test_info_state_leaves_a_healthy_tile_ok(demo_site):
    view = tile(demo_site, UPS, [*ups_readings(), Reading(UPS, "ups.test.result", T0, 6)])
    assert (view.state, view.status_text) == ("ok", "OK")
    assert view.reasons == ()


def test_reasons_are_worst_first_and_capped(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"output.source": 6, "battery.status": 3, "ups.load": None,
                                                 REACHABLE_POINT: 0}))
    assert view.reasons == ("battery status: batteryLow", "device reachable: unreachable", "ups load: missing")


def test_unreachable_device_is_critical(demo_site):
    view = tile(demo_site, A01, [Reading(A01, "ambient.temperature", T0, 21.4),
                                 Reading(A01, "ambient.humidity", T0, 45.0),
                                 Reading(A01, REACHABLE_POINT, T0, 0)])
    assert view.state == "critical"
    assert view.reasons == ("device reachable: unreachable",)


def test_unlisted_state_code_is_unknown_not_ok(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"battery.status": Reading(UPS, "battery.status", T0, 9, text="x9")}))
    assert view.state == "unknown"
    assert view.values[4].text == "x9"


@pytest.mark.parametrize("quality", [Quality.MISSING, Quality.INVALID])
def test_missing_or_invalid_data_is_a_dash_never_a_number(demo_site, quality):
    # A store may hand back a value on a bad reading; the dashboard must still not print it.
    bad = Reading(A01, "ambient.temperature", T0, 999.0, quality)
    view = tile(demo_site, A01, [bad, Reading(A01, "ambient.humidity", T0, 45.0)])
    temperature = view.values[0]
    assert (temperature.text, temperature.status, temperature.marker) == (MISSING_TEXT, quality.value, quality.value)
    assert temperature.display == MISSING_TEXT
    assert "999" not in repr(view)
    assert view.state == "unknown"
    assert view.reasons == (f"ambient temperature: {quality.value}",)


def test_missing_state_reading_is_unknown(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"output.source": Reading(UPS, "output.source", T0, None,
                                                                          Quality.MISSING)}))
    assert view.values[0].text == MISSING_TEXT
    assert view.state == "unknown"


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_good_reading_without_a_usable_number_is_missing(demo_site, value):
    for point in ("output.source", "ups.load"):
        view = value_view(spec(demo_site, UPS, point), Reading(UPS, point, T0, value), T0, 10)
        assert (view.text, view.status) == (MISSING_TEXT, "missing")
    view = tile(demo_site, UPS, ups_readings(**{"battery.status": value}))
    assert view.state == "unknown"


def test_point_never_reported_shows_no_data(demo_site):
    view = tile(demo_site, A01, [Reading(A01, "ambient.temperature", T0, 21.4)])
    humidity = view.values[1]
    assert (humidity.text, humidity.status, humidity.marker) == (MISSING_TEXT, "nodata", "no data")


def test_device_without_readings_is_no_data(demo_site):
    view = tile(demo_site, UPS, [])
    assert (view.state, view.status_text, view.age_text, view.last_ts) == ("nodata", "NO DATA", "no data", None)
    assert all(v.text == MISSING_TEXT for v in view.values)


def test_device_is_stale_after_three_polls_plus_refresh_and_grace(demo_site):
    readings = [Reading(A01, "ambient.temperature", T0, 21.4), Reading(A01, "ambient.humidity", T0, 45.0)]
    assert stale_after(demo_site.device(A01), 2.0) == 3 * 2 + 2 + 2
    assert tile(demo_site, A01, readings, now=T0 + 10).state == "ok"
    view = tile(demo_site, A01, readings, now=T0 + 10.5)
    assert (view.state, view.status_text, view.age_text) == ("stale", "STALE", "10 s ago")
    assert view.values[0].display == "21.4 °C"  # the last value stays readable, greyed by the tile state
    assert (view.values[0].status, view.values[0].marker) == ("stale", "")


def test_stale_tile_remembers_a_bad_last_state(demo_site):
    view = tile(demo_site, UPS, ups_readings(**{"battery.status": 3}), now=T0 + 60)
    assert view.state == "stale"
    assert view.reasons == ("last state critical", "battery status: batteryLow")
    assert tile(demo_site, UPS, ups_readings(), now=T0 + 60).reasons == ()


def test_one_old_value_in_a_fresh_tile_is_marked_old(demo_site):
    view = tile(demo_site, A01, [Reading(A01, "ambient.temperature", T0 - 60, 21.4),
                                 Reading(A01, "ambient.humidity", T0, 45.0)])
    assert view.state == "ok"
    assert [(v.status, v.marker) for v in view.values] == [("stale", "old"), ("good", "")]


def test_text_point_shows_its_text():
    model = PointSpec("ups.model", Kind.TEXT, "octet_string")
    view = value_view(model, Reading("d", "ups.model", T0, None, text="Galaxy VS"), T0, 6)
    assert (view.text, view.unit, view.display) == ("Galaxy VS", "", "Galaxy VS")


def test_tiles_follow_config_order(demo_site):
    assert [v.device_id for v in tile_views(demo_site, [], T0)] == [UPS, A01, A02]


def test_worst_ranks_critical_warning_unknown_info_ok():
    assert worst([Severity.OK, Severity.INFO, Severity.UNKNOWN]) is Severity.UNKNOWN
    assert worst([Severity.UNKNOWN, Severity.WARNING]) is Severity.WARNING
    assert worst([Severity.WARNING, Severity.CRITICAL, Severity.OK]) is Severity.CRITICAL
    assert worst([]) is Severity.OK


# --- header ----------------------------------------------------------------------------------------

def test_header_says_how_old_the_newest_data_is(demo_site):
    view = header_view(demo_site, [Reading(A01, "ambient.temperature", T0, 21.4)], T0 + 3, UTC)
    assert (view.updated_text, view.state) == ("updated 3 s ago", "fresh")
    assert view.clock_text == "2023-11-14 22:13:23 UTC"


def test_header_shouts_data_stale(demo_site):
    view = header_view(demo_site, [Reading(A01, "ambient.temperature", T0, 21.4)], T0 + 120, UTC)
    assert (view.updated_text, view.state) == ("DATA STALE · updated 2 min ago", "stale")


def test_header_without_data_or_store(demo_site):
    assert header_view(demo_site, [], T0, UTC).updated_text == "NO DATA"
    assert header_view(demo_site, None, T0, UTC).updated_text == "STORE UNAVAILABLE"


# --- static page and trend choices -----------------------------------------------------------------

def test_rooms_in_config_order_without_empty_rooms(site_factory):
    site = site_factory(
        [{"id": "b-1", "room": "b"}, {"id": "a-1", "room": "a", "name": "A one"}, {"id": "b-2", "room": "b"}],
        rooms=[{"id": "a", "name": "Hall A"}, {"id": "empty", "name": "Empty"}, {"id": "b", "name": "Hall B"}])
    groups = room_groups(site)
    assert [(g.name, [d.device_id for d in g.devices]) for g in groups] == [("Hall A", ["a-1"]),
                                                                           ("Hall B", ["b-1", "b-2"])]
    assert groups[0].devices[0].label == "A one"


def test_point_options_are_numeric_summary_first_with_units(demo_site):
    options = point_options(demo_site, A01)
    assert [o.label for o in options[:2]] == ["ambient.temperature (°C)", "ambient.humidity (%RH)"]
    assert POLL_DURATION_POINT in [o.value for o in options]
    ups = [o.value for o in point_options(demo_site, UPS)]
    assert ups[:4] == ["ups.load", "battery.charge", "battery.runtime", "input.voltage"]
    assert "output.source" not in ups and "ups.mfr" not in ups  # states and texts are not lines


def test_point_options_of_unknown_device_are_empty(demo_site):
    assert point_options(demo_site, "nope") == []
    assert point_options(demo_site, None) == []


def test_page_model_defaults(demo_site):
    model = page_model(demo_site)
    assert model.title == "facwatch — facwatch demo data centre"
    assert (model.default_device, model.default_point, model.default_range_s) == (UPS, "ups.load", 3600)
    assert model.refresh_ms == 2000
    assert [o.label for o in model.range_options] == ["15 min", "1 h", "6 h", "24 h", "7 d"]
    assert model.device_options[0].label == "UPS A (dh1-ups-a)"


def test_trend_request_window_and_bucket_width(demo_site):
    request = trend_request(demo_site, A01, "ambient.temperature", 3600, T0)
    assert (request.device.id, request.spec.name, request.start, request.end) == (A01, "ambient.temperature",
                                                                                  T0 - 3600, T0)
    assert request.max_points == TREND_MAX_POINTS
    assert request.bucket_s == 6.0


@pytest.mark.parametrize(("device", "point", "range_s"), [
    ("nope", "ambient.temperature", 3600),
    (A01, "nope", 3600),
    (A01, "ambient.temperature", 3601),   # only the offered ranges
    (A01, "ambient.temperature", True),   # JSON true is not 1 s
    (A01, "ambient.temperature", "3600"),
    (UPS, "output.source", 3600),         # state point
    (UPS, "ups.mfr", 3600),               # text point
    ({"x": 1}, "ambient.temperature", 3600),
])
def test_trend_request_refuses_anything_not_offered(demo_site, device, point, range_s):
    assert trend_request(demo_site, device, point, range_s, T0) is None


# --- per-tick cache --------------------------------------------------------------------------------

def test_tick_cache_computes_once_per_tick(clock):
    cache = TickCache(2.0, clock)
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert [cache.get("k", compute) for _ in range(3)] == [1, 1, 1]
    clock.now = T0 + 1.9  # T0 is a multiple of 2 s: still the same tick
    assert cache.get("k", compute) == 1
    clock.now = T0 + 2.0
    assert cache.get("k", compute) == 2
    assert cache.get("other", compute) == 3


def test_tick_cache_key_with_a_longer_period_lives_longer(clock):
    cache = TickCache(2.0, clock)
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert cache.get("week", compute, period=250) == 1
    clock.now = T0 + 10
    assert cache.get("week", compute, period=250) == 1
    assert cache.get("week", compute, period=1) == 2  # never shorter than the refresh tick
    clock.now = T0 + 2 * 250
    assert cache.get("week", compute, period=250) == 3


def test_tick_cache_forgets_least_recently_used_keys(clock):
    cache = TickCache(2.0, clock, max_keys=2)
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    cache.get("a", compute)
    cache.get("b", compute)
    cache.get("a", compute)
    cache.get("c", compute)  # evicts b, the least recently used
    assert cache.get("a", compute) == 1
    assert cache.get("b", compute) == 4


def test_tick_cache_does_not_keep_failures(clock):
    cache = TickCache(2.0, clock)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk")
        return "ok"

    with pytest.raises(OSError):
        cache.get("k", flaky)
    assert cache.get("k", flaky) == "ok"


def test_tick_cache_concurrent_callers_share_one_computation(clock):
    cache = TickCache(2.0, clock)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(5)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert results == ["value"] * 5
    assert len(calls) == 1


def test_tick_cache_rejects_non_positive_refresh(clock):
    with pytest.raises(ValueError, match="refresh_s"):
        TickCache(0, clock)
