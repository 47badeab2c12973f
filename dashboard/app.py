"""The dashboard application factory: ``create_app(sources)`` builds a fresh Dash app, nothing at import.

Pages are found in ``dashboard/pages/`` (every module defining ``PAGE``) when an app is built, not
registered in Dash's global page registry: tests build many apps side by side.

With accounts (``sources.auth``) the whole Flask server is guarded (``auth.web.install``): every route and
Dash endpoint needs a session, a trusted proxy's user or — for the wall pages only — a kiosk token.
"""

from __future__ import annotations

import html
import importlib
import json
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from pathlib import Path

import dash
import flask
from flask import has_request_context

from alerts.rules import load_rules
from auth import web
from dashboard import callbacks, pages, shell
from dashboard.data import DashboardSources, page_model
from dashboard.live import LiveCache
from dashboard.pages import Page, PageContext

__all__ = ["ASSETS", "MAX_REQUEST_BYTES", "DashboardSources", "create_app", "discover_pages"]

ASSETS = Path(__file__).parent / "assets"
MAX_REQUEST_BYTES = 1 << 20  # callback bodies are a few kB; anything near 1 MiB is abuse

# When a refresh is answered "not signed in" (401) or with the guard's own HTML page (a revoked kiosk
# token: 403 text/html), the tab reloads: a person lands on the login form, a wall screen on "kiosk
# token revoked". A 403 in JSON (a role refusal) is an answer to one click and leaves the page alone.
AUTH_RELOAD_SCRIPT = """<script>(function(){var f=window.fetch;window.fetch=function(){
return f.apply(this,arguments).then(function(r){var t=r.headers.get("Content-Type")||"";
if(r.status===401||(r.status===403&&t.indexOf("text/html")===0)){window.location.reload();}return r;});};})();
</script>"""


def discover_pages(demo: bool) -> list[Page]:
    """Every ``PAGE`` in ``dashboard/pages/`` plus the device overview, by navigation order (demo pages if demo)."""
    found = [callbacks.OVERVIEW]
    for module in pkgutil.iter_modules(pages.__path__):
        page = getattr(importlib.import_module(f"{pages.__name__}.{module.name}"), "PAGE", None)
        if isinstance(page, Page) and (demo or not page.demo_only):
            found.append(page)
    _check_unique(found)
    return sorted(found, key=lambda page: (page.order, page.path))


def _check_unique(found: Iterable[Page]) -> None:
    paths: dict[str, str] = {}
    for page in found:
        if page.path in paths:
            raise ValueError(f"pages {paths[page.path]} and {page.name} both claim {page.path}")
        paths[page.path] = page.name


def create_app(sources: DashboardSources, tz: tzinfo | None = None, *, trusted_proxies: Sequence[str] = (),
               secure_cookies: bool = True, proxy_user_header: str = "X-Forwarded-User") -> dash.Dash:
    """A Dash app showing ``sources.site`` from ``sources.store`` (times in ``tz``, default: local zone).

    ``trusted_proxies``, ``secure_cookies`` and ``proxy_user_header`` only matter with accounts (see
    ``auth.web.install``).
    """
    model = page_model(sources.site)
    app = dash.Dash(
        __name__,
        # Dash puts the title into <title> verbatim; the site name comes from a config file.
        title=html.escape(model.title),
        assets_folder=str(ASSETS),
        serve_locally=True,  # the DC network is offline: every script and style from this server
        update_title=None,  # no "Updating..." flicker in the tab every refresh
        suppress_callback_exceptions=True,  # pages' components exist only while their page is shown
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.server.before_request(_reject_malformed_callback)
    rules = sources.rules if sources.rules is not None else tuple(load_rules())
    ctx = PageContext(sources, tz, LiveCache(sources, rules, tz))
    found = discover_pages(demo=sources.scenario_url is not None)
    if sources.auth is None:
        app.layout = shell.shell(model.site_name, found, model.refresh_ms)
    else:  # built per page load: the header names who is signed in
        app.layout = _layout_for_identity(model.site_name, found, model.refresh_ms)
    wall_outputs = _outputs_of(app, lambda: shell.register(app, ctx, found))
    for page in found:
        outputs = _outputs_of(app, lambda page=page: page.register(app, ctx))
        if page.wall:
            wall_outputs |= outputs
    if sources.auth is not None:
        app.index_string = app.index_string.replace("{%scripts%}", AUTH_RELOAD_SCRIPT + "{%scripts%}")
        web.install(app.server, sources.auth, kiosk_paths=[page.path for page in found if page.wall],
                    kiosk_outputs=wall_outputs, trusted_proxies=trusted_proxies, secure_cookies=secure_cookies,
                    proxy_user_header=proxy_user_header)
    return app


def _layout_for_identity(site_name: str, found: Sequence[Page], refresh_ms: int) -> Callable[[], object]:
    def layout() -> object:
        return shell.shell(site_name, found, refresh_ms, who=web.current_identity() if has_request_context() else None)
    return layout


def _outputs_of(app: dash.Dash, register: Callable[[], object]) -> set[str]:
    """The component ids (dict ids by ``type``) of the callbacks ``register`` adds: what a kiosk may refresh.

    Read from Dash's list of registered callbacks (``"..a.children...b.className.."`` for several outputs),
    so a page's new callback is allowed for a kiosk exactly when the page is a wall page.
    """
    before = len(app._callback_list)
    register()
    found: set[str] = set()
    for callback in app._callback_list[before:]:
        for output in callback["output"].strip(".").split("..."):
            component = output.rsplit(".", 1)[0]
            if component.startswith("{"):
                component = str(json.loads(component).get("type"))
            found.add(component)
    return found


def _reject_malformed_callback():
    """Answer 400 to a callback body that is not Dash's shape, instead of letting Dash fail with a 500."""
    if flask.request.method != "POST" or not flask.request.path.endswith("/_dash-update-component"):
        return None
    body = flask.request.get_json(silent=True)
    shape_ok = (isinstance(body, dict) and isinstance(body.get("output"), str)
                and isinstance(body.get("inputs", []), list) and isinstance(body.get("state", []), list))
    if not shape_ok:
        return flask.jsonify(error="malformed callback request"), 400
    return None
