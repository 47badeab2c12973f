"""Schedule rules' clocks and the qualifying runs under way, both persisted across restarts.

A clock counts from the last qualifying test (else from when facwatch first watched the device). A run
under way (e.g. the generator loaded ≥ 30 % for 20 of the 30 minutes a test needs) is stored too, and
resumes after a restart when the qualifying condition holds again at the first evaluation after it and
the gap since the last true evaluation before it is within the rule's stale limit (``stale_after`` poll
intervals: the same limit that splits a run on missing data, so facwatch being down is treated exactly
like a device that did not answer). Otherwise the run starts over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from alerts.derived import QualifyingRun
from alerts.rules import Rule
from alerts.state import AlertStateStore, RunMark, ScheduleMark
from collectors.model import Severity

DAY_S = 86400.0
Key = tuple[str, str]  # (rule, device)


class ScheduleBook:
    """The clocks and qualifying runs of every (rule, device); the engine saves changed runs with its timers."""

    def __init__(self, store: AlertStateStore, rules: Mapping[str, Rule], poll_intervals: Mapping[str, float]):
        self.store = store
        self.poll_intervals = poll_intervals
        self.marks: dict[Key, ScheduleMark] = store.schedule_marks()
        self.runs: dict[Key, QualifyingRun] = {}
        self._saved: dict[Key, RunMark] = {}
        self._changed: dict[Key, RunMark | None] = {}
        self._context: dict[Key, tuple[ScheduleMark, dict[str, str], dict[str, str]]] = {}
        for (name, device), mark in store.schedule_runs().items():
            rule = rules.get(name)
            if rule is not None and rule.qualifying is not None and device in poll_intervals:
                self.runs[(name, device)] = _restored(self._new_run(rule, device), mark)
                self._saved[(name, device)] = mark

    def start(self, rule: Rule, device: str, ts: float) -> bool:
        """Start the device's clock unless it runs already; True when this call started it."""
        key = (rule.name, device)
        if key in self.marks:
            return False
        self.marks[key] = self.store.start_schedule(rule.name, device, ts)
        return True

    def qualify(self, rule: Rule, device: str, ts: float, truth: bool | None) -> bool:
        """Feed the qualifying condition; True when a test has just qualified (the clock then counts from it)."""
        key = (rule.name, device)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = self._new_run(rule, device)
        qualified = run.update(ts, truth)
        self._note(key, run)
        if qualified:
            self.marks[key] = self.store.record_qualified(rule.name, device, ts)
        return qualified

    def overdue(self, rule: Rule, device: str, now: float) -> tuple[Severity | None, float]:
        """(condition, age in days) of the device's schedule: overdue when the reference is older than ``every``."""
        age = now - self.marks[(rule.name, device)].reference
        condition = Severity(rule.severity or "warning") if age > (rule.every or 0.0) else None
        # days, rounded so the alert object changes every ~15 min rather than on every 2 s tick
        return condition, round(age / DAY_S, 2)

    def context(self, rule: Rule, device: str, labels: Callable[[], dict[str, str]]
                ) -> tuple[dict[str, str], dict[str, str]]:
        """Labels and annotations of a schedule alert, rebuilt only when its clock moves (tick asks every 2 s)."""
        key = (rule.name, device)
        mark = self.marks[key]
        cached = self._context.get(key)
        if cached is None or cached[0] != mark:
            cached = self._context[key] = (mark, labels(), schedule_notes(rule, device, mark))
        return cached[1], cached[2]

    def changed(self) -> bool:
        """True when some run's stored form changed since the last ``take_changes``."""
        return bool(self._changed)

    def take_changes(self) -> dict[Key, RunMark | None]:
        """The runs whose stored form changed since the last call (None: forget it), for the engine to save."""
        changed, self._changed = self._changed, {}
        return changed

    def _new_run(self, rule: Rule, device: str) -> QualifyingRun:
        assert rule.qualifying is not None
        return QualifyingRun(rule.qualifying.for_, rule.stale_after * max(self.poll_intervals[device], 1.0))

    def _note(self, key: Key, run: QualifyingRun) -> None:
        """Remember a run whose stored form changed (every true evaluation moves ``last_true``)."""
        now = None if run.since is None or run.last_true is None else RunMark(run.since, run.last_true, run.credited)
        if now == self._saved.get(key):
            return
        if now is None:
            del self._saved[key]
        else:
            self._saved[key] = now
        self._changed[key] = now


def schedule_notes(rule: Rule, device: str, mark: ScheduleMark) -> dict[str, str]:
    """The annotations of a schedule alert: the last qualifying test and when the next one is due."""
    if mark.last_qualified is None:
        last = f"none seen since facwatch began watching {device} on {utc(mark.baseline)}"
    else:
        last = utc(mark.last_qualified)
    return {"last_qualifying_test": last, "due": utc(mark.reference + (rule.every or 0.0))}


def utc(ts: float) -> str:
    """E.g. ``2026-11-23 00:30 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _restored(run: QualifyingRun, mark: RunMark) -> QualifyingRun:
    run.since, run.last_true, run.credited = mark.since, mark.last_true, mark.credited
    return run
