"""The alert state machine (after Prometheus rules/alerting.go): inactive → pending → firing → resolved.

A rule's condition is evaluated per device and point when readings arrive (`observe`) and again on the
clock (`tick`): `for` expiry, clear delay, stale data, overdue test schedules. Missing data never changes
another rule's alert: it is neither inside nor outside the envelope (USERS.md #14), so the alert holds its state.

Restarts: alert states are stored (alerts/state.py), and so are the timers under way — a pending alert's
`for` and a firing alert's clear delay (`clear_for`). A timer resumes with the time it had provably run by
its last evaluation before the restart; the time facwatch was down never counts, neither as condition
true nor as clear (no data is not a clear). It resumes at the first evaluation after the restart that
sees the condition the same way (still true for `for`, still clear for `clear_for`); one that sees
otherwise ends it as it would have anyway. Progress is saved on the clock tick every TIMER_SAVE_S, so a
restart may make a timer run up to that much (plus a tick) longer, never shorter; a pending alert with no
saved timer starts its `for` over.
Schedule rules' clocks and qualifying runs: alerts/schedule.py.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from alerts.derived import (
    Estimate,
    RateWindow,
    dew_point,
    fuel_days_full_load,
    ring_redundancy,
    ups_autonomy_full_load,
)
from alerts.model import Alert, AlertState, fingerprint
from alerts.rules import DERIVED_INPUTS, RING_LOAD_POINT, Condition, Rule, Term, matches
from alerts.schedule import ScheduleBook
from alerts.state import AlertStateStore, ScheduleMark, Timer
from collectors.model import REACHABLE_POINT, EnumState, Kind, Quality, Reading, Severity
from config.load import Site

_ACTIVE = (AlertState.PENDING, AlertState.FIRING)
_CLOCKED = ("missing", "schedule")  # kinds whose condition the clock itself re-evaluates on every tick
DEFAULT_STALE_AFTER = 3.0  # poll intervals without a reading before a value counts as stale
TIMER_SAVE_S = 10.0  # a running timer's progress is stored at most this often (what a crash may count again)
PENDING, CLEARING = "pending", "clearing"  # kinds of stored timers


@dataclass(slots=True)
class _Track:
    """Engine-side memory of one alert: the alert plus what the state machine needs between steps."""

    alert: Alert
    rule: Rule
    fp: str = ""
    known: bool = False  # False after a restart or while data is missing: hold, never resolve
    condition: Severity | None = None
    cleared_since: float | None = None
    pending_since: float | None = None  # where `for` counts from, when not active_since (resumed after a restart)
    last_ts: float | None = None
    poll_interval: float = 0.0
    saved: Timer | None = None  # the timer as stored
    resume: Timer | None = None  # a stored timer waiting for the first evaluation after a restart


@dataclass(frozen=True, slots=True)
class _Eval:
    """One evaluation of a rule for one device/point: its labels, condition and context."""

    labels: dict[str, str]
    known: bool
    condition: Severity | None
    value: float | None
    ts: float
    scenario: str | None
    method: str | None = None
    poll_interval: float | None = None  # of the inputs, when the alert is not about one device
    notes: Mapping[str, str] | None = None  # annotations computed with the condition (schedule rules)


class AlertEngine:
    """Evaluates rules on readings and the clock; returns the alerts whose state (or severity) changed."""

    def __init__(self, site: Site, rules: list[Rule], state: AlertStateStore,
                 clock: Callable[[], float] = time.time):
        self.rules = {rule.name: rule for rule in rules}
        self.store = state
        self.clock = clock
        self.started_at = clock()
        self.site_id = site.config.site.id
        self.devices = {device.id: device for device in site.devices}
        self._by_device: dict[str, list[Rule]] = {}
        self.enums = {device.id: {p.name: p.enum for p in site.profile(device).points if p.enum}
                      for device in site.devices}
        self.gauges = {device.id: {p.name for p in site.profile(device).points if p.kind is Kind.GAUGE}
                       for device in site.devices}
        self.latest: dict[tuple[str, str, str | None], Reading] = {}
        self.good_ts: dict[tuple[str, str, str | None], float] = {}
        self.good_values: dict[tuple[str, str, str | None], float] = {}
        self.prior: dict[tuple[str, str, str | None], float] = {}  # the good value before the latest (`becomes`)
        self.book = ScheduleBook(state, self.rules, {d.id: d.poll_interval_s for d in site.devices})
        self.schedules: dict[tuple[str, str], ScheduleMark] = self.book.marks
        self.runs = self.book.runs
        self._subjects: dict[str, list[str]] = {}
        self._fingerprints: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self.device_seen: dict[str, float] = {}
        self.rates: dict[tuple[str, str, str, str | None], RateWindow] = {}
        self.tracks = {fp: _Track(alert, self.rules[alert.rule], fp) for fp, alert in state.load().items()
                       if alert.rule in self.rules}
        timers = state.timers()
        for fp, track in self.tracks.items():
            track.saved = timers.get(fp)
            track.resume = track.saved or _unsaved_timer(track.alert)
        self._timers: dict[str, Timer | None] = {}  # changed since the last save

    def alerts(self) -> list[Alert]:
        """Every known alert that is pending or firing."""
        return [t.alert for t in self.tracks.values() if t.alert.state in _ACTIVE]

    def observe(self, readings: Iterable[Reading]) -> list[Alert]:
        """Feed readings (any order); the alerts whose state changed."""
        changed: list[Alert] = []
        for reading in sorted(readings, key=lambda r: r.ts):
            if reading.device not in self.devices:
                continue
            self._remember(reading)
            for rule in self._rules_for(reading.device):
                compound = rule.kind == "compound"
                evals = self._compound_evals(rule, reading) if compound else self._evaluate(rule, reading)
                changed += self._apply_all(rule, evals)
        if self.book.changed():  # a test run's progress at once (its gap check is tight); timers wait for tick
            self._save_progress()
        return changed

    def _rules_for(self, device_id: str) -> list[Rule]:
        """Rules that can apply to a device (point filters still apply later), worked out once per device.

        With thousands of rules a reading must not walk them all; compound rules read other
        devices' points, so they stay in every list.
        """
        rules = self._by_device.get(device_id)
        if rules is None:
            device = self.devices[device_id]
            rules = self._by_device[device_id] = [
                rule for rule in self.rules.values()
                if rule.kind == "compound" or matches(rule, device.device_class, device.room, device.id)]
        return rules

    def tick(self, now: float) -> list[Alert]:
        """Time-driven transitions: `for` expiry, clear delay, data missing for too long."""
        changed: list[Alert] = []
        for rule in self.rules.values():
            if rule.kind == "missing":
                changed += self._apply_all(rule, self._stale_evals(rule, now))
            elif rule.kind == "schedule":
                evals = [self._overdue_eval(rule, dev, now) for dev in self._subjects_of(rule)
                         if (rule.name, dev) in self.schedules]
                changed += self._apply_all(rule, evals)
        for track in list(self.tracks.values()):
            if track.rule.kind not in _CLOCKED and track.known and self._fresh(track, now):
                changed += self._step(track, track.condition, None, now, track.alert.scenario)
        self._save_progress()
        return changed

    def end_scenario(self, name: str, at: float) -> list[Alert]:
        """End the alerts a scenario (drill) raised: its tagged readings stop, so nothing else would clear them."""
        changed = []
        for track in self.tracks.values():
            alert = track.alert
            if alert.scenario != name or alert.state not in _ACTIVE:
                continue
            firing = alert.state is AlertState.FIRING
            after = replace(alert, state=AlertState.RESOLVED if firing else AlertState.INACTIVE,
                            resolved_at=at if firing else None, active_since=alert.active_since if firing else None,
                            updated_at=at, annotations={**alert.annotations, "ended": f"scenario {name} ended"})
            track.alert, track.known, track.condition, track.resume = after, False, None, None
            self.store.save(after, alert.state)
            self._sync_timer(track, at)
            changed.append(after)
        self._save_progress()
        return changed

    def acknowledge(self, fp: str, who: str, note: str | None = None, at: float | None = None) -> list[Alert]:
        """Flag an alert as acknowledged; a latched alert whose condition has cleared may then resolve."""
        at = self.clock() if at is None else at
        acked = self.store.acknowledge(fp, who, note, at)
        track = self.tracks.get(fp)
        if acked is None or track is None:
            return []
        track.alert = acked
        if not (track.known and track.condition is None):
            return []
        changed = self._step(track, None, None, at, acked.scenario)
        self._save_progress()
        return changed

    # -- evaluation -------------------------------------------------------------------------------------

    def _remember(self, reading: Reading) -> None:
        key = (reading.device, reading.point, reading.scenario)
        self.latest[key] = reading
        self.device_seen[reading.device] = max(self.device_seen.get(reading.device, 0.0), reading.ts)
        if reading.quality is not Quality.GOOD:
            return
        self.good_ts[key] = reading.ts  # text points (serial, model) are good with no numeric value
        if reading.value is not None:
            if key in self.good_values:
                self.prior[key] = self.good_values[key]
            self.good_values[key] = reading.value

    def _evaluate(self, rule: Rule, reading: Reading) -> list[_Eval]:
        device = self.devices[reading.device]
        if not matches(rule, device.device_class, device.room, device.id):
            return []
        if rule.kind == "threshold":
            return self._threshold_evals(rule, reading)
        if rule.kind == "state":
            return self._state_evals(rule, reading)
        if rule.kind == "schedule":
            return self._schedule_evals(rule, reading)
        return self._missing_evals(rule, reading)

    def _labels(self, rule: Rule, device_id: str, point: str, scenario: str | None) -> dict[str, str]:
        device = self.devices[device_id]
        labels = {"site": self.site_id, "device": device_id, "room": device.room, "device_class": device.device_class,
                  "point": point}
        if scenario:
            labels["scenario"] = scenario  # a drill never shares an identity with (or resolves) a real alert
        return labels

    def _threshold_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        if rule.derived is None:
            if not matches(rule, *self._where(reading.device), reading.point):
                return []
            labels = self._labels(rule, reading.device, reading.point, reading.scenario)
            return [self._threshold_eval(rule, reading, labels, reading.value, None)]
        if rule.derived == "ring_redundancy":
            return self._ring_evals(rule, reading)
        estimate = self._derive(rule, reading)
        if estimate is False:
            return []
        point = reading.point if rule.derived == "rate_of_change" else rule.derived
        value, method = (estimate.value, estimate.method) if isinstance(estimate, Estimate) else (None, None)
        labels = self._labels(rule, reading.device, point, reading.scenario)
        return [self._threshold_eval(rule, reading, labels, value, method)]

    def _threshold_eval(self, rule: Rule, reading: Reading, labels: dict[str, str], value: float | None,
                        method: str | None, poll_interval: float | None = None) -> _Eval:
        track = self.tracks.get(self._fingerprint(rule.name, labels))
        current = track.alert.severity if track and track.alert.state in _ACTIVE else None
        condition = None if value is None else _threshold(rule, value, current)
        return _Eval(labels, value is not None, condition, value, reading.ts, reading.scenario, method, poll_interval)

    def _ring_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        """One site value from every ring's load; a ring without a fresh, valid load holds the alert."""
        rings = [dev for dev in self._subjects_of(rule) if RING_LOAD_POINT in self.gauges[dev]]
        if reading.point != RING_LOAD_POINT or len(rings) < 2:
            return []
        estimate = self._ring_estimate(rule, rings, reading)
        value, method = (estimate.value, estimate.method) if estimate else (None, None)
        poll = max(self.devices[dev].poll_interval_s for dev in rings)
        return [self._threshold_eval(rule, reading, self._site_labels(reading.scenario), value, method, poll)]

    def _ring_estimate(self, rule: Rule, rings: list[str], reading: Reading) -> Estimate | None:
        """Combined ring load over the capacity left after a ring failure; None while any ring's load is unknown."""
        rows = []
        for dev in rings:
            load = self._fresh_value(dev, RING_LOAD_POINT, reading)
            if load is None:
                return None
            rows.append((dev, load, rule.params_for(dev).get("capacity_kw", 1.0)))  # equal rings by default
        try:
            return ring_redundancy(rows)
        except ValueError:
            return None  # e.g. a capacity of 0 kW: nothing to estimate, so the alert holds

    def _site_labels(self, scenario: str | None) -> dict[str, str]:
        labels = {"site": self.site_id}
        if scenario:
            labels["scenario"] = scenario
        return labels

    def _subjects_of(self, rule: Rule) -> list[str]:
        """Devices a rule applies to, worked out once per rule."""
        subjects = self._subjects.get(rule.name)
        if subjects is None:
            subjects = self._subjects[rule.name] = [d for d in self.devices if matches(rule, *self._where(d))]
        return subjects

    def _fresh_value(self, device: str, point: str, reading: Reading) -> float | None:
        """The latest good, not stale value of a point (a drill's own value first), else None."""
        latest = self.latest.get((device, point, reading.scenario)) or self.latest.get((device, point, None))
        if latest is None or latest.quality is not Quality.GOOD or latest.value is None:
            return None
        return None if self._stale(device, latest, reading.ts) else latest.value

    def _stale(self, device: str, latest: Reading, now: float) -> bool:
        return now - latest.ts > DEFAULT_STALE_AFTER * max(self.devices[device].poll_interval_s, 1.0)

    def _where(self, device_id: str) -> tuple[str, str, str]:
        device = self.devices[device_id]
        return device.device_class, device.room, device.id

    def _derive(self, rule: Rule, reading: Reading) -> Estimate | bool | None:
        """The derived value this reading updates: an Estimate, None (inputs missing) or False (not an input)."""
        if rule.derived == "rate_of_change":
            return self._rate(rule, reading)
        inputs = DERIVED_INPUTS[rule.derived or ""]
        if reading.point not in inputs:
            return False
        values = [self._good_value(reading.device, point, reading.scenario) for point in inputs]
        if any(v is None for v in values):
            return None
        return _compute(rule, reading.device, values)  # type: ignore[arg-type]

    def _rate(self, rule: Rule, reading: Reading) -> Estimate | bool | None:
        if not matches(rule, *self._where(reading.device), reading.point):
            return False
        if reading.value is None:
            return None
        key = (rule.name, reading.device, reading.point, reading.scenario)
        window = self.rates.setdefault(key, RateWindow(rule.window or 3600.0))
        change = window.add(reading.ts, reading.value)
        return None if change is None else Estimate(change, f"change over the last {window.window_s / 60:g} min")

    def _good_value(self, device: str, point: str, scenario: str | None) -> float | None:
        reading = self.latest.get((device, point, scenario))
        return reading.value if reading is not None and reading.quality is Quality.GOOD else None

    def _state_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        enum = self.enums[reading.device].get(reading.point)
        if not enum or not matches(rule, *self._where(reading.device), reading.point):
            return []
        labels = self._labels(rule, reading.device, reading.point, reading.scenario)
        state = enum.get(int(reading.value)) if reading.value is not None else None
        known, condition = _state_condition(rule, state, reading)
        return [_Eval(labels, known, condition, reading.value, reading.ts, reading.scenario)]

    def _missing_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        severity = Severity(rule.severity or "warning")
        if rule.scope == "device":
            if reading.point != REACHABLE_POINT:
                return [self._device_eval(rule, reading.device, reading.ts, False)]
            down = reading.quality is not Quality.GOOD or reading.value == 0
            return [self._device_eval(rule, reading.device, reading.ts, down)]
        if reading.point == REACHABLE_POINT or not matches(rule, *self._where(reading.device), reading.point):
            return []
        labels = self._labels(rule, reading.device, reading.point, reading.scenario)
        known = not self._device_down(reading.device, reading.ts, rule)  # the device alert covers its points
        missing = reading.quality is not Quality.GOOD
        return [_Eval(labels, known, severity if missing else None, None, reading.ts, reading.scenario)]

    def _device_eval(self, rule: Rule, device_id: str, ts: float, down: bool) -> _Eval:
        labels = self._labels(rule, device_id, REACHABLE_POINT, None)
        return _Eval(labels, True, Severity(rule.severity or "critical") if down else None, None, ts, None)

    def _device_down(self, device_id: str, now: float, rule: Rule) -> bool:
        """Unreachable, or silent for too long: the per-device alert covers its points."""
        reach = self.latest.get((device_id, REACHABLE_POINT, None))
        if reach is not None and (reach.quality is not Quality.GOOD or reach.value == 0):
            return True
        seen = self.device_seen.get(device_id, self.started_at)
        return now - seen > rule.stale_after * self.devices[device_id].poll_interval_s

    def _stale_evals(self, rule: Rule, now: float) -> list[_Eval]:
        evals = []
        for device_id in self._subjects_of(rule):
            if rule.scope == "device":
                evals.append(self._device_eval(rule, device_id, now, self._device_down(device_id, now, rule)))
            else:
                evals += self._stale_points(rule, device_id, now)
        return evals

    def _stale_points(self, rule: Rule, device_id: str, now: float) -> list[_Eval]:
        limit = rule.stale_after * self.devices[device_id].poll_interval_s
        down = self._device_down(device_id, now, rule)
        evals = []
        for (dev, point, scenario) in list(self.latest):
            if dev != device_id or point == REACHABLE_POINT or not matches(rule, *self._where(dev), point):
                continue
            last_good = self.good_ts.get((dev, point, scenario))
            missing = last_good is None or now - last_good > limit
            severity = Severity(rule.severity or "warning") if missing else None
            # while the device is down its own alert speaks for it: point alerts hold, neither raise nor resolve
            evals.append(_Eval(self._labels(rule, dev, point, scenario), not down, severity, None, now, scenario))
        return evals

    # -- schedule rules ---------------------------------------------------------------------------------

    def _schedule_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        """Start the device's clock, credit a qualifying test; the overdue state when it may have changed.

        A drill (scenario) is never a real test: its readings neither start the clock nor qualify.
        """
        if reading.scenario or rule.qualifying is None:
            return []
        started = self.book.start(rule, reading.device, reading.ts)
        where = self._where(reading.device)
        if not any(self._reads(t, reading.device, where, reading.point) for t in rule.qualifying.when.all_terms):
            return [self._overdue_eval(rule, reading.device, reading.ts)] if started else []
        truth = self._truth(rule.qualifying.when, reading.device, reading)
        if not self.book.qualify(rule, reading.device, reading.ts, truth) and not started:
            return []
        return [self._overdue_eval(rule, reading.device, reading.ts)]

    def _overdue_eval(self, rule: Rule, device: str, now: float) -> _Eval:
        """Overdue when the last qualifying test (else the first time facwatch watched the device) is too old."""
        labels, notes = self.book.context(rule, device, lambda: self._schedule_labels(rule, device))
        condition, days = self.book.overdue(rule, device, now)
        return _Eval(labels, True, condition, days, now, None, notes=notes)

    def _schedule_labels(self, rule: Rule, device: str) -> dict[str, str]:
        labels = self._labels(rule, device, "", None)
        del labels["point"]  # a schedule is about the device
        return labels

    # -- compound rules ---------------------------------------------------------------------------------

    def _compound_evals(self, rule: Rule, reading: Reading) -> list[_Eval]:
        """Re-evaluate a compound rule for every subject whose inputs include the point that just changed."""
        terms = [*(rule.when.all_terms if rule.when else ()), *(rule.unless.all_terms if rule.unless else ())]
        where = self._where(reading.device)
        subjects: list[str | None] = [None] if rule.scope == "site" else list(self._subjects_of(rule))
        evals = []
        for subject in subjects:
            if not any(self._reads(term, subject, where, reading.point) for term in terms):
                continue
            truth = _and(self._truth(rule.when, subject, reading), _not(self._truth(rule.unless, subject, reading)))
            if subject is None:
                labels = {"site": self.site_id}
                if reading.scenario:
                    labels["scenario"] = reading.scenario
                poll = max((d.poll_interval_s for d in self.devices.values()), default=0.0)
            else:
                labels = self._labels(rule, subject, "", reading.scenario)
                del labels["point"]
                poll = None
            condition = Severity(rule.severity or "warning") if truth else None
            evals.append(_Eval(labels, truth is not None, condition, None, reading.ts, reading.scenario,
                               poll_interval=poll))
        return evals

    def _reads(self, term: Term, subject: str | None, where: tuple[str, str, str], point: str) -> bool:
        """True when this term reads ``point`` of the device at ``where`` for this subject."""
        if not any(fnmatch.fnmatchcase(point, glob) for glob in term.point):
            return False
        if term.same_device() and subject is not None:
            return where[2] == subject
        filters = (term.device_class, term.room, term.device)
        return all(any(fnmatch.fnmatchcase(value, glob) for glob in (globs or ("*",)))
                   for globs, value in zip(filters, where, strict=True))

    def _truth(self, cond: Condition | None, subject: str | None, reading: Reading) -> bool | None:
        """Three-valued truth of a condition: None when missing data could change the answer."""
        if cond is None:
            return False
        term = cond.as_term
        if term is not None:
            return _any(self._inputs(term, subject, reading))
        if cond.any is not None:
            return _any([self._truth(c, subject, reading) for c in cond.any])
        if cond.all is not None:
            return _not(_any([_not(self._truth(c, subject, reading)) for c in cond.all]))
        if cond.not_ is not None:
            return _not(self._truth(cond.not_, subject, reading))
        groups = [self._inputs(t, subject, reading) for t in cond.of or ()]
        if any(not group for group in groups):
            return None  # a term with no data at all
        values = [v for group in groups for v in group]
        true, unknown = values.count(True), values.count(None)
        need = cond.count_at_least or 1
        return True if true >= need else False if true + unknown < need else None

    def _inputs(self, term: Term, subject: str | None, reading: Reading) -> list[bool | None]:
        """The term's truth on each profile point it reads (latest value); None = no valid, fresh value.

        A drill (scenario) reads its own values first and the real ones for points it does not simulate.
        """
        out: list[bool | None] = []
        # a term about the subject's own device reads nothing else: skip the rest of the site
        devices = [subject] if subject is not None and term.same_device() else self.devices
        for dev in devices:
            where = self._where(dev)
            points = {p: None for p in self.gauges[dev]} if term.numeric() else self.enums[dev]
            for point, enum in points.items():
                if not self._reads(term, subject, where, point):
                    continue
                key = (dev, point, reading.scenario) if (dev, point, reading.scenario) in self.latest else (
                    dev, point, None)
                latest = self.latest.get(key)
                if (latest is None or latest.quality is not Quality.GOOD or latest.value is None
                        or self._stale(dev, latest, reading.ts)):
                    out.append(None)
                elif enum is None:
                    out.append(term.admits(latest.value))
                else:
                    out.append(_state_truth(term, enum, latest.value, self.prior.get(key)))
        return out

    def _fresh(self, track: _Track, now: float) -> bool:
        """A pending alert fires on the clock only while its data is not stale."""
        if track.last_ts is None:
            return False
        return now - track.last_ts <= DEFAULT_STALE_AFTER * max(track.poll_interval, 1.0)

    # -- state machine ----------------------------------------------------------------------------------

    def _apply_all(self, rule: Rule, evals: list[_Eval]) -> list[Alert]:
        changed = []
        for ev in evals:
            track = self._track(rule, ev)
            if not ev.known:
                track.known = False  # data missing: hold whatever state the alert is in
                continue
            track.known, track.condition, track.last_ts = True, ev.condition, ev.ts
            if track.resume is not None:
                _resume(track, ev.condition, ev.ts)
            changed += self._step(track, ev.condition, ev, ev.ts, ev.scenario)
        return changed

    def _fingerprint(self, rule: str, labels: dict[str, str]) -> str:
        """The alert's fingerprint, hashed once per identity (every evaluation asks for it)."""
        key = (rule, tuple(labels.items()))
        fp = self._fingerprints.get(key)
        if fp is None:
            fp = self._fingerprints[key] = fingerprint(rule, labels)
        return fp

    def _track(self, rule: Rule, ev: _Eval) -> _Track:
        fp = self._fingerprint(rule.name, ev.labels)
        if fp not in self.tracks:
            alert = Alert(rule.name, ev.labels, Severity.OK, AlertState.INACTIVE, scenario=ev.scenario)
            self.tracks[fp] = _Track(alert, rule, fp)
        track = self.tracks[fp]
        if ev.poll_interval is not None:
            track.poll_interval = ev.poll_interval
        else:
            track.poll_interval = self.devices[ev.labels["device"]].poll_interval_s
        return track

    def _step(self, track: _Track, condition: Severity | None, ev: _Eval | None, ts: float,
              scenario: str | None) -> list[Alert]:
        before = track.alert
        after = _next(track, condition, ts)
        if ev is not None:
            after = _with_context(track.rule, after, ev)
        track.alert = after
        if after.state == before.state and after.severity == before.severity:
            self._sync_timer(track, ts)
            return []
        after = replace(after, updated_at=ts, scenario=scenario)
        track.alert = after
        self.store.save(after, before.state)
        self._sync_timer(track, ts)
        return [after]

    def _sync_timer(self, track: _Track, ts: float) -> None:
        """Queue the track's timer for saving every TIMER_SAVE_S it runs, and for deletion when it ends.

        A timer that ends within TIMER_SAVE_S is never written (the common flicker costs nothing).
        """
        want = _timer(track)
        saved = track.saved
        if want is None:
            if saved is not None:
                track.saved = self._timers[track.fp] = None
            return
        kind, started = want
        since = saved.seen_at if saved is not None and (saved.kind, saved.started) == want else started
        if ts - since >= TIMER_SAVE_S:
            track.saved = self._timers[track.fp] = Timer(kind, started, ts)

    def _save_progress(self) -> None:
        """Store the timers and qualifying runs that changed, in one transaction."""
        runs = self.book.take_changes()
        if self._timers or runs:
            self.store.save_progress(self._timers, runs)
            self._timers = {}


def _next(track: _Track, condition: Severity | None, ts: float) -> Alert:
    """The alert after one step of the state machine with this condition at ``ts``."""
    alert, rule = track.alert, track.rule
    if condition is not None:
        track.cleared_since = None
        if alert.state not in _ACTIVE:  # a new episode: a fresh pending alert, old ack dropped
            alert = replace(alert, state=AlertState.PENDING, active_since=ts, fired_at=None, resolved_at=None,
                            acknowledged_by=None, acknowledged_at=None, ack_note=None)
            track.pending_since = None
        since = _pending_since(track, alert, ts)
        if alert.state is AlertState.PENDING and ts - since >= rule.for_:
            alert = replace(alert, state=AlertState.FIRING, fired_at=ts)
            track.pending_since = None
        return alert if alert.severity == condition else replace(alert, severity=condition)
    track.pending_since = None
    if alert.state is AlertState.PENDING:
        return replace(alert, state=AlertState.INACTIVE, active_since=None)
    if alert.state is not AlertState.FIRING or (rule.latch and alert.acknowledged_at is None):
        return alert  # a latched alert stays firing until someone acknowledges it
    track.cleared_since = track.cleared_since if track.cleared_since is not None else ts
    if ts - track.cleared_since >= rule.clear_for:
        return replace(alert, state=AlertState.RESOLVED, resolved_at=ts)
    return alert


def _pending_since(track: _Track, alert: Alert, ts: float) -> float:
    """Where the `for` counts from: active_since, unless a restart resumed it (downtime left out)."""
    if track.pending_since is not None:
        return track.pending_since
    return ts if alert.active_since is None else alert.active_since


def _timer(track: _Track) -> tuple[str, float] | None:
    """(kind, started) of the track's timer under way, or None."""
    alert = track.alert
    if alert.state is AlertState.PENDING:
        return PENDING, _pending_since(track, alert, alert.updated_at or 0.0)
    if alert.state is AlertState.FIRING and track.cleared_since is not None:
        return CLEARING, track.cleared_since
    return None


def _unsaved_timer(alert: Alert) -> Timer | None:
    """A pending alert without a stored timer was seen pending only when it began: its `for` starts over."""
    if alert.state is not AlertState.PENDING or alert.active_since is None:
        return None
    return Timer(PENDING, alert.active_since, alert.active_since)


def _resume(track: _Track, condition: Severity | None, ts: float) -> None:
    """At the first evaluation after a restart: carry on a stored timer whose condition still holds.

    It counts on from the time it had run before the restart, so the downtime itself never counts.
    """
    timer, track.resume = track.resume, None
    assert timer is not None
    state = track.alert.state
    if timer.kind == PENDING and state is AlertState.PENDING and condition is not None:
        track.pending_since = ts - timer.held
    elif timer.kind == CLEARING and state is AlertState.FIRING and condition is None:
        track.cleared_since = ts - timer.held


def _state_truth(term: Term, enum: Mapping[int, EnumState], value: float, prior: float | None) -> bool | None:
    """A state term on one point: in ``state``, or just changed into ``becomes``; None when a state is unknown."""
    state = _known_state(enum, value)
    if state is None:
        return None
    if term.becomes is None:
        return state.name in (term.state or ())
    before = None if prior is None else _known_state(enum, prior)
    if before is None:
        return None  # e.g. the first value after a restart: a change cannot be told from an old result
    return state.name in term.becomes and before.name != state.name


def _known_state(enum: Mapping[int, EnumState], value: float) -> EnumState | None:
    state = enum.get(int(value))
    return state if state is not None and state.severity is not Severity.UNKNOWN else None


def _any(values: list[bool | None]) -> bool | None:
    """Kleene OR: true if any is true, false if all are false, else unknown (also for no values)."""
    if True in values:
        return True
    return False if values and None not in values else None


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return True if a and b else None


def _threshold(rule: Rule, value: float, current: Severity | None) -> Severity | None:
    """Worst level breached; a level already active clears only past the hysteresis margin."""
    for severity, level in rule.levels():
        held = current is not None and severity.rank <= current.rank
        if level.breached(value, rule.hysteresis if held else 0.0):
            return severity
    return None


def _state_condition(rule: Rule, state: EnumState | None, reading: Reading) -> tuple[bool, Severity | None]:
    """(known, condition) of a state rule for one reading; an unknown state holds the alert."""
    if reading.quality is not Quality.GOOD or state is None or state.severity is Severity.UNKNOWN:
        return False, None
    if rule.states is not None:
        if state.name not in rule.states:
            return True, None
        fixed = rule.severity or (state.severity if state.severity.rank >= Severity.INFO.rank else "warning")
        return True, Severity(fixed)
    return True, state.severity if state.severity.rank >= Severity(rule.min_severity).rank else None


def _compute(rule: Rule, device: str, values: list[float]) -> Estimate | None:
    """A derived value from its inputs and the rule's parameters (REFERENCE.md §6, §7.2, §7.4)."""
    params = rule.params_for(device)
    try:
        if rule.derived == "dew_point":
            return Estimate(dew_point(values[0], values[1]), "Magnus a=17.62, b=243.12 °C")
        if rule.derived == "ups_autonomy_full_load":
            return ups_autonomy_full_load(values[0], values[1], params.get("peukert_exponent", 1.2))
        return fuel_days_full_load(values[0], params["tank_litres"], params["rated_kw"], params["sfc_l_per_kwh"],
                                   params.get("usable_fraction", 1.0))
    except (ValueError, KeyError, ZeroDivisionError):
        return None  # e.g. zero load: no projection possible, so the alert holds


def _with_context(rule: Rule, alert: Alert, ev: _Eval) -> Alert:
    """The alert with the evaluation's value, annotations and summary (unchanged: the same object)."""
    annotations, summary = _annotations(rule, ev), _summary(rule, ev, alert.severity)
    if alert.value == ev.value and alert.summary == summary and alert.annotations == annotations:
        return alert
    return replace(alert, value=ev.value, annotations=annotations, summary=summary)


def _annotations(rule: Rule, ev: _Eval) -> dict[str, str]:
    annotations = {**rule.annotations, **(ev.notes or {})}
    if ev.method:
        annotations["method"] = f"estimate: {ev.method}"
    return annotations


def _summary(rule: Rule, ev: _Eval, severity: Severity) -> str:
    context = {**ev.labels, "rule": rule.name, "severity": severity.value,
               "value": "n/a" if ev.value is None else f"{ev.value:.1f}"}
    template = rule.summary or "{rule} on {device} {point}: {value}"
    try:
        return template.format_map(context)
    except (KeyError, ValueError, IndexError):
        return template
