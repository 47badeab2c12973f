"""The kiosk playlist: ``/wall?rotate=30`` cycles the wall pages, and pauses on a new critical alert.

A pure state machine, stepped every tick by the shell with the browser's own state (a ``dcc.Store``):
it pauses on a firing critical alert nobody has acknowledged yet and that this screen has not shown
before, jumps to the first wall page (the one with the alert list), and resumes when the alert is
acknowledged or resolved, or when someone clicks Resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROTATE_MIN_S, ROTATE_MAX_S = 5, 3600


@dataclass(frozen=True, slots=True)
class PlaylistStep:
    """What the shell does this tick: maybe navigate, keep the new state, show a line of text."""

    navigate: str | None
    state: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    paused: bool = False


def rotate_seconds(query: Mapping[str, str]) -> int | None:
    """The rotation period asked for in the URL (``rotate=30``), clamped to 5 s … 1 h; None when absent or bad."""
    raw = query.get("rotate")
    if raw is None or not raw.strip().isdigit():
        return None
    return max(ROTATE_MIN_S, min(ROTATE_MAX_S, int(raw)))


def step(state: Mapping[str, Any] | None, *, now: float, path: str, query: Mapping[str, str],
         pages: Sequence[tuple[str, str]], critical: Sequence[tuple[str, str]], resume: bool = False) -> PlaylistStep:
    """One tick of the playlist over ``pages`` ((path, title) of the wall pages, in playlist order).

    ``critical`` holds (fingerprint, summary) of firing critical alerts not acknowledged yet.
    """
    paths = [p for p, _ in pages]
    period = rotate_seconds(query)
    if period is None or path not in paths:
        return PlaylistStep(None)
    state = dict(state or {})
    active = {fp: summary for fp, summary in critical}
    # On a screen's first tick every existing alert counts as seen: only new arrivals pause the playlist.
    known = set(state.get("known", active))
    shown_at = float(state.get("shown_at", now)) if state.get("path") == path else now
    paused, paused_text = state.get("paused"), str(state.get("paused_text", ""))
    if paused and (resume or paused not in active):
        paused, shown_at = None, now
    fresh = [fp for fp in active if fp not in known]
    navigate = None
    if fresh:
        paused, paused_text, shown_at = fresh[0], active[fresh[0]], now
        navigate = paths[0] if path != paths[0] else None
    elif not paused and now - shown_at >= period:
        navigate, shown_at = paths[(paths.index(path) + 1) % len(paths)], now
    current = navigate or path
    new_state = {"path": current, "shown_at": shown_at, "paused": paused, "paused_text": paused_text,
                 "known": sorted(active)}
    if paused:
        text = f"PLAYLIST PAUSED — new critical alert: {paused_text} — resumes when acknowledged, or press Resume"
        return PlaylistStep(navigate, new_state, text, True)
    following = pages[(paths.index(current) + 1) % len(paths)][1]
    remaining = max(0, round(period - (now - shown_at)))
    return PlaylistStep(navigate, new_state, f"PLAYLIST every {period} s · next: {following} in {remaining} s")
