"""Evidence detectors on synthetic poll sequences: generator runs, UPS self-tests, power events."""

from __future__ import annotations

import pytest

from collectors.model import Quality, Reading
from config.load import Site, load_site
from evidence.detectors import EvidenceRecorder, GeneratorCriteria, Nameplate
from evidence.records import GeneratorRun, PowerEvent, UpsSelfTest
from tests.conftest import ROOT

SITE = ROOT / "tests" / "data" / "sites" / "evidence_power.yaml"  # gen-1: 200 kW, start 8 s (simulation)
T = 1_790_000_000.0


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


class Feed:
    """Builds polls (state names resolved through the profile) and feeds them to a recorder."""

    def __init__(self, site: Site, recorder: EvidenceRecorder):
        self.site = site
        self.recorder = recorder
        self.records: list = []

    def poll(self, device: str, t: float, points: dict[str, float | str | None], scenario: str | None = None):
        profile = self.site.profile(self.site.device(device))
        specs = {p.name: p for p in profile.points}
        readings = []
        for point, value in points.items():
            if isinstance(value, str):
                code = next(c for c, s in specs[point].enum.items() if s.name == value)
                readings.append(Reading(device, point, T + t, float(code), text=value, scenario=scenario))
            elif value is None:
                readings.append(Reading(device, point, T + t, None, Quality.MISSING, scenario=scenario))
            else:
                readings.append(Reading(device, point, T + t, float(value), scenario=scenario))
        found = self.recorder.observe(readings)
        self.records += found
        return found

    def genset(self, t: float, state: str, *, mode: str = "auto", rated: bool = False, load_pct: float = 0.0,
               fuel: float = 85.0, mains: bool = True, alarm: str = "inactive", scenario: str | None = None):
        volts = 230.0 if rated else 0.0
        self.poll("gen-1", t, {
            "engine.state": state, "genset.mode": mode, "genset.frequency": 50.0 if rated else 0.0,
            "genset.L1.voltage": volts, "genset.L2.voltage": volts, "genset.L3.voltage": volts,
            "genset.power": load_pct / 100 * 200_000, "fuel.level": fuel,
            "mains.L1.voltage": 230.0 if mains else 0.0, "alarm.fail_to_start": alarm}, scenario)

    def ats(self, t: float, position: str, *, mains: bool = True, duration: float = 0.1,
            scenario: str | None = None):
        self.poll("ats-1", t, {"ats.position": position, "ats.mains_available": "available" if mains else "unavailable",
                               "ats.last_transfer.duration": duration}, scenario)

    def ups(self, t: float, source: str = "normal", *, test: str = "noTestsInitiated", volts: float = 540.0,
            runtime: float = 49.0, charge: float = 100.0, scenario: str | None = None):
        self.poll("ups-a", t, {"output.source": source, "ups.test.result": test, "battery.voltage": volts,
                               "battery.runtime": runtime, "battery.charge": charge}, scenario)


def recorder(site: Site, **kwargs) -> EvidenceRecorder:
    return EvidenceRecorder(site, ":memory:", clock=lambda: T, **kwargs)


def run_test(feed: Feed, *, minutes: float, load_pct: float, on_load: bool = True, start_s: float = 10.0,
             scenario: str | None = None) -> list:
    """Stopped at 0; start signal seen at 10; rated at 10 + start_s; ATS on generator 2 s later; load for
    ``minutes``; then retransfer, 60 s cool-down, stopped. Generator polled every 10 s, ATS every 10 s (+2 s)."""
    mode = "test_on_load" if on_load else "test_off_load"
    feed.genset(0, "stopped")
    feed.ats(2, "mains")
    feed.genset(10, "pre_start", mode=mode, scenario=scenario)
    rated_at = 10 + start_s
    t = 20.0
    load_until = rated_at + 2 + minutes * 60
    while t < load_until:
        rated = t >= rated_at
        loaded = on_load and rated
        feed.genset(t, "running" if rated else "warming_up", mode=mode, rated=rated,
                    load_pct=load_pct if loaded and t > rated_at else 0.0, scenario=scenario)
        feed.ats(t + 2, "generator" if loaded else "mains", scenario=scenario)
        t += 10
    feed.genset(t, "running", mode="auto", rated=True, load_pct=load_pct if on_load else 0.0, scenario=scenario)
    feed.ats(t + 2, "mains", scenario=scenario)
    feed.genset(t + 10, "cooling_down", rated=True, scenario=scenario)
    feed.genset(t + 70, "stopped", fuel=84.0, scenario=scenario)
    feed.genset(t + 80, "stopped", fuel=84.0)
    return [r for r in feed.records if isinstance(r, GeneratorRun)]


def test_monthly_test_on_load_passes(site):
    feed = Feed(site, recorder(site))
    (run,) = run_test(feed, minutes=40, load_pct=60.0)
    assert run.kind == "test_on_load" and run.mode == "test_on_load"
    assert run.start == T + 10 and run.start_s == 10.0 and run.start_resolution_s == 10.0
    assert run.on_load_at == T + 22 and run.time_to_load_s == 12.0 and run.transfer_s == 0.1
    assert run.load_basis == "simulation" and run.rated_kw == 200.0
    assert run.load_pct_mean == pytest.approx(60.0) and run.load_kw_mean == pytest.approx(120.0)
    assert run.longest_at_min_load_s >= 40 * 60 - 20
    assert run.cooldown_s == 60.0  # the controller's cooling_down (t + 10) to stopped (t + 70)
    assert run.fuel_before_pct == 85.0 and run.fuel_after_pct == 84.0
    assert run.passed is True and run.reasons == []
    assert run.criteria["min_load_pct"] == 30.0 and run.criteria["start_limit_s"] == 8.0


def test_short_light_test_fails_with_every_reason(site):
    feed = Feed(site, recorder(site))
    (run,) = run_test(feed, minutes=20, load_pct=25.0)
    assert run.kind == "test_on_load" and run.passed is False
    assert run.load_pct_mean == pytest.approx(25.0)
    assert run.time_at_min_load_s == 0 and run.longest_at_min_load_s == 0
    assert run.reasons == ["mean load 25.0 % of nameplate, below 30 %",
                           "0.0 min at ≥ 30 % of nameplate; needs 30 min unbroken"]


def test_off_load_test_is_classified_and_fails(site):
    feed = Feed(site, recorder(site))
    (run,) = run_test(feed, minutes=35, load_pct=0.0, on_load=False)
    assert run.kind == "test_off_load" and run.on_load_at is None and run.passed is False
    assert run.reasons[0] == "run off load: the monthly test needs the generator on load"


def test_slow_start_fails_beyond_the_poll_spacing(site):
    feed = Feed(site, recorder(site))
    (run,) = run_test(feed, minutes=40, load_pct=60.0, start_s=30.0)
    assert run.start_s == 30.0 and run.passed is False
    assert run.reasons == ["start took 30.0 s to rated voltage and frequency; limit 8 s (+10.0 s poll spacing)"]


def test_configured_nameplate_and_criteria_object_decide(site):
    strict = GeneratorCriteria(min_load_pct=70.0, min_duration_s=600.0, start_tolerance_s=0.0)
    feed = Feed(site, recorder(site, criteria=strict, nameplates={"gen-1": Nameplate(rated_kw=150.0,
                                                                                      start_time_s=15.0)}))
    (run,) = run_test(feed, minutes=20, load_pct=60.0)  # 120 kW = 80 % of 150 kW
    assert run.load_basis == "config" and run.load_pct_mean == pytest.approx(80.0)
    assert run.passed is True and run.criteria["start_limit_s"] == 15.0


def test_fail_to_start_is_a_failed_run_with_its_alarm(site):
    feed = Feed(site, recorder(site))
    feed.genset(0, "stopped")
    feed.genset(10, "pre_start", mode="test_on_load")
    feed.genset(20, "pre_start", mode="test_on_load")
    feed.genset(30, "stopped", mode="test_on_load", alarm="shutdown")
    (run,) = feed.records
    assert run.passed is False and run.start_s is None and run.run_s == 20
    assert run.alarms == [{"point": "alarm.fail_to_start", "state": "shutdown", "severity": "critical",
                           "ts": T + 30}]
    assert run.reasons == ["never reached rated voltage and frequency",
                           "run off load: the monthly test needs the generator on load",
                           "0.0 min at ≥ 30 % of nameplate; needs 30 min unbroken",
                           "alarm alarm.fail_to_start shutdown during the run"]


def mains_failure(feed: Feed, scenario: str | None = None) -> None:
    """Mains fails at 100 (ATS sees it at 101, UPS on battery at 101), generator rated at 110, ATS on
    generator at 113 (transfer 12.6 s), UPS back on its rectifier at 115; mains back at 700, retransfer at 761."""
    feed.ats(1, "mains")
    feed.ups(1)
    feed.genset(0, "stopped")
    feed.genset(95, "stopped")
    feed.ups(101, "battery", volts=500, runtime=40, charge=99, scenario=scenario)
    feed.ats(101, "open", mains=False, scenario=scenario)
    feed.genset(102, "pre_start", mains=False, scenario=scenario)
    feed.ups(105, "battery", volts=495, runtime=38, charge=98, scenario=scenario)
    feed.genset(110, "running", rated=True, mains=False, scenario=scenario)
    feed.ats(113, "generator", mains=False, duration=12.6, scenario=scenario)
    feed.ups(115, "normal", volts=545, runtime=37.5, charge=98, scenario=scenario)
    for t in range(120, 700, 60):
        feed.genset(t, "running", rated=True, mains=False, load_pct=60.0, scenario=scenario)
        feed.ats(t + 3, "generator", mains=False, duration=12.6, scenario=scenario)
        feed.ups(t + 5, "normal", charge=99, scenario=scenario)
    feed.ats(701, "generator", mains=True, duration=12.6, scenario=scenario)
    feed.genset(702, "running", rated=True, load_pct=60.0, scenario=scenario)
    feed.ats(761, "mains", duration=0.1, scenario=scenario)
    feed.genset(762, "cooling_down", rated=True, scenario=scenario)
    for t in range(770, 900, 10):
        feed.ats(t + 1, "mains")
        feed.ups(t + 2)
        feed.genset(t + 3, "stopped" if t > 820 else "cooling_down", rated=t <= 820)


def test_mains_failure_is_one_power_event_with_its_kpis(site):
    feed = Feed(site, recorder(site))
    mains_failure(feed)
    events = [r for r in feed.records if isinstance(r, PowerEvent)]
    assert len(events) == 1
    event = events[0]
    assert event.start == T + 101 and event.end == T + 761 and event.duration_s == 660
    assert event.mains_lost and event.mains_restored_at == T + 701 and event.mains_out_s == 600
    assert event.on_battery_s == 14 and event.lowest_runtime_min == 37.5 and event.lowest_charge_pct == 98
    assert event.generator == "gen-1" and event.generator_rated_s == 9
    assert event.time_to_generator_s == 12 and event.transfer_s == 12.6
    assert event.retransfer_at == T + 761 and event.retransfer_delay_s == 60 and event.retransfer_s == 0.1
    assert event.load_lost is False and event.notes == [] and event.scenario is None
    (run,) = [r for r in feed.records if isinstance(r, GeneratorRun)]
    assert run.kind == "outage" and run.time_to_load_s == 12.0  # from the mains failure (101), not the start
    assert run.start_resolution_s == 8  # rated seen at 110, the poll before at 102
    assert run.passed is True  # 12 s is within the Type 10 limit of 10 s plus the 8 s the polls cannot resolve


def test_outage_with_late_load_fails(site):
    feed = Feed(site, recorder(site, criteria=GeneratorCriteria(start_tolerance_s=0.0)))
    mains_failure(feed)
    (run,) = [r for r in feed.records if isinstance(r, GeneratorRun)]
    assert run.passed is False
    assert run.reasons == ["load on the generator 12.0 s after the mains failure; limit 10 s"]


def test_drill_records_are_kept_apart(site):
    rec = recorder(site)
    feed = Feed(site, rec)
    mains_failure(feed, scenario="mains_failure")
    (event,) = [r for r in feed.records if isinstance(r, PowerEvent)]
    assert event.scenario == "mains_failure"
    assert rec.store.power_events(T, T + 3600) == []
    assert [e["scenario"] for e in rec.store.power_events(T, T + 3600, drills=True)] == ["mains_failure"]
    assert rec.store.generator_runs(T, T + 3600) == []
    assert len(rec.store.generator_runs(T, T + 3600, drills=True)) == 1


def test_rfc1628_self_test_records_result_and_voltage_dip(site):
    feed = Feed(site, recorder(site))
    feed.ups(0)
    feed.ups(2, "battery", test="inProgress", volts=500.0, runtime=47.0, charge=99.6)
    feed.ups(4, "battery", test="inProgress", volts=495.4, runtime=46.0, charge=99.5)
    feed.ups(6, "normal", test="donePass", volts=541.0, runtime=48.5, charge=99.5)
    feed.ups(8, "normal", test="donePass")
    (test,) = feed.records
    assert isinstance(test, UpsSelfTest)
    assert (test.start, test.end, test.duration_s) == (T + 2, T + 6, 4)
    assert test.result == "pass" and test.vendor_result == "donePass" and test.seen_running
    assert test.voltage_before_v == 540.0 and test.voltage_min_v == 495.4
    assert test.voltage_dip_v == pytest.approx(44.6)
    assert test.runtime_before_min == 49.0 and test.runtime_min_min == 46.0 and test.charge_min_pct == 99.5


def test_powernet_failed_self_test(site):
    feed = Feed(site, recorder(site))
    for t, status, result, volts in ((0, "onLine", "ok", 540), (2, "onBatteryTest", "testInProgress", 480),
                                     (4, "onLine", "failed", 530)):
        feed.poll("ups-b", t, {"output.status": status, "ups.test.result": result, "battery.voltage": volts})
    (test,) = feed.records
    assert test.device == "ups-b" and test.result == "fail" and test.vendor_result == "failed"
    assert test.voltage_dip_v == 60


def test_self_test_shorter_than_a_poll_is_seen_by_its_new_result(site):
    feed = Feed(site, recorder(site))
    feed.ups(0, test="donePass")
    feed.ups(60, test="doneError")
    (test,) = feed.records
    assert test.result == "fail" and test.seen_running is False and test.start == test.end == T + 60


def test_self_test_on_battery_is_not_a_power_event(site):
    feed = Feed(site, recorder(site))
    feed.ats(0, "mains")
    feed.ups(0)
    feed.ups(2, "battery", test="inProgress")
    feed.ups(4, "normal", test="donePass")
    for t in range(6, 200, 10):
        feed.ups(t, test="donePass")
    assert [type(r) for r in feed.records] == [UpsSelfTest]


def test_ups_blip_without_mains_loss_is_a_short_event(site):
    feed = Feed(site, recorder(site))
    feed.ats(0, "mains")
    feed.ups(0)
    feed.ups(10, "battery", runtime=45)
    for t in range(20, 120, 10):
        feed.ups(t)
    (event,) = feed.records
    assert event.mains_lost is False and event.on_battery_s == 10 and event.end == T + 20
    assert event.lowest_runtime_min == 45 and event.time_to_generator_s is None


def test_tick_closes_a_run_whose_data_stopped(site):
    rec = recorder(site)
    feed = Feed(site, rec)
    feed.genset(0, "stopped")
    feed.genset(10, "running", mode="manual", rated=True)
    assert rec.tick(T + 500) == []
    (run,) = rec.tick(T + 10 + 901)
    assert run.end == T + 10 and run.passed is False
    assert run.reasons[0].startswith("no data after ")
    assert len(rec.store.generator_runs(T, T + 100)) == 1
