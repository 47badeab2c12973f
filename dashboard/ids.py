"""Component ids of the dashboard, in one place so layout, callbacks and tests agree.

Single components use plain kebab-case strings; repeated tiles use dict ids ``{"type": TILE, "device": id}``
matched with ALL, never callbacks generated in a loop.
"""

PAGE = "page"
TICK = "tick"  # the ONE dcc.Interval of the document: the shell's, every page's callbacks listen to it

# the shell around every page
URL = "url"
PAGE_CONTAINER = "page-container"
NAV = "nav"
NAV_LINK = "nav-link"  # dict id type: {"type": NAV_LINK, "page": name}
BANNER = "status-banner"
PLAYLIST = "playlist"
PLAYLIST_TEXT = "playlist-text"
PLAYLIST_RESUME = "playlist-resume"
PLAYLIST_STATE = "playlist-state"

# pages: ids carry the page's name so pages never collide
WALL_BODY = "wall-body"
POWER_BODY = "power-body"
ROOMS_BODY = "rooms-body"
FIRE_BODY = "fire-body"

SITE_NAME = "site-name"
CLOCK = "header-clock"
UPDATED = "header-updated"

TILES = "tiles"
TILE = "device-tile"  # dict id type: the tile frame (its className carries the state colour)
TILE_BODY = "device-tile-body"  # dict id type: the tile's live contents

TREND = "trend"
TREND_DEVICE = "trend-device"
TREND_POINT = "trend-point"
TREND_RANGE = "trend-range"
TREND_TITLE = "trend-title"
TREND_GRAPH = "trend-graph"
TREND_SHOWN = "trend-shown"  # which series the browser's graph shows, so a refresh can send only new data


def tile(device_id: str) -> dict[str, str]:
    """The dict id of one device's tile frame."""
    return {"type": TILE, "device": device_id}


def tile_body(device_id: str) -> dict[str, str]:
    """The dict id of one device's live tile contents."""
    return {"type": TILE_BODY, "device": device_id}


def nav_link(page: str) -> dict[str, str]:
    """The dict id of a page's navigation link."""
    return {"type": NAV_LINK, "page": page}
