"""The evidence detectors against the real simulator: SNMP and Modbus on loopback, the real collector.

SiteSimulator (tests/data/sites/evidence_*.yaml, ports 30500-30599) → Collector → EvidenceRecorder.
The collector stamps readings with the SIMULATED clock (epoch at start + plant seconds), so every
duration in a record is in plant seconds however fast the clock runs: ×4 around the start and the
transfers (a 0.5 s poll sees 2 simulated seconds), ×10 around the retransfer and cool-down, ×200 in
between. Readings are tagged with the running scenario, so every record here is a drill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from collectors.scheduler import Collector
from config.load import load_site
from evidence.detectors import EvidenceRecorder
from evidence.records import GeneratorRun, PowerEvent, Record, UpsSelfTest
from facwatch.runtime import scenario_tagging
from simulators.scenario import ScenarioRunner
from simulators.site import SiteSimulator
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITES = ROOT / "tests" / "data" / "sites"
SLOW, MEDIUM, FAST = 4.0, 10.0, 200.0
WALL_LIMIT_S = 150.0

# (from, to, time scale) in scenario seconds; FAST elsewhere. Windows open ≥ 20 s early: at ×200 one
# 0.1 s tick moves the plant 20 s.
MONTHLY_WINDOWS = ((30, 100, SLOW), (2420, 2580, MEDIUM))  # start at 1m, end at 41m, 60 s cool-down
SHORT_WINDOWS = ((30, 100, SLOW), (1220, 1380, MEDIUM))  # start at 1m, end at 21m
MAINS_WINDOWS = ((10, 60, SLOW), (1200, 1420, MEDIUM))  # fails at 30s, returns at 20m30s, 60 s retransfer delay


async def drive(sim: SiteSimulator, started_at: float, windows: Sequence[tuple[float, float, float]]) -> None:
    """Set the clock's pace from where the scenario is."""
    while True:
        elapsed = sim.plant.clock_s - started_at
        sim.time_scale = next((scale for low, high, scale in windows if low <= elapsed < high), FAST)
        await asyncio.sleep(0.02)


async def run_scenario(tmp_path, site_file: str, scenario: str, windows, wanted: Sequence[type]) -> list[Record]:
    """Run a shipped scenario against the simulated site until the wanted records (a type twice: two) are stored."""
    site = load_site(SITES / site_file)
    records: list[Record] = []
    async with SiteSimulator(site, seed=11, tick_s=0.1, time_scale=SLOW) as sim:
        recorder = EvidenceRecorder(site, tmp_path / "facwatch.db", clock=lambda: sim.plant.power.epoch_now_s)
        sim.scenarios = ScenarioRunner(sim)

        def sink(readings):
            records.extend(recorder.observe(readings))

        async with Collector(site, scenario_tagging(sink, sim), clock=lambda: sim.plant.power.epoch_now_s):
            await asyncio.sleep(1.5)  # every device polled: the detectors know the plant at rest
            started_at = sim.plant.clock_s
            sim.scenarios.start(scenario)
            driver = asyncio.create_task(drive(sim, started_at, windows))
            deadline = time.monotonic() + WALL_LIMIT_S
            while not all(sum(isinstance(r, kind) for r in records) >= wanted.count(kind) for kind in wanted):
                assert time.monotonic() < deadline, f"no {wanted} after {WALL_LIMIT_S} s: {records}"
                await asyncio.sleep(0.2)
            driver.cancel()
            await asyncio.gather(driver, return_exceptions=True)
        await sim.scenarios.stop()
    stored = recorder.store
    assert stored.generator_runs(0, 2e9) == [] and stored.power_events(0, 2e9) == []  # drills only
    recorder.close()
    return records


def report(records: list[Record]) -> None:
    for record in records:
        print(record)  # the measured figures, for the record (pytest -s)


async def test_monthly_test_is_a_passing_test_run_record(tmp_path):
    records = await run_scenario(tmp_path, "evidence_power.yaml", "generator_monthly_test", MONTHLY_WINDOWS,
                                 [GeneratorRun])
    report(records)
    (run,) = [r for r in records if isinstance(r, GeneratorRun)]
    assert run.scenario == "generator_monthly_test" and run.kind == "test_on_load" and run.mode == "test_on_load"
    assert run.passed is True, run.reasons
    assert run.start_s is not None and run.start_s <= 8 + run.start_resolution_s
    assert run.transfer_s == pytest.approx(0.1)  # open transition, mains healthy: the contacts' 0.1 s
    assert run.load_basis == "simulation" and 50 < run.load_pct_mean < 70  # ≈ 118 kW of 200 kW
    assert 37 * 60 <= run.longest_at_min_load_s <= 41 * 60
    assert 40 * 60 <= run.run_s <= 43 * 60
    assert 50 <= run.cooldown_s <= 75  # 60 s configured, ± a ×10 poll
    assert run.fuel_after_pct <= run.fuel_before_pct and run.alarms == []
    assert not [r for r in records if isinstance(r, PowerEvent)]  # a test on load is not a power event


async def test_short_light_test_is_a_failing_record_with_reasons(tmp_path):
    records = await run_scenario(tmp_path, "evidence_oversized.yaml", "generator_short_test", SHORT_WINDOWS,
                                 [GeneratorRun])
    report(records)
    (run,) = [r for r in records if isinstance(r, GeneratorRun)]
    assert run.scenario == "generator_short_test" and run.kind == "test_on_load"
    assert 22 < run.load_pct_mean < 28  # ≈ 118 kW of 470 kW
    assert 19 * 60 <= run.time_on_load_s <= 21 * 60 and run.longest_at_min_load_s == 0
    assert run.passed is False
    assert run.reasons == [f"mean load {run.load_pct_mean:.1f} % of nameplate, below 30 %",
                           "0.0 min at ≥ 30 % of nameplate; needs 30 min unbroken"]


async def test_mains_failure_is_one_power_event_with_its_kpis(tmp_path):
    records = await run_scenario(tmp_path, "evidence_power.yaml", "mains_failure", MAINS_WINDOWS,
                                 [PowerEvent, GeneratorRun])
    report(records)
    (event,) = [r for r in records if isinstance(r, PowerEvent)]
    assert event.scenario == "mains_failure" and event.mains_lost and not event.load_lost
    assert 1190 <= event.mains_out_s <= 1210  # 20 min; the failure seen at ×4 (2 s polls), the return at ×10 (5 s)
    assert set(event.ups) == {"ups-a", "ups-b"}
    assert 6 <= event.on_battery_s <= 14  # start 8 s + transfer delay 2 s, ± a ×4 poll (2 s)
    assert 5 <= event.generator_rated_s <= 11 and 7 <= event.time_to_generator_s <= 13  # 8 s, 10 s ± 2 s polls
    assert 9 <= event.transfer_s <= 10.5  # the ATS: load terminals dead from the failure to the generator closing
    assert 0 < event.lowest_runtime_min < 60 and event.lowest_charge_pct < 100
    assert 50 <= event.retransfer_delay_s <= 70 and event.retransfer_s == pytest.approx(0.1)  # 60 s ± 5 s polls
    (run,) = [r for r in records if isinstance(r, GeneratorRun)]
    assert run.kind == "outage" and run.passed is True, run.reasons


async def test_ups_self_test_is_recorded_for_each_ups_and_is_no_power_event(tmp_path):
    windows = ((0, 60, SLOW),)  # the 10 s tests start at 30 s
    records = await run_scenario(tmp_path, "evidence_power.yaml", "ups_self_test", windows,
                                 [UpsSelfTest, UpsSelfTest])
    report(records)
    tests = sorted((r for r in records if isinstance(r, UpsSelfTest)), key=lambda r: r.device)
    assert [(t.device, t.result, t.vendor_result) for t in tests] == [("ups-a", "pass", "donePass"),
                                                                        ("ups-b", "pass", "ok")]
    for test in tests:
        assert test.scenario == "ups_self_test" and test.seen_running
        assert 8 <= test.duration_s <= 14 and test.voltage_dip_v > 20  # float 540 V → ≈ 495 V on battery
    assert not [r for r in records if isinstance(r, PowerEvent)]
