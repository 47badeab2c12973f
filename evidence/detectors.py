"""Evidence detectors on the reading stream: generator runs, UPS self-tests and power events.

They run in the collector process beside the alert engine and see every poll as it arrives
(``EvidenceRecorder.observe``); a finished run, test or incident becomes one record in the evidence
tables (``evidence.records``). Every figure comes from polls, so it is as fine as the poll spacing;
the records say how fine where it matters (``start_resolution_s``).

Points used (profile names): genset ``engine.state`` (``engine.speed`` when the controller lacks it),
``genset.mode``, ``genset.frequency``, ``genset.L1/L2/L3.voltage``, ``genset.power``, ``genset.load``,
``fuel.level``, ``mains.L1.voltage``, ``alarm.*``; ATS ``ats.position``, ``ats.mains_available``,
``ats.last_transfer.duration``; UPS ``output.source`` (RFC 1628) / ``output.status`` (PowerNet),
``ups.test.result``, ``battery.voltage``, ``battery.runtime``, ``battery.charge``.
A poll tagged with a scenario makes the whole record a drill (``scenario`` set).

Runs, tests and incidents in progress are saved beside the records (``evidence_detector_state``) and
continue when facwatch restarts; the record then says so in its ``notes``. A restart gap is treated as
a data gap: longer than ``stale_after_s`` closes the run ("no data after …"), shorter continues it
without crediting the gap as time on load.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from collectors.model import EnumState, Quality, Reading, Severity
from config.load import Site
from evidence.detector_state import StateError, dataclass_from, fits, known_only, mapping
from evidence.records import EvidenceStore, GeneratorRun, PowerEvent, Record, UpsSelfTest

log = logging.getLogger(__name__)

NFPA110_TYPE10_S = 10.0  # NFPA 110 Type 10: the load on the emergency source within 10 s (REFERENCE.md §7.1)
STOPPED_STATES = frozenset({"stopped", "stopped_5"})
RUNNING_RPM = 100.0  # controllers without engine.state: rpm > 100 means running (Victron's fallback)
TEST_RUNNING = frozenset({"inProgress", "testInProgress"})  # RFC 1628 / PowerNet
TEST_RESULTS = {"donePass": "pass", "ok": "pass", "doneWarning": "warning", "doneError": "fail", "failed": "fail",
                "aborted": "aborted", "invalidTest": "aborted"}
ON_BATTERY = frozenset({"battery", "onBattery"})  # output.source (RFC 1628), output.status (PowerNet)
ON_BATTERY_TEST = "onBatteryTest"
OUTPUT_OFF = frozenset({"none", "off"})
PHASE_VOLTAGES = ("genset.L1.voltage", "genset.L2.voltage", "genset.L3.voltage")


@dataclass(frozen=True, slots=True)
class Nameplate:
    """What a generator is rated for: kW at the nameplate and the start time it must meet."""

    rated_kw: float | None = None
    start_time_s: float | None = None


@dataclass(frozen=True, slots=True)
class GeneratorCriteria:
    """Pass/fail criteria for a generator run; the defaults are NFPA 110 §8.4.2 monthly (REFERENCE.md §7.1).

    A test passes with ``min_duration_s`` unbroken at ``min_load_pct`` of nameplate or more, a start
    within the nameplate start time (else ``max_start_s``) and no shutdown alarm; a run in an outage
    must also have the load on the generator within ``max_time_to_load_s`` of the mains failure.
    Poll-based times are allowed the poll spacing around them (``start_tolerance_s=None``).
    """

    min_load_pct: float = 30.0
    min_duration_s: float = 1800.0
    max_start_s: float = NFPA110_TYPE10_S  # when the nameplate gives no start time
    max_time_to_load_s: float = NFPA110_TYPE10_S
    start_tolerance_s: float | None = None  # None: the measured poll spacing
    nominal_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    voltage_tolerance: float = 0.10  # the ATS accepts ±10 % V and ±2 % Hz (simulators/devices/ats.py)
    frequency_tolerance: float = 0.02
    max_hold_s: float = 300.0  # a poll's value counts for at most this long when the next one is late
    stale_after_s: float = 900.0  # tick(): an open run or incident with no data for this long is closed
    settle_s: float = 60.0  # a power event ends once everything has been normal for this long
    fail_on: tuple[str, ...] = ("critical",)  # alarm severities during the run that fail it


class PlantView:
    """The latest reading of every point, with the site's devices by class and their enum severities."""

    def __init__(self, site: Site):
        self.site = site
        self.latest: dict[tuple[str, str], Reading] = {}
        self.by_class: dict[str, list[str]] = {}
        self.enums: dict[str, dict[str, Mapping[int, EnumState]]] = {}
        for device in site.devices:
            self.by_class.setdefault(device.device_class, []).append(device.id)
            self.enums[device.id] = {p.name: p.enum for p in site.profile(device).points if p.enum}

    def seen(self, device: str, point: str) -> bool:
        """True if the point has reported since facwatch started, whatever its quality."""
        return (device, point) in self.latest

    def state(self, device: str, point: str) -> str | None:
        """The state name of a GOOD state reading, else None."""
        reading = self.latest.get((device, point))
        return reading.text if reading is not None and reading.quality is Quality.GOOD else None

    def value(self, device: str, point: str) -> float | None:
        """The value of a GOOD reading, else None."""
        reading = self.latest.get((device, point))
        return reading.value if reading is not None and reading.quality is Quality.GOOD else None

    def severity(self, device: str, point: str) -> Severity | None:
        """The profile severity of a state point's present state."""
        value = self.value(device, point)
        state = self.enums.get(device, {}).get(point, {}).get(int(value)) if value is not None else None
        return state.severity if state is not None else None

    def devices(self, device_class: str) -> list[str]:
        """Ids of the site's devices of one class."""
        return self.by_class.get(device_class, [])

    def ats(self) -> str | None:
        """The site's (first) transfer switch."""
        return next(iter(self.devices("ats")), None)

    def mains_ok(self, criteria: GeneratorCriteria) -> bool | None:
        """Is the utility present? The ATS says so first, else a genset's mains sensing; None if unknown."""
        ats = self.ats()
        available = self.state(ats, "ats.mains_available") if ats else None
        if available is not None:
            return available == "available"
        for genset in self.devices("genset"):
            volts = self.value(genset, "mains.L1.voltage")
            if volts is not None:
                return volts >= 0.5 * criteria.nominal_voltage_v
        return None

    def ups_self_testing(self, ups: str) -> bool:
        """True while a UPS reports a self-test running (it is on battery on purpose)."""
        return self.state(ups, "ups.test.result") in TEST_RUNNING or self.state(ups, "output.status") == ON_BATTERY_TEST

    def ups_on_battery(self, ups: str) -> bool:
        """True while a UPS runs from its battery for a reason other than a self-test."""
        source = self.state(ups, "output.source") or self.state(ups, "output.status")
        return source in ON_BATTERY and not self.ups_self_testing(ups)

    def ups_output_off(self, ups: str) -> bool:
        """True when a UPS's output is off (the load has lost power)."""
        return (self.state(ups, "output.source") or self.state(ups, "output.status")) in OUTPUT_OFF

    def at_rated(self, genset: str, criteria: GeneratorCriteria) -> bool:
        """Generator voltage (every phase it reports) and frequency inside the ATS acceptance band."""
        hz = self.value(genset, "genset.frequency")
        volts = [v for v in (self.value(genset, p) for p in PHASE_VOLTAGES) if v is not None]
        if hz is None or not volts:
            return False
        band_v = criteria.voltage_tolerance * criteria.nominal_voltage_v
        band_hz = criteria.frequency_tolerance * criteria.nominal_frequency_hz
        return (abs(hz - criteria.nominal_frequency_hz) <= band_hz
                and all(abs(v - criteria.nominal_voltage_v) <= band_v for v in volts))


def _drill(scenario: str | None, current: str | None) -> str | None:
    return current or scenario


# --- generator runs ------------------------------------------------------------------------------

@dataclass(slots=True)
class _Run:
    """A generator run in progress."""

    start: float
    before: float | None  # the last poll that saw the engine stopped
    mode: str | None
    fuel_before: float | None
    scenario: str | None
    last_poll: float
    last_load: float | None = None
    last_on_load: bool = False
    rated_at: float | None = None
    rated_grain: float | None = None
    on_load_at: float | None = None
    transfer_s: float | None = None
    unloaded_at: float | None = None
    cooling_since: float | None = None
    mains_lost_at: float | None = None
    fuel_after: float | None = None
    time_on_load: float = 0.0
    load_integral: float = 0.0
    load_max: float | None = None
    at_min: float = 0.0
    streak: float = 0.0
    longest: float = 0.0
    alarms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    resumed: bool = False  # restored after a restart: the next poll's interval was not watched


class GeneratorRunDetector:
    """Follows each generator from start to stop and judges the run against the criteria."""

    IN_PROGRESS = "runs"

    def __init__(self, plant: PlantView, criteria: GeneratorCriteria, nameplates: Mapping[str, Nameplate],
                 outage_start: Callable[[], float | None]):
        self.plant = plant
        self.criteria = criteria
        self.nameplates = nameplates
        self.outage_start = outage_start  # the open power event's start, for time to load in an outage
        self.runs: dict[str, _Run] = {}
        self.last_stopped: dict[str, float] = {}  # the last poll that saw the engine stopped
        self.fuel_at_rest: dict[str, float | None] = {}  # fuel level at that poll

    def on_genset_poll(self, genset: str, ts: float, scenario: str | None) -> list[Record]:
        """A generator's poll: start, follow or finish its run."""
        running = self._running(genset)
        run = self.runs.get(genset)
        if running is None:
            return []
        if run is None:
            if running:
                self.runs[genset] = self._start(genset, ts, scenario)
            else:
                self._at_rest(genset, ts)
            return []
        run.scenario = _drill(scenario, run.scenario)
        self._follow(genset, run, ts)
        if running:
            return []
        self._at_rest(genset, ts)
        run.fuel_after = self.fuel_at_rest[genset]
        return [self._finish(genset, self.runs.pop(genset), ts, [])]

    def _at_rest(self, genset: str, ts: float) -> None:
        self.last_stopped[genset] = ts
        self.fuel_at_rest[genset] = self.plant.value(genset, "fuel.level")

    def on_ats_poll(self, ts: float, scenario: str | None) -> None:
        """The ATS moved the load to or from a running generator."""
        ats = self.plant.ats()
        on_generator = ats is not None and self.plant.state(ats, "ats.position") == "generator"
        for run in self.runs.values():
            run.scenario = _drill(scenario, run.scenario)
            self._note_mains(run, ts)
            if on_generator and run.on_load_at is None:
                run.on_load_at = ts
                run.transfer_s = self.plant.value(ats, "ats.last_transfer.duration")  # type: ignore[arg-type]
            elif not on_generator and run.on_load_at is not None and run.unloaded_at is None:
                run.unloaded_at = ts

    def tick(self, now: float) -> list[Record]:
        """Close runs whose generator has been silent too long (the record says the data stopped)."""
        stale = [g for g, run in self.runs.items() if now - run.last_poll > self.criteria.stale_after_s]
        records: list[Record] = []
        for genset in stale:
            run = self.runs.pop(genset)
            records.append(self._finish(genset, run, run.last_poll,
                                        [f"no data after {_utc(run.last_poll)}: run end not seen"]))
        return records

    def _running(self, genset: str) -> bool | None:
        state = self.plant.state(genset, "engine.state")
        if state is not None and state != "not_available":
            return state not in STOPPED_STATES
        rpm = self.plant.value(genset, "engine.speed")
        return None if rpm is None else rpm > RUNNING_RPM

    def _start(self, genset: str, ts: float, scenario: str | None) -> _Run:
        before = self.last_stopped.get(genset)
        fuel = self.fuel_at_rest.get(genset, self.plant.value(genset, "fuel.level"))
        run = _Run(start=ts, before=before, mode=self.plant.state(genset, "genset.mode"), fuel_before=fuel,
                   scenario=scenario, last_poll=ts)
        self._note_mains(run, ts)
        self._follow(genset, run, ts)
        return run

    def _note_mains(self, run: _Run, ts: float) -> None:
        """The first sign of a mains failure during the run: the power event's start if one is open."""
        if run.mains_lost_at is None and self.plant.mains_ok(self.criteria) is False:
            outage = self.outage_start()
            run.mains_lost_at = min(ts, outage) if outage is not None else ts

    def _follow(self, genset: str, run: _Run, ts: float) -> None:
        self._accumulate(run, ts)
        self._note_mains(run, ts)
        if run.rated_at is None and self.plant.at_rated(genset, self.criteria):
            run.rated_at = ts
            run.rated_grain = max(run.start - run.before if run.before is not None else 0.0, ts - run.last_poll)
        if self.plant.state(genset, "engine.state") == "cooling_down" and run.cooling_since is None:
            run.cooling_since = ts
        load = self._load_pct(genset)
        run.last_load, run.last_on_load, run.last_poll = load, self._on_load(run, load), ts
        if load is not None:
            run.load_max = load if run.load_max is None else max(run.load_max, load)
        self._note_alarms(genset, run, ts)

    def _on_load(self, run: _Run, load: float | None) -> bool:
        """Is the generator carrying the site's load? The ATS says; without one, the generator's own load."""
        ats = self.plant.ats()
        if ats is None:
            return (load or 0.0) > 1.0
        if not self.plant.seen(ats, "ats.position"):
            return run.last_on_load  # not polled since a restart yet: no news is not a transfer
        return self.plant.state(ats, "ats.position") == "generator"

    def _accumulate(self, run: _Run, ts: float) -> None:
        """Sample-and-hold the previous poll's load over [last poll, ts), at most max_hold_s."""
        if run.resumed:
            self._across_restart(run, ts)
            return
        held = min(ts - run.last_poll, self.criteria.max_hold_s)
        if held <= 0:
            return
        if run.last_on_load and run.last_load is not None:
            run.time_on_load += held
            run.load_integral += run.last_load * held
        at_min = run.last_on_load and run.last_load is not None and run.last_load >= self.criteria.min_load_pct
        if at_min:
            run.at_min += held
            run.streak += held
            run.longest = max(run.longest, run.streak)
        if not at_min or ts - run.last_poll > held:  # below the load, or a gap in the data: the stretch ends
            run.streak = 0.0

    def _across_restart(self, run: _Run, ts: float) -> None:
        """No load credited while nobody watched; a gap over max_hold_s breaks the stretch (a data gap's rule)."""
        run.resumed = False
        if ts - run.last_poll > self.criteria.max_hold_s:
            run.streak = 0.0

    def _load_pct(self, genset: str) -> float | None:
        rated_kw = self._nameplate(genset)[0].rated_kw
        power_w = self.plant.value(genset, "genset.power")
        if rated_kw and power_w is not None:
            return 100.0 * power_w / (rated_kw * 1000.0)
        return self.plant.value(genset, "genset.load")

    def _nameplate(self, genset: str) -> tuple[Nameplate, str]:
        """The generator's nameplate and where it came from: configuration, simulation params, or none."""
        if genset in self.nameplates:
            return self.nameplates[genset], "config"
        sim = self.plant.site.device(genset).simulation
        if {"rated_kw", "start_time_s"} & sim.model_fields_set:
            return Nameplate(sim.rated_kw, sim.start_time_s), "simulation"
        return Nameplate(), "controller"

    def _note_alarms(self, genset: str, run: _Run, ts: float) -> None:
        for point in self.plant.enums.get(genset, {}):
            if not point.startswith("alarm."):
                continue
            severity = self.plant.severity(genset, point)
            state = self.plant.state(genset, point)
            if severity in (Severity.WARNING, Severity.CRITICAL) and state and (point, state) not in run.alarms:
                run.alarms[(point, state)] = {"point": point, "state": state, "severity": severity.value, "ts": ts}

    def _finish(self, genset: str, run: _Run, end: float, reasons: list[str]) -> GeneratorRun:
        nameplate, basis = self._nameplate(genset)
        kind = "outage" if run.mains_lost_at is not None else "test_on_load" if run.on_load_at else "test_off_load"
        reference = self._reference(run)
        record = GeneratorRun(
            device=genset, kind=kind, start=run.start, end=end, mode=run.mode,
            start_s=_minus(run.rated_at, run.start), start_resolution_s=run.rated_grain,
            on_load_at=run.on_load_at, time_to_load_s=_minus(run.on_load_at, reference), transfer_s=run.transfer_s,
            unloaded_at=run.unloaded_at,
            load_pct_mean=run.load_integral / run.time_on_load if run.time_on_load else None,
            load_pct_max=run.load_max, load_basis=basis, rated_kw=nameplate.rated_kw,
            load_kw_mean=(run.load_integral / run.time_on_load * nameplate.rated_kw / 100.0
                          if run.time_on_load and nameplate.rated_kw else None),
            time_on_load_s=run.time_on_load, time_at_min_load_s=run.at_min, longest_at_min_load_s=run.longest,
            run_s=end - run.start, cooldown_s=_minus(end, run.cooling_since or run.unloaded_at),
            fuel_before_pct=run.fuel_before, fuel_after_pct=run.fuel_after, alarms=list(run.alarms.values()),
            scenario=run.scenario, notes=list(run.notes))
        return judge(record, self.criteria, nameplate, reasons)

    @staticmethod
    def _reference(run: _Run) -> float:
        """What time to load counts from: the mains failure in an outage, else the start signal."""
        return run.start if run.mains_lost_at is None else min(run.mains_lost_at, run.start)

    def snapshot(self) -> dict[str, Any]:
        """The runs in progress and the last poll at rest, as JSON-ready values."""
        runs = {genset: {**asdict(run), "alarms": list(run.alarms.values())} for genset, run in self.runs.items()}
        return {"runs": runs, "last_stopped": dict(self.last_stopped), "fuel_at_rest": dict(self.fuel_at_rest)}

    def restore(self, state: Mapping[str, Any], restarted_at: float) -> None:
        """Continue from a snapshot (raises StateError if it does not fit; nothing is changed then)."""
        gensets = self.plant.devices("genset")
        runs = known_only({g: _run_from(r) for g, r in mapping(state, "runs", "Any").items()}, gensets,
                          "generator run")
        last_stopped = known_only(mapping(state, "last_stopped", "float"), gensets, "last stop")
        fuel_at_rest = known_only(mapping(state, "fuel_at_rest", "float | None"), gensets, "fuel at rest")
        for run in runs.values():
            run.resumed = True
            run.notes.append(f"facwatch restarted at {_utc(restarted_at)} during the run")
        self.runs, self.last_stopped, self.fuel_at_rest = runs, last_stopped, fuel_at_rest


def _run_from(data: Any) -> _Run:
    if not isinstance(data, dict) or not isinstance(data.get("alarms", []), list):
        raise StateError("generator run: not an object with a list of alarms")
    alarms = [dataclass_from(_Alarm, a) for a in data.get("alarms", [])]
    run = dataclass_from(_Run, {name: value for name, value in data.items() if name != "alarms"})
    run.alarms = {(a.point, a.state): {"point": a.point, "state": a.state, "severity": a.severity, "ts": a.ts}
                  for a in alarms}
    return run


@dataclass(frozen=True, slots=True)
class _Alarm:
    """An alarm seen during a run, as saved (checked on restore)."""

    point: str
    state: str
    severity: str
    ts: float


def judge(run: GeneratorRun, criteria: GeneratorCriteria, nameplate: Nameplate,
          reasons: list[str] | None = None) -> GeneratorRun:
    """The run with its verdict: passed, and every reason it failed, against ``criteria``."""
    reasons = list(reasons or [])
    limit = nameplate.start_time_s if nameplate.start_time_s is not None else criteria.max_start_s
    grain = criteria.start_tolerance_s if criteria.start_tolerance_s is not None else run.start_resolution_s or 0.0
    if run.start_s is None:
        reasons.append("never reached rated voltage and frequency")
    elif run.start_s > limit + grain:
        reasons.append(f"start took {run.start_s:.1f} s to rated voltage and frequency; limit {limit:g} s "
                       f"(+{grain:.1f} s poll spacing)")
    if run.kind == "outage":
        reasons += _outage_reasons(run, criteria, grain)
    else:
        reasons += _test_reasons(run, criteria)
    reasons += [f"alarm {a['point']} {a['state']} during the run" for a in run.alarms
                if a["severity"] in criteria.fail_on]
    used = {**asdict(criteria), "start_limit_s": limit, "start_tolerance_s": grain}
    return replace(run, passed=not reasons, reasons=reasons, criteria=used)


def _outage_reasons(run: GeneratorRun, criteria: GeneratorCriteria, grain: float) -> list[str]:
    if run.time_to_load_s is None:
        return ["the load never went on the generator during the outage"]
    if run.time_to_load_s > criteria.max_time_to_load_s + grain:
        return [f"load on the generator {run.time_to_load_s:.1f} s after the mains failure; "
                f"limit {criteria.max_time_to_load_s:g} s"]
    return []


def _test_reasons(run: GeneratorRun, criteria: GeneratorCriteria) -> list[str]:
    reasons = []
    if run.kind == "test_off_load":
        reasons.append("run off load: the monthly test needs the generator on load")
    elif run.load_pct_mean is not None and run.load_pct_mean < criteria.min_load_pct:
        reasons.append(f"mean load {run.load_pct_mean:.1f} % of nameplate, below {criteria.min_load_pct:g} %")
    if run.longest_at_min_load_s < criteria.min_duration_s:
        reasons.append(f"{run.longest_at_min_load_s / 60:.1f} min at ≥ {criteria.min_load_pct:g} % of nameplate; "
                       f"needs {criteria.min_duration_s / 60:g} min unbroken")
    return reasons


# --- UPS self-tests ------------------------------------------------------------------------------

@dataclass(slots=True)
class _Test:
    start: float
    scenario: str | None
    before: dict[str, float | None]
    lowest: dict[str, float | None] = field(default_factory=dict)
    last_poll: float = 0.0
    notes: list[str] = field(default_factory=list)


_BATTERY = {"voltage": "battery.voltage", "runtime": "battery.runtime", "charge": "battery.charge"}


class UpsSelfTestDetector:
    """Finds battery self-tests: the test result going to in-progress and back to a result.

    A test whose UPS was silent for more than ``stale_after_s`` (facwatch down, the card unreachable) ends
    at the last poll that saw it running, with the result the UPS shows afterwards and a note.
    """

    IN_PROGRESS = "tests"

    def __init__(self, plant: PlantView, stale_after_s: float = GeneratorCriteria().stale_after_s):
        self.plant = plant
        self.stale_after_s = stale_after_s
        self.tests: dict[str, _Test] = {}
        self.previous: dict[str, dict[str, float | None]] = {}  # battery figures at the last poll
        self.last_result: dict[str, str] = {}

    def on_ups_poll(self, ups: str, ts: float, scenario: str | None) -> list[Record]:
        """A UPS's poll: a test starts, goes on, or ends with its result."""
        plant = self.plant
        now = {key: plant.value(ups, point) for key, point in _BATTERY.items()}
        result = plant.state(ups, "ups.test.result")
        testing = plant.ups_self_testing(ups)
        test = self.tests.get(ups)
        records: list[Record] = []
        if test is not None and not testing and ts - test.last_poll > self.stale_after_s:
            self.tests.pop(ups)
            test.notes.append(f"no data after {_utc(test.last_poll)}: test end not seen")
            records.append(_self_test(ups, test, test.last_poll, result))
        elif testing:
            if test is None:
                test = self.tests[ups] = _Test(ts, scenario, self.previous.get(ups, {}))
            test.scenario = _drill(scenario, test.scenario)
            test.last_poll = ts
            _lowest(test.lowest, now)
        elif test is not None and result in TEST_RESULTS:
            test.scenario = _drill(scenario, test.scenario)
            _lowest(test.lowest, now)
            records.append(_self_test(ups, self.tests.pop(ups), ts, result))
        elif test is None and result in TEST_RESULTS and self.last_result.get(ups, result) != result:
            # a test shorter than the poll spacing: only its new result shows
            records.append(_self_test(ups, _Test(ts, scenario, self.previous.get(ups, {}), dict(now)), ts, result,
                                      seen_running=False))
        if result is not None:
            self.last_result[ups] = result
        if not testing:
            self.previous[ups] = now
        return records

    def snapshot(self) -> dict[str, Any]:
        """The tests in progress and each UPS's last figures, as JSON-ready values."""
        return {"tests": {ups: asdict(test) for ups, test in self.tests.items()},
                "previous": {ups: dict(now) for ups, now in self.previous.items()},
                "last_result": dict(self.last_result)}

    def restore(self, state: Mapping[str, Any], restarted_at: float) -> None:
        """Continue from a snapshot (raises StateError if it does not fit; nothing is changed then)."""
        upses = self.plant.devices("ups")
        tests = known_only({u: dataclass_from(_Test, t) for u, t in mapping(state, "tests", "Any").items()}, upses,
                           "UPS self-test")
        previous = known_only(mapping(state, "previous", "dict[str, float | None]"), upses, "battery figures")
        last_result = known_only(mapping(state, "last_result", "str"), upses, "self-test result")
        for test in tests.values():
            test.notes.append(f"facwatch restarted at {_utc(restarted_at)} during the test")
        self.tests, self.previous, self.last_result = tests, previous, last_result


def _lowest(lowest: dict[str, float | None], now: Mapping[str, float | None]) -> None:
    for key, value in now.items():
        if value is not None:
            old = lowest.get(key)
            lowest[key] = value if old is None else min(old, value)


def _self_test(ups: str, test: _Test, end: float, result: str | None, seen_running: bool = True) -> UpsSelfTest:
    """The record; a result outside TEST_RESULTS (only after a gap: the end was not seen) is "unknown"."""
    before, low = test.before, test.lowest
    dip = _minus(before.get("voltage"), low.get("voltage"))
    return UpsSelfTest(
        device=ups, start=test.start, end=end, result=TEST_RESULTS.get(result or "", "unknown"),
        vendor_result=result or "unknown",
        seen_running=seen_running, duration_s=end - test.start, voltage_before_v=before.get("voltage"),
        voltage_min_v=low.get("voltage"), voltage_dip_v=max(dip, 0.0) if dip is not None else None,
        runtime_before_min=before.get("runtime"), runtime_min_min=low.get("runtime"),
        charge_before_pct=before.get("charge"), charge_min_pct=low.get("charge"), scenario=test.scenario,
        notes=list(test.notes))


# --- power events --------------------------------------------------------------------------------

@dataclass(slots=True)
class _Incident:
    start: float
    scenario: str | None
    mains_lost: bool = False
    mains_restored_at: float | None = None
    generator: str | None = None
    generator_rated_at: float | None = None
    on_generator_at: float | None = None
    transfer_s: float | None = None
    retransfer_at: float | None = None
    retransfer_s: float | None = None
    normal_since: float | None = None
    last_poll: float = 0.0
    ups: dict[str, dict[str, Any]] = field(default_factory=dict)
    battery_since: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class PowerEventDetector:
    """One incident from the first sign of a mains failure until everything is back (and settled)."""

    IN_PROGRESS = "incident"

    def __init__(self, plant: PlantView, criteria: GeneratorCriteria):
        self.plant = plant
        self.criteria = criteria
        self.incident: _Incident | None = None

    def open_start(self) -> float | None:
        """When the open incident started, or None."""
        return self.incident.start if self.incident is not None else None

    def on_power_poll(self, device: str, ts: float, scenario: str | None) -> list[Record]:
        """A UPS, generator or ATS poll: open, follow or close the incident."""
        plant = self.plant
        mains_ok = plant.mains_ok(self.criteria)
        on_battery = [u for u in plant.devices("ups") if plant.ups_on_battery(u)]
        incident = self.incident
        if incident is None:
            if mains_ok is False or on_battery:
                incident = self.incident = _Incident(ts, scenario)
            else:
                return []
        incident.scenario = _drill(scenario, incident.scenario)
        incident.last_poll = ts
        self._follow(incident, device, ts, mains_ok)
        ats = plant.ats()
        on_mains = ats is None or plant.state(ats, "ats.position") == "mains"
        normal = mains_ok is not False and not on_battery and on_mains
        if not normal:
            incident.normal_since = None
            return []
        incident.normal_since = incident.normal_since if incident.normal_since is not None else ts
        if ts - incident.normal_since < self.criteria.settle_s:
            return []
        self.incident = None
        return [self._record(incident, incident.normal_since, [])]

    def tick(self, now: float) -> list[Record]:
        """Close an incident whose devices have been silent too long."""
        incident = self.incident
        if incident is None or now - incident.last_poll <= self.criteria.stale_after_s:
            return []
        self.incident = None
        end = incident.normal_since or incident.last_poll
        notes = [] if incident.normal_since else [f"no data after {_utc(incident.last_poll)}: end not seen"]
        return [self._record(incident, end, notes)]

    def _follow(self, incident: _Incident, device: str, ts: float, mains_ok: bool | None) -> None:
        if mains_ok is False:
            incident.mains_lost = True
        elif mains_ok and incident.mains_lost and incident.mains_restored_at is None:
            incident.mains_restored_at = ts
        device_class = self.plant.site.device(device).device_class
        if device_class == "ups":
            self._follow_ups(incident, device, ts)
        elif device_class == "genset" and incident.generator_rated_at is None:
            if self.plant.at_rated(device, self.criteria):
                incident.generator, incident.generator_rated_at = device, ts
        elif device_class == "ats":
            self._follow_ats(incident, device, ts)

    def _follow_ups(self, incident: _Incident, ups: str, ts: float) -> None:
        plant = self.plant
        stats = incident.ups.setdefault(ups, {"on_battery_s": 0.0, "lowest_runtime_min": None,
                                              "lowest_charge_pct": None, "output_lost": False})  # _UPS_STATS
        since = incident.battery_since.pop(ups, None)
        if since is not None:
            stats["on_battery_s"] += ts - since
        if plant.ups_on_battery(ups):
            incident.battery_since[ups] = ts
        for key, point in (("lowest_runtime_min", "battery.runtime"), ("lowest_charge_pct", "battery.charge")):
            value = plant.value(ups, point)
            if value is not None and (since is not None or plant.ups_on_battery(ups)):
                stats[key] = value if stats[key] is None else min(stats[key], value)
        stats["output_lost"] = stats["output_lost"] or plant.ups_output_off(ups)

    def _follow_ats(self, incident: _Incident, ats: str, ts: float) -> None:
        position = self.plant.state(ats, "ats.position")
        duration = self.plant.value(ats, "ats.last_transfer.duration")
        if position == "generator" and incident.on_generator_at is None:
            incident.on_generator_at, incident.transfer_s = ts, duration
        elif position == "mains" and incident.on_generator_at is not None and incident.retransfer_at is None:
            incident.retransfer_at, incident.retransfer_s = ts, duration

    def _record(self, incident: _Incident, end: float, notes: list[str]) -> PowerEvent:
        ups = incident.ups
        runtimes = [s["lowest_runtime_min"] for s in ups.values() if s["lowest_runtime_min"] is not None]
        charges = [s["lowest_charge_pct"] for s in ups.values() if s["lowest_charge_pct"] is not None]
        notes = [*incident.notes, *notes]
        if incident.mains_lost and incident.on_generator_at is None:
            notes = [*notes, "the load never went on a generator"]
        restored = incident.mains_restored_at
        return PowerEvent(
            start=incident.start, end=end, mains_lost=incident.mains_lost, duration_s=end - incident.start,
            mains_restored_at=restored, mains_out_s=_minus(restored, incident.start) if incident.mains_lost else None,
            on_battery_s=max((s["on_battery_s"] for s in ups.values()), default=None),
            lowest_runtime_min=min(runtimes, default=None), lowest_charge_pct=min(charges, default=None),
            generator=incident.generator, generator_rated_s=_minus(incident.generator_rated_at, incident.start),
            time_to_generator_s=_minus(incident.on_generator_at, incident.start), transfer_s=incident.transfer_s,
            retransfer_at=incident.retransfer_at, retransfer_delay_s=_minus(incident.retransfer_at, restored),
            retransfer_s=incident.retransfer_s, load_lost=any(s["output_lost"] for s in ups.values()),
            ups=ups, notes=notes, scenario=incident.scenario)

    def snapshot(self) -> dict[str, Any]:
        """The open incident, as JSON-ready values."""
        return {"incident": asdict(self.incident) if self.incident is not None else None}

    def restore(self, state: Mapping[str, Any], restarted_at: float) -> None:
        """Continue from a snapshot (raises StateError if it does not fit; nothing is changed then)."""
        saved = state.get("incident")
        incident = dataclass_from(_Incident, saved) if saved is not None else None
        if incident is None:
            return
        if not all(_ups_stats_fit(stats) for stats in incident.ups.values()):
            raise StateError("power event: UPS figures do not fit")
        devices = {*incident.ups, *incident.battery_since, *([incident.generator] if incident.generator else [])}
        known = {*self.plant.devices("ups"), *self.plant.devices("genset")}
        if devices - known:
            log.warning("evidence: saved power event dropped: the site has no device %s any more",
                        ", ".join(sorted(devices - known)))
            return
        incident.notes.append(f"facwatch restarted at {_utc(restarted_at)} during the incident")
        self.incident = incident


_UPS_STATS = {"on_battery_s": "float", "lowest_runtime_min": "float | None", "lowest_charge_pct": "float | None",
              "output_lost": "bool"}


def _ups_stats_fit(stats: Mapping[str, Any]) -> bool:
    return set(stats) == set(_UPS_STATS) and all(fits(kind, stats[name]) for name, kind in _UPS_STATS.items())


# --- the recorder ----------------------------------------------------------------------------------

class EvidenceRecorder:
    """The detectors beside the alert engine: ``observe`` every poll's readings, ``tick`` on the clock.

    Example: ``recorder = EvidenceRecorder(site, store.path); recorder.observe(readings)`` returns (and
    stores) the records finished by those readings.

    The detectors' state in progress is saved with the records (at most once per ``observe``/``tick``;
    the state at rest only on ``tick`` or with a record) and restored here, so runs survive a restart.
    """

    def __init__(self, site: Site, store_path: str | Path, clock: Callable[[], float] = time.time, *,
                 criteria: GeneratorCriteria | None = None, nameplates: Mapping[str, Nameplate] | None = None):
        self.clock = clock
        self.criteria = criteria or GeneratorCriteria()
        self.store = EvidenceStore(store_path)
        self.plant = PlantView(site)
        self.power = PowerEventDetector(self.plant, self.criteria)
        self.generators = GeneratorRunDetector(self.plant, self.criteria, dict(nameplates or {}), self.power.open_start)
        self.self_tests = UpsSelfTestDetector(self.plant, self.criteria.stale_after_s)
        self._detectors: dict[str, GeneratorRunDetector | UpsSelfTestDetector | PowerEventDetector] = {
            "generator_run": self.generators, "ups_self_test": self.self_tests, "power_event": self.power}
        # detector → (the state saved, its part in progress): what the next save compares with
        self._saved = {name: (None, _in_progress(d.snapshot(), d)) for name, d in self._detectors.items()}
        self._unstored: list[Record] = []  # records whose transaction failed: tried again with the next one
        self._restore()
        self.tick()  # a restart gap longer than stale_after_s ends the run here, as a data gap would

    def observe(self, readings: Iterable[Reading]) -> list[Record]:
        """Feed readings (any order, grouped into polls by device and time); the records they finished."""
        records: list[Record] = []
        known = [r for r in readings if r.device in self.plant.enums]
        for (ts, device), group in itertools.groupby(sorted(known, key=lambda r: (r.ts, r.device)),
                                                     key=lambda r: (r.ts, r.device)):
            polled = list(group)
            for reading in polled:
                self.plant.latest[(device, reading.point)] = reading
            scenario = next((r.scenario for r in polled if r.scenario), None)
            records += self._poll(device, ts, scenario)
        return self._commit(records, at_rest_too=False)

    def tick(self, now: float | None = None) -> list[Record]:
        """Close runs and incidents whose data stopped arriving."""
        now = self.clock() if now is None else now
        return self._commit(self.generators.tick(now) + self.power.tick(now), at_rest_too=True)

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def _poll(self, device: str, ts: float, scenario: str | None) -> list[Record]:
        device_class = self.plant.site.device(device).device_class
        records: list[Record] = []
        if device_class == "genset":
            records += self.generators.on_genset_poll(device, ts, scenario)
        elif device_class == "ats":
            self.generators.on_ats_poll(ts, scenario)
        elif device_class == "ups":
            records += self.self_tests.on_ups_poll(device, ts, scenario)
        if device_class in ("genset", "ats", "ups"):
            records += self.power.on_power_poll(device, ts, scenario)
        return records

    def _commit(self, records: list[Record], *, at_rest_too: bool) -> list[Record]:
        """Store the records and the states that changed in one transaction.

        A state whose runs/tests/incident in progress changed is saved at once; one where only the
        figures at rest changed (every poll of a stopped engine) waits for a tick or a record.
        """
        pending = [*self._unstored, *records]
        changed = {}
        for name, detector in self._detectors.items():
            snapshot = detector.snapshot()
            in_progress = _in_progress(snapshot, detector)
            saved, saved_in_progress = self._saved[name]
            if not (at_rest_too or pending or in_progress != saved_in_progress):
                continue  # only figures at rest may have changed: not worth a write per poll
            state = json.dumps(snapshot, sort_keys=True) if any(snapshot.values()) else None
            if state != saved:
                changed[name] = (state, in_progress)
        if pending or changed:
            try:
                self.store.commit(pending, {name: state for name, (state, _) in changed.items()}, self.clock())
            except Exception:
                self._unstored = pending  # the state on file still has these runs open: nothing is lost
                raise
            self._unstored = []
            self._saved.update(changed)
        return records

    def _restore(self) -> None:
        """Continue the runs, tests and incidents saved before a restart; drop state that does not fit."""
        restarted_at = self.clock()
        for name, (state, saved_at) in self.store.detector_states().items():
            detector = self._detectors.get(name)
            if detector is None or state is None:
                continue
            self._saved[name] = (state, None)  # rewritten at the first save: the notes changed
            try:
                detector.restore(_json_object(state), restarted_at)
            except (StateError, ValueError) as exc:
                log.warning("evidence: saved %s state (from %s) unreadable, starting fresh: %s", name,
                            _utc(saved_at) if isinstance(saved_at, float) else "?", exc)


def _in_progress(snapshot: Mapping[str, Any], detector: Any) -> str:
    return json.dumps(snapshot[detector.IN_PROGRESS], sort_keys=True)


def _json_object(text: str) -> dict[str, Any]:
    state = json.loads(text)
    if not isinstance(state, dict):
        raise StateError(f"expected a JSON object, got {type(state).__name__}")
    return state


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
