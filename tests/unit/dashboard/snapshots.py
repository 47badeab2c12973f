"""Build a dashboard Snapshot from plain readings, for the view-model tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC

from collectors.model import Reading
from config.load import Site
from dashboard.live import Snapshot
from tests.unit.dashboard.plant_readings import healthy_readings

T0 = 1_700_000_000.0


def snapshot(site: Site, rules, readings: Iterable[Reading] | None = None, *, now: float = T0,
             overrides: Mapping[tuple[str, str], float | None] | None = None, alerts=None, heartbeats=None,
             alerts_error: bool = False) -> Snapshot:
    """A snapshot of a healthy plant at ``now`` (or of ``readings``), with some points overridden."""
    found = list(healthy_readings(site, now - 1) if readings is None else readings)
    found += [Reading(d, p, now - 1, v) for (d, p), v in (overrides or {}).items()]
    by_device: dict[str, dict[str, Reading]] = {}
    for reading in found:
        by_device.setdefault(reading.device, {})[reading.point] = reading
    return Snapshot(site, now, tuple(rules), by_device, alerts=alerts, heartbeats=heartbeats,
                    alerts_error=alerts_error, tz=UTC)
