import re

from dash import dcc, html

from collectors.model import Reading
from dashboard import ids, layout
from dashboard.data import page_model, tile_view

T0 = 1_700_000_000.0
HOSTILE = '<img src=x onerror=alert(1)> [x](javascript:alert(1))'


def walk(node):
    """Every component in a tree, depth first."""
    if isinstance(node, list | tuple):
        for child in node:
            yield from walk(child)
    elif hasattr(node, "to_plotly_json"):
        yield node
        yield from walk(getattr(node, "children", None))


def test_ids_are_unique_kebab_case_constants():
    values = [v for k, v in vars(ids).items() if k.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", v) for v in values)
    assert ids.tile("d") == {"type": ids.TILE, "device": "d"}


def test_overview_has_a_tile_per_device_and_no_timer_of_its_own(demo_site):
    components = list(walk(layout.overview(page_model(demo_site))))
    assert not [c for c in components if isinstance(c, dcc.Interval)]  # the shell's one timer drives it
    tiles = [c.id["device"] for c in components if isinstance(c.id if hasattr(c, "id") else None, dict)
             and c.id["type"] == ids.TILE]
    assert tiles == ["dh1-ups-a", "dh1-rack-a01-inlet", "dh1-rack-a02-inlet"]


def test_hostile_names_are_plain_text_children(site_factory):
    site = site_factory([{"id": "evil", "name": HOSTILE}], name=HOSTILE,
                        rooms=[{"id": "dh1", "name": HOSTILE}])
    view = tile_view(site, site.device("evil"), [Reading("evil", "ambient.temperature", T0, 21.4)], T0)
    tree = [layout.overview(page_model(site)), layout.tile_body(view)]
    components = list(walk(tree))
    assert HOSTILE in [getattr(c, "children", None) for c in components]  # the tile label, verbatim, as text
    assert not any(isinstance(c, dcc.Markdown | html.A | html.Iframe) for c in components)
    assert not any("dangerously_allow_html" in c.to_plotly_json()["props"] for c in components)


def test_values_carry_status_classes_and_markers(demo_site):
    view = tile_view(demo_site, demo_site.device("dh1-rack-a01-inlet"), [
        Reading("dh1-rack-a01-inlet", "ambient.temperature", T0, None, "missing")], T0)
    dt, dd = layout.value_cell(view.values[0]).children
    assert dt.children == "ambient temperature"
    assert dd.className == "fw-value fw-value--missing"
    assert [part.children for part in dd.children] == ["—", "missing"]  # no unit next to a dash
