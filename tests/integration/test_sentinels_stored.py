"""Sentinels and garbage on the wire end up in the store as missing/invalid, never as numbers."""

from __future__ import annotations

import asyncio

import pytest

from collectors.model import Quality
from collectors.scheduler import Collector
from config.load import load_site
from facwatch.runtime import ReadingWriter
from simulators.site import SiteSimulator
from storage.sqlite import SqliteStore

pytestmark = pytest.mark.integration


def site_with_sensor_and_genset(tmp_path):
    (tmp_path / "site.yaml").write_text("""
site: {id: t, name: T}
rooms: [{id: r, name: R}]
simulation: {control: '127.0.0.1:28499'}
devices:
  - {id: th, class: thsensor, profile: thsensor/generic_xymd02, room: r, host: 127.0.0.1, port: 28420,
     poll_interval_s: 0.5}
  - {id: gen, class: genset, profile: genset/dse_gencomm, room: r, host: 127.0.0.1, port: 28430,
     poll_interval_s: 0.5}
""")
    return load_site(tmp_path / "site.yaml")


async def latest_after(store: SqliteStore, device: str, point: str, after: float):
    for _ in range(100):
        reading = next((r for r in store.latest([device]) if r.point == point), None)
        if reading is not None and reading.ts > after:
            return reading
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new {device} {point} reading")


@pytest.mark.parametrize(("device", "point", "raw", "quality"), [
    ("th", "ambient.temperature", 0x7FFF, Quality.MISSING),   # transmitter "no reading"
    ("th", "ambient.humidity", 0xFFFF, Quality.MISSING),
    ("th", "ambient.temperature", 0x7FFE, Quality.INVALID),   # 3276.6 degC: impossible, not a reading
    ("gen", "engine.oil_pressure", 0xFFFF, Quality.MISSING),  # GenComm "unimplemented"
    ("gen", "engine.coolant_temperature", 0x7FFC, Quality.MISSING),  # GenComm s16 "transducer fault"
])
async def test_sentinel_on_the_wire_is_stored_without_a_value(tmp_path, device, point, raw, quality):
    site = site_with_sensor_and_genset(tmp_path)
    store = SqliteStore(tmp_path / "facwatch.db")
    writer = ReadingWriter(store, flush_s=0.1)
    async with SiteSimulator(site, seed=1, tick_s=0.5) as sim, Collector(site, writer.put):
        good = await latest_after(store, device, point, 0)
        assert good.quality is Quality.GOOD and good.value is not None
        sim.set_override(device, point, raw, raw=True)
        await sim.publish()
        changed = await latest_after(store, device, point, good.ts + 1.0)
        sim.clear_override(device, point)
        await sim.publish()
        recovered = await latest_after(store, device, point, changed.ts + 1.0)
    writer.close()
    assert (changed.quality, changed.value) == (quality, None)
    assert recovered.quality is Quality.GOOD and recovered.value is not None
    numbers = store._reader().execute(
        "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id WHERE r.device = ? AND r.point = ? "
        "AND s.quality != 0 AND s.value IS NOT NULL", (device, point)).fetchone()[0]
    assert numbers == 0
    store.close()
