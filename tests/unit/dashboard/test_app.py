import re

import pytest
from dash import dcc

from dashboard import ids
from dashboard.app import MAX_REQUEST_BYTES, DashboardSources, create_app, discover_pages
from tests.unit.dashboard.conftest import ROOT

HOSTILE = "<script>alert(1)</script>"
WALL_PAGES = ["/wall", "/power", "/rooms", "/fire"]
EXTERNAL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
IMPORT = re.compile(r"^\s*@import", re.MULTILINE)


@pytest.fixture
def app(demo_site, fake_store, clock):
    return create_app(DashboardSources(demo_site, fake_store, clock))


def post(app, outputs, inputs, state=(), changed=None):
    """A callback request as the browser sends it; the output key is found by the first output's id."""
    first = outputs[0][0] if isinstance(outputs[0], list) else outputs[0]
    key = next(k for k in app.callback_map if str(first["id"]) in k or f"{first['id']}.{first['property']}" in k)
    body = {"output": key, "outputs": list(outputs), "inputs": list(inputs), "state": list(state),
            "changedPropIds": changed or [f"{inputs[0]['id']}.{inputs[0]['property']}"]}
    return app.server.test_client().post("/_dash-update-component", json=body)


def route(app, path, search=""):
    names = [page.name for page in discover_pages(demo=False)]
    links = [{"id": ids.nav_link(n), "property": "className"} for n in names]
    link_ids = [{"id": ids.nav_link(n), "property": "id", "value": ids.nav_link(n)} for n in names]
    outputs = [{"id": ids.PAGE_CONTAINER, "property": "children"}, links, {"id": ids.PAGE, "property": "className"}]
    return post(app, outputs,
                [{"id": ids.URL, "property": "pathname", "value": path},
                 {"id": ids.URL, "property": "search", "value": search}], [link_ids])


def test_creating_the_app_reads_nothing(app, fake_store):
    assert fake_store.latest_calls == [] and fake_store.query_calls == []


def test_index_is_titled_and_served_from_this_server_only(app):
    page = app.server.test_client().get("/").get_data(as_text=True)
    assert "<title>facwatch — facwatch demo data centre</title>" in page
    assert "facwatch.css" in page
    assert "https://" not in page and "http://" not in page  # offline DC network: no CDN


@pytest.mark.parametrize("path", ["/", *WALL_PAGES])
def test_every_page_its_scripts_styles_and_contents_are_served_locally(app, path):
    client = app.server.test_client()
    index = client.get(path)
    assert index.status_code == 200
    html = index.get_data(as_text=True)
    assert not EXTERNAL.search(html)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        if ".css" in url:  # stylesheets: no @import, no font or image from elsewhere
            css = response.get_data(as_text=True)
            assert not EXTERNAL.search(css) and not IMPORT.search(css), url
    assert not EXTERNAL.search(client.get("/_dash-layout").get_data(as_text=True))
    assert not EXTERNAL.search(route(app, path).get_data(as_text=True))


def test_asset_folder_holds_no_external_url():
    for css in (ROOT / "dashboard" / "assets").glob("*.css"):
        text = css.read_text(encoding="utf-8")
        assert not EXTERNAL.search(text) and not IMPORT.search(text), css.name


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


def test_pages_are_discovered_in_navigation_order_and_demo_pages_only_in_demo():
    pages = discover_pages(demo=False)
    paths = [page.path for page in pages]
    assert paths[:4] == WALL_PAGES
    assert [p.path for p in pages if p.wall] == WALL_PAGES
    assert "/" in paths  # the device overview
    assert not any(page.demo_only for page in pages)
    assert {p.path for p in discover_pages(demo=True)} >= set(paths)


@pytest.mark.parametrize("path", WALL_PAGES)
def test_each_wall_page_is_routed_over_http(app, path):
    response = route(app, path)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()["response"]
    name = path.strip("/")
    active = [key for key, value in body.items() if value == {"className": "fw-nav-link fw-nav-link--active"}]
    assert len(active) == 1 and f'"page":"{name}"' in active[0]
    assert f"{name}-body" in response.get_data(as_text=True)


def test_unknown_path_is_a_plain_not_found_page(app):
    text = route(app, "/<b>nope</b>").get_data(as_text=True)
    assert "Page not found" in text
    assert "fw-nav-link--active" not in text


def test_rotation_in_the_url_hides_the_navigation(app):
    assert route(app, "/wall", "?rotate=30").get_json()["response"][ids.PAGE] == {"className": "fw-page fw-page--kiosk"}
    assert route(app, "/wall").get_json()["response"][ids.PAGE] == {"className": "fw-page"}


def test_status_callback_answers_over_http(app, fake_store):
    response = post(app, [{"id": ids.CLOCK, "property": "children"}, {"id": ids.UPDATED, "property": "children"},
                          {"id": ids.UPDATED, "property": "className"}, {"id": ids.BANNER, "property": "children"},
                          {"id": ids.BANNER, "property": "className"}],
                    [{"id": ids.TICK, "property": "n_intervals", "value": 3}])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "NO DATA YET" in response.get_data(as_text=True)
    assert len(fake_store.latest_calls) == 1


def test_apps_are_independent(demo_site, fake_store, clock):
    first = create_app(DashboardSources(demo_site, fake_store, clock))
    second = create_app(DashboardSources(demo_site, fake_store, clock))
    assert first.server is not second.server
    assert first.layout is not second.layout
    intervals = [c for c in first.layout.children if isinstance(c, dcc.Interval)]
    assert [i.id for i in intervals] == [ids.TICK]  # one timer for the whole document


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"inputs": []}', b'{"output": 3}',
                                  b'{"output": "x.children", "inputs": "nope"}'])
def test_malformed_callback_bodies_get_400_not_500(app, body):
    client = app.server.test_client()
    response = client.post("/_dash-update-component", data=body, content_type="application/json")
    assert response.status_code == 400
