import logging
from datetime import UTC

import pytest
from dash import dcc, html

from alerts.commands import ActionStore
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from collectors.model import Reading, Severity
from dashboard import ids, shell
from dashboard.app import discover_pages
from dashboard.data import DashboardSources
from dashboard.live import LiveCache
from dashboard.pages import PageContext
from dashboard.pages import fire as fire_page
from dashboard.pages import power as power_page
from dashboard.pages import rooms as rooms_page
from dashboard.pages import wall as wall_page
from tests.unit.dashboard.conftest import FakeStore
from tests.unit.dashboard.plant_readings import healthy_readings
from tests.unit.dashboard.test_layout import walk

T0 = 1_700_000_000.0
HOSTILE = '<img src=x onerror=alert(1)> [x](javascript:alert(1))'
PAGES = (wall_page, power_page, rooms_page, fire_page)


class CountingAlerts(AlertStateStore):
    def __init__(self):
        super().__init__(":memory:")
        self.loads = 0

    def load(self):
        self.loads += 1
        return super().load()


@pytest.fixture
def plant(plant_site, default_rules, clock):
    store = FakeStore(healthy_readings(plant_site, T0 - 1))
    alerts, actions = CountingAlerts(), ActionStore(":memory:", clock=clock)
    actions.beat("collector", T0 - 1)
    sources = DashboardSources(plant_site, store, clock, alerts=alerts, actions=actions, rules=default_rules)
    ctx = PageContext(sources, UTC, LiveCache(sources, default_rules, UTC))
    yield ctx, store, alerts, actions
    alerts.close()
    actions.close()


def callbacks(ctx):
    return shell.ShellCallbacks(ctx, discover_pages(demo=False))


def fire(alerts, rule="gas_released", summary="GAS RELEASED: DH2", by=None):
    alert = Alert(rule, {"device": "dh2-gas"}, Severity.CRITICAL, AlertState.FIRING, summary=summary,
                  active_since=T0 - 5, fired_at=T0 - 5, acknowledged_by=by)
    alerts.save(alert, None)
    return alert


def texts(node):
    return [c.children for c in walk(node) if isinstance(getattr(c, "children", None), str)]


def test_route_renders_the_page_marks_its_link_and_kiosk_hides_the_navigation(plant):
    ctx, *_ = plant
    shell_callbacks = callbacks(ctx)
    link_ids = [ids.nav_link(p.name) for p in shell_callbacks.pages]
    content, links, page_class = shell_callbacks.route("/power", "?rotate=30&rotate=5", link_ids)
    assert any(getattr(c, "id", None) == ids.POWER_BODY for c in walk(content))
    assert [cls for cls in links if "active" in cls] == ["fw-nav-link fw-nav-link--active"]
    assert links[[i["page"] for i in link_ids].index("power")].endswith("--active")
    assert page_class == "fw-page fw-page--kiosk"
    not_found, links, _ = shell_callbacks.route("/nope", "", link_ids)
    assert "Page not found" in texts(not_found) and not any("active" in cls for cls in links)


def test_query_parsing_is_bounded_and_first_value_wins():
    assert shell.parse_query("?rotate=30&rotate=5&kiosk") == {"rotate": "30", "kiosk": ""}
    assert shell.parse_query("?" + "a=1&" * 2000) == {} and shell.parse_query(None) == {}


def test_a_page_that_fails_to_render_says_so_instead_of_breaking_the_shell(plant, caplog):
    ctx, store, *_ = plant
    store.readings = [Reading("ups-a", "ups.load", T0, float("nan"))]
    shell_callbacks = callbacks(ctx)
    shell_callbacks.by_path["/broken"] = type(shell_callbacks.pages[0])(
        "broken", "/broken", "Broken", layout=lambda c, q: 1 / 0, register=lambda a, c: None)
    with caplog.at_level(logging.ERROR):
        content, _, _ = shell_callbacks.route("/broken", "", [])
    assert "This page failed to render" in texts(content)


def test_status_shows_the_banner_when_the_collector_stops(plant, clock):
    ctx, *_ = plant
    clock_text, updated, _updated_class, banner, banner_class = callbacks(ctx).status(1)
    assert clock_text == "2023-11-14 22:13:20 UTC" and updated == "updated 1 s ago" and banner == []
    assert banner_class == "fw-banner fw-banner--none"
    clock.now += 120
    *_, banner, banner_class = callbacks(ctx).status(2)
    assert [b.children for b in banner] == ["COLLECTOR DOWN since 22:13", "DATA STALE since 22:13"]
    assert banner_class == "fw-banner"


def test_playlist_pauses_on_a_new_critical_alert_and_resumes_when_it_is_acknowledged(plant, clock):
    ctx, _, alerts, _ = plant
    shell_callbacks = callbacks(ctx)
    path, state, text, css = shell_callbacks.playlist(1, 0, "/power", "?rotate=30", None)
    assert text.startswith("PLAYLIST every 30 s") and css == "fw-playlist"
    alert = fire(alerts)
    clock.now += 2
    path, state, text, css = shell_callbacks.playlist(2, 0, "/power", "?rotate=30", state)
    assert path == "/wall" and "GAS RELEASED: DH2" in text and css == "fw-playlist fw-playlist--paused"
    alerts.acknowledge(alert.fingerprint, "j.smith", "", T0)
    clock.now += 2
    _, state, text, css = shell_callbacks.playlist(3, 0, "/wall", "?rotate=30", state)
    assert text.startswith("PLAYLIST every 30 s") and css == "fw-playlist"


def test_playlist_resumes_on_a_click(plant, clock):
    ctx, _, alerts, _ = plant
    shell_callbacks = callbacks(ctx)
    _, state, _, _ = shell_callbacks.playlist(1, 0, "/wall", "?rotate=30", None)
    fire(alerts)
    clock.now += 2
    _, state, text, _ = shell_callbacks.playlist(2, 0, "/wall", "?rotate=30", state)
    assert "PAUSED" in text
    clock.now += 2
    _, state, text, _ = shell_callbacks.playlist(3, 0, "/wall", "?rotate=30", state)
    assert "PAUSED" in text  # a tick is not a click
    _, state, text, css = shell_callbacks.playlist(3, 1, "/wall", "?rotate=30", state)
    assert text.startswith("PLAYLIST every 30 s") and css == "fw-playlist"


def test_playlist_is_off_without_rotation(plant):
    ctx, *_ = plant
    _path, state, text, css = callbacks(ctx).playlist(1, 0, "/wall", "", None)
    assert (state, text, css) == (None, "", "fw-playlist fw-playlist--off")


def test_twenty_screens_cost_one_read_of_each_source_per_tick(plant, clock):
    ctx, store, alerts, _ = plant
    shell_callbacks = callbacks(ctx)
    for _ in range(20):
        shell_callbacks.status(1)
        shell_callbacks.playlist(1, 0, "/wall", "?rotate=30", None)
        for page in PAGES:
            page.render(ctx)
    assert len(store.latest_calls) == 1 and alerts.loads == 1
    assert wall_page.render(ctx) is wall_page.render(ctx)  # one rendering shared by every screen
    clock.now += 2
    wall_page.render(ctx)
    assert len(store.latest_calls) == 2 and alerts.loads == 2


def test_store_failure_is_logged_once_and_recovery_once(plant, clock, caplog):
    ctx, store, *_ = plant
    store.fail = OSError("disk I/O error")
    with caplog.at_level(logging.WARNING, logger="dashboard.live"):
        for _ in range(3):
            *_, banner, _ = callbacks(ctx).status(1)
            clock.now += 2
        store.fail = None
        callbacks(ctx).status(1)
    assert banner[0].children.startswith("STORE UNAVAILABLE")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot read the store" in m for m in messages) == 1
    assert sum("reads the store again" in m for m in messages) == 1


def test_pages_render_hostile_names_as_text_only(site_factory, default_rules, clock):
    site = site_factory([{"id": "evil", "name": HOSTILE},
                         {"id": "evil-ats", "name": HOSTILE, "class": "ats", "profile": "ats/facwatch_ats"},
                         {"id": "evil-gas", "name": HOSTILE, "class": "gas", "profile": "gas/clean_agent"}],
                        name=HOSTILE, rooms=[{"id": "dh1", "name": HOSTILE}])
    alerts = AlertStateStore(":memory:")
    alerts.save(Alert("x", {"device": "evil"}, Severity.CRITICAL, AlertState.FIRING, summary=HOSTILE,
                      fired_at=T0 - 5, acknowledged_by=HOSTILE), None)
    store = FakeStore([Reading("evil", "ambient.temperature", T0 - 1, 21.4)])
    sources = DashboardSources(site, store, clock, alerts=alerts, rules=default_rules)
    ctx = PageContext(sources, UTC, LiveCache(sources, default_rules, UTC))
    for page in PAGES:
        components = list(walk(page.layout(ctx, {})))
        assert HOSTILE in [getattr(c, "children", None) for c in components], page.__name__
        assert not any(isinstance(c, dcc.Markdown | html.A | html.Iframe | dcc.Link) for c in components)
        assert not any("dangerously_allow_html" in c.to_plotly_json()["props"] for c in components)
    alerts.close()


def test_every_wall_page_uses_the_shells_timer(plant):
    ctx, *_ = plant
    for page in PAGES:
        assert page.PAGE.wall
        assert not [c for c in walk(page.layout(ctx, {})) if isinstance(c, dcc.Interval)]
