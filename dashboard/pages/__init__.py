"""The dashboard's pages: each module defines one ``Page`` (a path, a layout builder and its callbacks).

``create_app`` finds every module in this package that defines ``PAGE``, routes its path to its layout
with one ``dcc.Location`` and lets it register its own callbacks once, against the shared
``PageContext`` (sources, time zone, the per-tick cache).
Component ids are prefixed with the page's name so pages never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

import dash
from dash.development.base_component import Component

from dashboard.data import DashboardSources, TickCache


@dataclass(frozen=True)
class PageContext:
    """What every page's layout and callbacks may use: the sources, the display zone, the shared cache."""

    sources: DashboardSources
    tz: tzinfo | None
    cache: TickCache


@dataclass(frozen=True)
class Page:
    """One page: ``layout(ctx, query)`` builds it on navigation; ``register(app, ctx)`` wires its callbacks.

    ``query`` is the URL's query parameters (e.g. ``{"device": "dh1-ups-a"}`` for /device?device=...).
    ``wall`` pages take part in the kiosk playlist; ``demo_only`` pages exist only when simulating.
    """

    name: str
    path: str
    title: str
    layout: Callable[[PageContext, dict[str, str]], Component]
    register: Callable[[dash.Dash, PageContext], None]
    order: int = 100  # position in the navigation bar
    wall: bool = False
    demo_only: bool = False
