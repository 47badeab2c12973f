"""Durations as operators write them in YAML: ``30s``, ``5m``, ``1h30m``, ``7d`` or a number of seconds."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[dhms])+")


def parse_duration(raw: object) -> float:
    """``"1h30m"`` → 5400.0; plain numbers are seconds; anything else is a ValueError."""
    if isinstance(raw, bool):
        raise ValueError("must be a duration like 30s, 5m, 1h30m, 7d")
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip()
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"must be a duration like 30s, 5m, 1h30m, 7d (got {text!r})")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
