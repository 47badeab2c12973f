import pytest
from dash import dcc

from dashboard import ids
from dashboard.app import MAX_REQUEST_BYTES, DashboardSources, create_app

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def app(demo_site, fake_store, clock):
    return create_app(DashboardSources(demo_site, fake_store, clock))


def test_creating_the_app_reads_nothing(app, fake_store):
    assert fake_store.latest_calls == [] and fake_store.query_calls == []


def test_index_is_titled_and_served_from_this_server_only(app):
    page = app.server.test_client().get("/").get_data(as_text=True)
    assert "<title>facwatch — facwatch demo data centre</title>" in page
    assert "facwatch.css" in page
    assert "https://" not in page and "http://" not in page  # offline DC network: no CDN


def test_title_from_config_is_escaped(site_factory, fake_store, clock):
    app = create_app(DashboardSources(site_factory([{"id": "t1"}], name=HOSTILE), fake_store, clock))
    page = app.server.test_client().get("/").get_data(as_text=True)
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page


def test_request_bodies_are_limited(app):
    assert app.server.config["MAX_CONTENT_LENGTH"] == MAX_REQUEST_BYTES
    response = app.server.test_client().post("/_dash-update-component", data=b"x" * (MAX_REQUEST_BYTES + 1),
                                             content_type="application/json")
    assert response.status_code == 413


def test_tick_callback_answers_over_http(app, fake_store):
    body = {
        "output": next(key for key in app.callback_map if ids.CLOCK in key),
        "outputs": [{"id": ids.CLOCK, "property": "children"}, {"id": ids.UPDATED, "property": "children"},
                    {"id": ids.UPDATED, "property": "className"},
                    [{"id": ids.tile("dh1-ups-a"), "property": "className"}],
                    [{"id": ids.tile_body("dh1-ups-a"), "property": "children"}]],
        "inputs": [{"id": ids.TICK, "property": "n_intervals", "value": 3}],
        "state": [[{"id": ids.tile("dh1-ups-a"), "property": "id", "value": ids.tile("dh1-ups-a")}]],
        "changedPropIds": [f"{ids.TICK}.n_intervals"],
    }
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "NO DATA" in response.get_data(as_text=True)
    assert len(fake_store.latest_calls) == 1


def test_apps_are_independent(demo_site, fake_store, clock):
    first = create_app(DashboardSources(demo_site, fake_store, clock))
    second = create_app(DashboardSources(demo_site, fake_store, clock))
    assert first.server is not second.server
    assert first.layout is not second.layout
    assert isinstance(first.layout.children[-1], dcc.Interval)
