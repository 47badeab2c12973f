import logging
from datetime import UTC

import pytest
from dash import Patch

from collectors.model import Reading
from dashboard import ids
from dashboard.callbacks import PageCallbacks, register
from dashboard.data import DashboardSources
from dashboard.live import LiveCache
from dashboard.pages import PageContext
from storage.base import Bucket

T0 = 1_700_000_000.0
UPS, A01, A02 = "dh1-ups-a", "dh1-rack-a01-inlet", "dh1-rack-a02-inlet"
TILE_IDS = [ids.tile(UPS), ids.tile(A01), ids.tile(A02)]


def texts(node):
    """Every string in a component tree, depth first."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list | tuple):
        return [text for child in node for text in texts(child)]
    children = getattr(node, "children", None)
    return texts(children) if children is not None else []


@pytest.fixture
def callbacks(demo_site, fake_store, clock):
    fake_store.readings = [Reading(A01, "ambient.temperature", T0 - 1, 21.4),
                           Reading(A01, "ambient.humidity", T0 - 1, 45.0),
                           Reading(UPS, "output.source", T0 - 1, 5)]
    return PageCallbacks(context(DashboardSources(demo_site, fake_store, clock)))


def context(sources):
    return PageContext(sources, UTC, LiveCache(sources, (), UTC))


def test_refresh_renders_every_tile_in_the_order_asked(callbacks):
    classes, bodies = callbacks.refresh(0, [ids.tile(A02), ids.tile(A01), ids.tile(UPS)])
    assert classes == ["fw-tile fw-tile--nodata", "fw-tile fw-tile--ok", "fw-tile fw-tile--warning"]
    a01 = texts(bodies[1])
    assert a01[a01.index("21.4"):a01.index("21.4") + 2] == ["21.4", "°C"]
    assert "OK" in a01 and "1 s ago" in a01
    assert "WARNING" in texts(bodies[2]) and "battery" in texts(bodies[2])
    assert "NO DATA" in texts(bodies[0])


def test_refresh_asks_the_store_once_per_tick_for_all_screens(callbacks, fake_store, clock):
    for _ in range(10):  # ten wall screens within one tick
        callbacks.refresh(1, TILE_IDS)
    assert fake_store.latest_calls == [[UPS, A01, A02]]
    clock.now += 2
    callbacks.refresh(2, TILE_IDS)
    assert len(fake_store.latest_calls) == 2


def test_refresh_shows_a_new_reading_on_the_next_tick(callbacks, fake_store, clock):
    fake_store.readings.append(Reading(A01, "ambient.temperature", T0 + 1, 24.9))
    clock.now += 2
    assert "24.9" in texts(callbacks.refresh(1, TILE_IDS)[1][1])


def test_unknown_tile_ids_get_an_empty_no_data_tile(callbacks):
    classes, bodies = callbacks.refresh(0, [ids.tile("gone"), "not-a-dict"])
    assert classes == ["fw-tile fw-tile--nodata"] * 2
    assert bodies == [[], []]


def test_store_failure_is_shown_and_logged_once(callbacks, fake_store, clock, caplog):
    fake_store.fail = OSError("disk I/O error")
    with caplog.at_level(logging.WARNING, logger="dashboard.live"):
        for _ in range(3):
            classes, _ = callbacks.refresh(0, TILE_IDS)
            clock.now += 2
        fake_store.fail = None
        callbacks.refresh(0, TILE_IDS)
    assert classes == ["fw-tile fw-tile--nodata"] * 3
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "cannot read the store" in m]) == 1
    assert any("reads the store again" in m for m in messages)


def test_points_keep_the_current_point_when_the_new_device_has_it(callbacks):
    options, value = callbacks.points(A02, "ambient.humidity")
    assert value == "ambient.humidity"
    assert options[0] == {"label": "ambient.temperature (°C)", "value": "ambient.temperature"}


def test_points_fall_back_to_the_first_point(callbacks):
    assert callbacks.points(UPS, "ambient.humidity")[1] == "ups.load"
    assert callbacks.points("nope", "ambient.humidity") == ([], None)


def test_trend_queries_the_window_downsampled_and_titles_the_graph(callbacks, fake_store):
    fake_store.buckets = [Bucket(T0 - 12, 21.0, 22.0, 21.5, 3, 0), Bucket(T0 - 6, 21.0, 23.0, 22.0, 3, 0)]
    figure, title, shown = callbacks.trend(0, A01, "ambient.temperature", 3600)
    assert fake_store.query_calls == [(A01, "ambient.temperature", T0 - 3600, T0, 600)]
    assert title == "Rack A01 inlet — ambient.temperature (°C), last 1 h"
    assert [list(t.y) for t in figure.data if t.mode == "lines" and t.name == "mean"] == [[21.5, 22.0, None]]
    assert figure.layout.uirevision == shown == f"{A01}|ambient.temperature|3600"


def test_trend_refresh_of_the_shown_series_sends_only_the_traces(callbacks, fake_store, clock):
    fake_store.buckets = [Bucket(T0 - 12, 21.0, 22.0, 21.5, 3, 0), Bucket(T0 - 6, 21.0, 23.0, 22.0, 3, 0)]
    _, _, shown = callbacks.trend(0, A01, "ambient.temperature", 3600)
    clock.now += 2
    fake_store.buckets.append(Bucket(T0, 22.0, 22.0, 22.0, 1, 0))
    patch, _, still = callbacks.trend(1, A01, "ambient.temperature", 3600, shown)
    assert isinstance(patch, Patch)  # the layout, and the operator's zoom with it, stays in the browser
    assert still == shown
    (operation,) = patch.to_plotly_json()["operations"]
    assert operation["location"] == ["data"]
    assert [t["y"] for t in operation["params"]["value"] if t["mode"] == "lines"][-1][-2:] == [22.0, None]


def test_trend_sends_a_whole_figure_for_another_series_or_after_no_data(callbacks, fake_store):
    fake_store.buckets = [Bucket(T0 - 12, 21.0, 22.0, 21.5, 3, 0), Bucket(T0 - 6, 21.0, 23.0, 22.0, 3, 0)]
    _, _, shown = callbacks.trend(0, A01, "ambient.temperature", 3600)
    figure, _, other = callbacks.trend(0, A01, "ambient.temperature", 900, shown)
    assert not isinstance(figure, Patch) and other != shown
    fake_store.buckets = []
    empty, _, nothing = callbacks.trend(0, A02, "ambient.temperature", 3600, None)
    assert nothing is None  # an empty graph's layout (message, fixed window) must be replaced next time
    assert empty.layout.annotations[0].text == "no data in this range"


def test_trend_is_cached_per_tick(callbacks, fake_store, clock):
    for _ in range(5):
        callbacks.trend(0, A01, "ambient.temperature", 900)
    callbacks.trend(0, A01, "ambient.humidity", 900)
    assert len(fake_store.query_calls) == 2
    clock.now += 2
    callbacks.trend(1, A01, "ambient.temperature", 900)
    assert len(fake_store.query_calls) == 3


def test_trend_refuses_choices_it_did_not_offer(callbacks, fake_store):
    figure, title, shown = callbacks.trend(0, A01, "config.address';--", 3600)
    assert (title, shown) == ("", None)
    assert figure.layout.annotations[0].text == "choose a device and a point"
    assert fake_store.query_calls == []


def test_trend_with_failing_store_says_so(callbacks, fake_store):
    fake_store.fail = OSError("locked")
    figure, _, _ = callbacks.trend(0, A01, "ambient.temperature", 3600)
    assert figure.layout.annotations[0].text == "store unavailable"


def test_register_wires_one_tick_callback_for_all_tiles(demo_site, fake_store, clock):
    import dash

    app = dash.Dash(__name__)
    register(app, context(DashboardSources(demo_site, fake_store, clock)))
    outputs = list(app.callback_map)
    assert len(outputs) == 3
    tick = next(key for key in outputs if ids.TILE_BODY in key)
    assert ids.TILE in tick and ids.TILE_BODY in tick
    assert fake_store.latest_calls == []  # nothing read until a browser asks
