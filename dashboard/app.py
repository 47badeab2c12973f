"""The dashboard application factory: ``create_app(sources)`` builds a fresh Dash app, nothing at import.

Pages are found in ``dashboard/pages/`` (every module defining ``PAGE``) when an app is built, not
registered in Dash's global page registry: tests build many apps side by side.
"""

from __future__ import annotations

import html
import importlib
import pkgutil
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path

import dash

from alerts.rules import load_rules
from dashboard import callbacks, pages, shell
from dashboard.data import DashboardSources, page_model
from dashboard.live import LiveCache
from dashboard.pages import Page, PageContext

__all__ = ["ASSETS", "MAX_REQUEST_BYTES", "DashboardSources", "create_app", "discover_pages"]

ASSETS = Path(__file__).parent / "assets"
MAX_REQUEST_BYTES = 1 << 20  # callback bodies are a few kB; anything near 1 MiB is abuse


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


def create_app(sources: DashboardSources, tz: tzinfo | None = None) -> dash.Dash:
    """A Dash app showing ``sources.site`` from ``sources.store`` (times in ``tz``, default: local zone)."""
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
    rules = sources.rules if sources.rules is not None else tuple(load_rules())
    ctx = PageContext(sources, tz, LiveCache(sources, rules, tz))
    found = discover_pages(demo=sources.scenario_url is not None)
    app.layout = shell.shell(model.site_name, found, model.refresh_ms)
    shell.register(app, ctx, found)
    for page in found:
        page.register(app, ctx)
    return app
