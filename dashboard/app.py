"""The dashboard application factory: ``create_app(sources)`` builds a fresh Dash app, nothing at import."""

from __future__ import annotations

import html
from datetime import tzinfo
from pathlib import Path

import dash

from dashboard import callbacks, layout
from dashboard.data import DashboardSources, page_model

__all__ = ["ASSETS", "MAX_REQUEST_BYTES", "DashboardSources", "create_app"]

ASSETS = Path(__file__).parent / "assets"
MAX_REQUEST_BYTES = 1 << 20  # callback bodies are a few kB; anything near 1 MiB is abuse


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
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.layout = layout.page(model)
    callbacks.register(app, sources, tz)
    return app
