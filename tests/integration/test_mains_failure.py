"""The shipped mains_failure scenario, accelerated, through the real pipeline into SQLite.

Simulator (SNMP + Modbus on loopback) → collector → writer → SQLite; the test then reads the stored
readings and checks the documented sequence: UPS on battery within one poll, generator at rated
voltage and frequency within its start time, ATS on generator, UPS back on its rectifier, and after
the utility returns: retransfer after the retransfer delay, cool-down, stop. The clock runs ×4 around
the transitions (a 0.5 s poll sees 2 simulated seconds) and ×200 through the 20 minutes on generator.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from collectors.scheduler import Collector
from config.load import load_site
from facwatch.runtime import ReadingWriter, scenario_tagging
from simulators.scenario import ScenarioRunner
from simulators.site import SiteSimulator
from storage.sqlite import SqliteStore
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECRETS = ROOT / "config" / "sites" / "demo-secrets"
POLL_S, SLOW, FAST = 0.5, 4.0, 200.0
START_TIME_S, RETRANSFER_S, COOLDOWN_S = 8.0, 60.0, 60.0


def power_site(tmp_path: Path):
    (tmp_path / "site.yaml").write_text(f"""
site: {{id: t, name: T}}
rooms: [{{id: plant, name: Plant}}, {{id: dh1, name: Hall}}]
credentials:
  v3: {{type: snmp_v3, user: facwatch, auth_protocol: sha256, priv_protocol: aes128,
        auth_key: {{file: {SECRETS / 'snmp-auth-key'}}}, priv_key: {{file: {SECRETS / 'snmp-priv-key'}}}}}
simulation: {{snmp_credentials: [v3], control: '127.0.0.1:28399'}}
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: plant, host: 127.0.0.1, port: 28361,
      credential: v3, poll_interval_s: {POLL_S}, simulation: {{rated_power_w: 80000, load_fraction: 0.55}}}}
  - {{id: ups-b, class: ups, profile: ups/apc_powernet, room: plant, host: 127.0.0.1, port: 28362,
      credential: v3, poll_interval_s: {POLL_S}, simulation: {{rated_power_w: 80000, load_fraction: 0.5}}}}
  - {{id: gen-1, class: genset, profile: genset/dse_gencomm, room: plant, host: 127.0.0.1, port: 28330,
      poll_interval_s: {POLL_S}, simulation: {{rated_kw: 200, start_time_s: {START_TIME_S},
      cooldown_s: {COOLDOWN_S}}}}}
  - {{id: ats-1, class: ats, profile: ats/facwatch_ats, room: plant, host: 127.0.0.1, port: 28331,
      poll_interval_s: {POLL_S}, simulation: {{transfer_delay_s: 2, retransfer_delay_s: {RETRANSFER_S}}}}}
""")
    return load_site(tmp_path / "site.yaml")


class Timeline:
    """Runs the clock slow around transitions and fast in between; remembers when the utility flipped."""

    def __init__(self, sim: SiteSimulator):
        self.sim = sim
        self.utility_lost_wall: float | None = None
        self.utility_back_wall: float | None = None

    async def drive(self) -> None:
        power = self.sim.plant.power
        while True:
            clock = self.sim.plant.clock_s
            on_generator_long = self.utility_lost_wall is not None and 80 < clock < 1215
            self.sim.time_scale = FAST if on_generator_long else SLOW
            if not power.utility_available and self.utility_lost_wall is None:
                self.utility_lost_wall = time.time()
            if power.utility_available and self.utility_lost_wall and self.utility_back_wall is None:
                self.utility_back_wall = time.time()
            await asyncio.sleep(0.02)


def states(store: SqliteStore, device: str, point: str, start: float, end: float) -> list[tuple[float, str]]:
    """(ts, state name) of every stored sample of a state point in [start, end)."""
    rows = store._reader().execute(  # the test reads raw samples, not downsampled buckets
        "SELECT s.ts_ms, s.text FROM samples s JOIN series r ON r.id = s.series_id "
        "WHERE r.device = ? AND r.point = ? AND s.ts_ms >= ? AND s.ts_ms < ? ORDER BY s.ts_ms",
        (device, point, int(start * 1000), int(end * 1000))).fetchall()
    return [(ts / 1000, text) for ts, text in rows]


def values(store: SqliteStore, device: str, point: str, start: float, end: float) -> list[tuple[float, float]]:
    rows = store._reader().execute(
        "SELECT s.ts_ms, s.value FROM samples s JOIN series r ON r.id = s.series_id "
        "WHERE r.device = ? AND r.point = ? AND s.ts_ms >= ? AND s.ts_ms < ? AND s.value IS NOT NULL "
        "ORDER BY s.ts_ms", (device, point, int(start * 1000), int(end * 1000))).fetchall()
    return [(ts / 1000, value) for ts, value in rows]


def first(samples, predicate) -> float:
    return next(ts for ts, value in samples if predicate(value))


async def test_mains_failure_sequence_is_in_the_stored_readings(tmp_path):
    site = power_site(tmp_path)
    store = SqliteStore(tmp_path / "facwatch.db")
    writer = ReadingWriter(store, flush_s=0.2)
    async with SiteSimulator(site, seed=7, tick_s=0.25, time_scale=SLOW) as sim:
        sim.scenarios = ScenarioRunner(sim)
        timeline = Timeline(sim)
        driver = asyncio.create_task(timeline.drive())
        async with Collector(site, scenario_tagging(writer.put, sim)):
            t0 = time.time()
            sim.scenarios.start("mains_failure")
            give_up = time.monotonic() + 300  # fail, never hang, if the plant clock stops advancing
            while sim.plant.clock_s < 1230 + RETRANSFER_S + COOLDOWN_S + 20:
                assert time.monotonic() < give_up, f"plant clock stuck at {sim.plant.clock_s:.0f} s"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2 * POLL_S)
        driver.cancel()
        await sim.scenarios.stop()
    writer.close()
    lost, back, end = timeline.utility_lost_wall, timeline.utility_back_wall, time.time()
    assert lost and back

    # UPS on battery within one poll of the failure (0.5 s poll; + writer/jitter slack)
    on_battery = first(states(store, "ups-a", "output.source", lost, back), lambda s: s == "battery")
    assert on_battery - lost <= POLL_S + 0.3
    assert first(states(store, "ups-b", "output.status", lost, back), lambda s: s == "onBattery") - lost <= POLL_S + 0.3

    # generator at rated voltage and frequency within its start time (in simulated seconds, + one poll)
    hz = values(store, "gen-1", "genset.frequency", lost, back)
    volts = values(store, "gen-1", "genset.L1.voltage", lost, back)
    rated_at = max(first(hz, lambda v: abs(v - 50) <= 1.0), first(volts, lambda v: abs(v - 230) <= 23))
    assert (rated_at - lost) * SLOW <= START_TIME_S + POLL_S * SLOW + 1

    # ATS on generator, then the UPS back on its rectifier while the utility is still down
    on_generator = first(states(store, "ats-1", "ats.position", lost, back), lambda s: s == "generator")
    assert on_generator > rated_at - POLL_S
    back_on_rectifier = first(states(store, "ups-a", "output.source", on_generator, back), lambda s: s == "normal")
    assert back_on_rectifier < back

    # on battery the runtime estimate falls (APC reports it in TimeTicks, fine enough to see it move)
    runtime = [v for ts, v in values(store, "ups-b", "battery.runtime", on_battery, on_generator)]
    assert len(runtime) >= 2 and runtime[-1] < runtime[0]

    # utility back: retransfer only after the retransfer delay, then cool-down, then stopped
    retransfer = first(states(store, "ats-1", "ats.position", back, end), lambda s: s == "mains")
    assert (retransfer - back) * SLOW >= RETRANSFER_S - POLL_S * SLOW
    engine = states(store, "gen-1", "engine.state", retransfer, end)
    cooling = first(engine, lambda s: s == "cooling_down")
    assert first(engine[engine.index((cooling, "cooling_down")):], lambda s: s == "stopped") > cooling

    # every reading taken meanwhile carries the scenario tag (kept out of real evidence)
    untagged = store._reader().execute(
        "SELECT count(*) FROM samples WHERE ts_ms >= ? AND ts_ms < ? AND scenario IS NULL",
        (int((t0 + 1) * 1000), int(back * 1000))).fetchone()[0]
    assert untagged == 0
    store.close()
