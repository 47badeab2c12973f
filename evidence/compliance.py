"""Envelope compliance per room, sensor and month, computed from the stored readings.

The envelopes are the alert rules' own levels (``inlet_temperature_out_of_envelope``,
``inlet_humidity_out_of_envelope`` in config/rules/default.yaml): each level of a plain threshold
rule is one envelope, and a value is inside it when the level is not breached (no hysteresis: that
is the alert's business, not the figure's). Each report row names the rule and a hash of its
definition, so an auditor can tell which envelope version was in force.

Time accounting, per sensor and point, sample-and-hold:

* a GOOD sample at ``t`` stands for ``[t, next sample)``, but for at most ``hold`` seconds
  (``stale_after`` poll intervals, as the ``point_data_missing`` rule counts: 3 × the device's poll
  interval by default); a sample that is not GOOD stands for nothing;
* time no GOOD sample stands for is a data gap: reported on its own and never compliant;
* scenario-tagged (drill) samples are dropped first, so drill time shows as a gap, never as compliance.

``inside_pct + outside_pct + gap_pct = 100`` of the period (clipped to the month). Excursions are the
maximal stretches outside one envelope (a gap ends one), with their peak; when an alert of the same
rule covered the excursion, its state, acknowledgement and note are joined from ``alert_state`` and
``alert_transition`` (alerts/state.py).

The samples come from a ReadStore (``samples`` / ``sample_before``): the SQLite store, or InfluxDB on a
site with ``storage.influx``; the alerts are always read from the SQLite file.
"""

from __future__ import annotations

import calendar
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.rules import Level, Rule, load_rules, matches
from collectors.model import Quality
from config.load import Site
from storage.base import ReadStore, Sample

DEFAULT_RULES = ("inlet_temperature_out_of_envelope", "inlet_humidity_out_of_envelope")
DEFAULT_STALE_AFTER = 3.0  # poll intervals, as the point_data_missing rule


@dataclass(frozen=True, slots=True)
class Envelope:
    """One level of one rule: the band a value must stay in."""

    rule: str
    rule_hash: str
    level: str  # warning | critical
    limits: Level

    def inside(self, value: float) -> bool:
        """True when the value is inside the band (on the limit counts as inside, as for the alert)."""
        return not self.limits.breached(value, 0.0)


@dataclass(slots=True)
class _Tally:
    inside_ms: int = 0
    outside_ms: int = 0
    excursions: list[dict[str, Any]] = field(default_factory=list)
    open: dict[str, Any] | None = None


def rule_hash(rule: Rule) -> str:
    """A short, stable hash of a rule's whole definition: the envelope version."""
    text = json.dumps(rule.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def envelopes(rules: Iterable[Rule], names: Iterable[str] = DEFAULT_RULES) -> list[tuple[Rule, list[Envelope]]]:
    """Each named plain threshold rule with its envelopes, worst level last."""
    wanted = list(names)
    found = []
    for rule in rules:
        if rule.name in wanted and rule.kind == "threshold" and rule.derived is None:
            levels = [(name, level) for name, level in (("warning", rule.warning), ("critical", rule.critical))
                      if level is not None]
            found.append((rule, [Envelope(rule.name, rule_hash(rule), name, level) for name, level in levels]))
    return found


def envelope_compliance(store_path: str | Path, site: Site, start: float, end: float, *,
                        readings: ReadStore | None = None, rules: list[Rule] | None = None,
                        names: Iterable[str] = DEFAULT_RULES,
                        stale_after: float = DEFAULT_STALE_AFTER) -> list[dict[str, Any]]:
    """Compliance rows for [start, end): one per month × sensor × point × envelope, sorted.

    ``store_path`` is the SQLite file with the alerts; ``readings`` the store with the samples (default: the
    SqliteStore of that file; pass the InfluxStore on a site with ``storage.influx``).
    """
    if readings is None:
        from storage.sqlite import SqliteStore

        with SqliteStore(store_path, background_backfill=False) as own:
            return envelope_compliance(store_path, site, start, end, readings=own, rules=rules, names=names,
                                       stale_after=stale_after)
    conn = sqlite3.connect(f"file:{Path(store_path)}?mode=ro", uri=True)
    try:
        rows = []
        for rule, levels in envelopes(rules if rules is not None else load_rules(), names):
            for device in site.devices:
                points = [p.name for p in site.profile(device).points
                          if matches(rule, device.device_class, device.room, device.id, p.name)]
                for point in points:
                    hold_ms = round(stale_after * device.poll_interval_s * 1000)
                    for month_start, month_end in months(start, end):
                        covered = _covered(readings, device.id, point, month_start, month_end, hold_ms)
                        rows += _rows(conn, device.room, device.id, point, levels, month_start, month_end, covered)
        return sorted(rows, key=lambda r: (r["month"], r["room"], r["device"], r["point"], r["rule"], r["level"]))
    finally:
        conn.close()


def months(start: float, end: float) -> Iterator[tuple[float, float]]:
    """[start, end) cut at UTC month boundaries."""
    cursor = start
    while cursor < end:
        day = datetime.fromtimestamp(cursor, UTC)
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        boundary = calendar.timegm((year, month, 1, 0, 0, 0))
        yield cursor, min(boundary, end)
        cursor = min(boundary, end)


def _rows(conn: sqlite3.Connection, room: str, device: str, point: str, levels: list[Envelope],
          start: float, end: float, covered: Iterable[tuple[int, int, float]]) -> list[dict[str, Any]]:
    start_ms, end_ms = round(start * 1000), round(end * 1000)
    tallies = [_Tally() for _ in levels]
    gaps, covered_to = [], start_ms
    for t0, t1, value in covered:
        if t0 > covered_to:
            gaps.append(t0 - covered_to)
        covered_to = t1
        for envelope, tally in zip(levels, tallies, strict=True):
            _count(tally, envelope, t0, t1, value)
    if end_ms > covered_to:
        gaps.append(end_ms - covered_to)
    period_ms = end_ms - start_ms
    month = datetime.fromtimestamp(start, UTC).strftime("%Y-%m")
    rows = []
    for envelope, tally in zip(levels, tallies, strict=True):
        _close(tally)
        gap_ms = period_ms - tally.inside_ms - tally.outside_ms
        rows.append({
            "month": month, "room": room, "device": device, "point": point, "rule": envelope.rule,
            "rule_hash": envelope.rule_hash, "level": envelope.level,
            "limits": {"below": envelope.limits.below, "above": envelope.limits.above},
            "start": start, "end": end, "period_s": period_ms / 1000, "inside_s": tally.inside_ms / 1000,
            "outside_s": tally.outside_ms / 1000, "gap_s": gap_ms / 1000,
            "inside_pct": _pct(tally.inside_ms, period_ms), "outside_pct": _pct(tally.outside_ms, period_ms),
            "gap_pct": _pct(gap_ms, period_ms), "gap_count": len(gaps), "longest_gap_s": max(gaps, default=0) / 1000,
            "excursions": _joined(conn, envelope, device, point, tally.excursions),
        })
    return rows


def _pct(part_ms: int, whole_ms: int) -> float:
    return round(100.0 * part_ms / whole_ms, 3) if whole_ms else 0.0


def _covered(readings: ReadStore, device: str, point: str, start: float, end: float,
             hold_ms: int) -> Iterator[tuple[int, int, float]]:
    """(from, to, value) stretches in ms that GOOD samples stand for, clipped to [start, end); the rest is gap."""
    start_ms, end_ms = round(start * 1000), round(end * 1000)
    before = readings.sample_before(device, point, start, hold_ms / 1000)
    previous = None
    for sample in itertools.chain([before] if before else [], readings.samples(device, point, start, end)):
        ts_ms = round(sample.ts * 1000)
        if previous is not None:
            yield from _stretch(previous, ts_ms, start_ms, hold_ms)
        previous = sample
    if previous is not None:
        yield from _stretch(previous, end_ms, start_ms, hold_ms)


def _stretch(sample: Sample, next_ms: int, start_ms: int, hold_ms: int) -> Iterator[tuple[int, int, float]]:
    if sample.quality is not Quality.GOOD or sample.value is None:
        return
    ts_ms = round(sample.ts * 1000)
    t0, t1 = max(ts_ms, start_ms), min(next_ms, ts_ms + hold_ms)
    if t1 > t0:
        yield t0, t1, float(sample.value)


def _count(tally: _Tally, envelope: Envelope, t0: int, t1: int, value: float) -> None:
    if envelope.inside(value):
        tally.inside_ms += t1 - t0
        _close(tally)
        return
    tally.outside_ms += t1 - t0
    current = tally.open
    if current is not None and current["_end_ms"] != t0:  # a gap in between: that excursion ended
        _close(tally)
        current = None
    if current is None:
        current = tally.open = {"start": t0 / 1000, "peak": value, "_end_ms": t1}
    current["_end_ms"] = t1
    if _further(envelope.limits, value, current["peak"]):
        current["peak"] = value


def _further(limits: Level, value: float, peak: float) -> bool:
    """True when value is further outside the band than the peak so far."""
    def distance(v: float) -> float:
        return max(v - limits.above if limits.above is not None else 0.0,
                   limits.below - v if limits.below is not None else 0.0)
    return distance(value) > distance(peak)


def _close(tally: _Tally) -> None:
    current, tally.open = tally.open, None
    if current is not None:
        end_ms = current.pop("_end_ms")
        current["end"] = end_ms / 1000
        current["duration_s"] = end_ms / 1000 - current["start"]
        tally.excursions.append(current)


def _joined(conn: sqlite3.Connection, envelope: Envelope, device: str, point: str,
            excursions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each excursion with the real alert of the same rule that covered it, if any (ack, note)."""
    alerts = _alerts(conn, envelope.rule, device, point)
    out = []
    for excursion in excursions:
        covering = next((a for a in alerts if _overlaps(a, excursion)), None)
        out.append({**excursion, "alert": covering})
    return out


def _alerts(conn: sqlite3.Connection, rule: str, device: str, point: str) -> list[dict[str, Any]]:
    """Episodes (pending → resolved/inactive) of one real alert, from its transitions and current state."""
    try:
        transitions = conn.execute(
            "SELECT fingerprint, labels, to_state, severity, at FROM alert_transition "
            "WHERE rule = ? AND scenario IS NULL ORDER BY id", (rule,)).fetchall()
        states = {row[0]: row[1:] for row in conn.execute(
            "SELECT fingerprint, active_since, acknowledged_by, acknowledged_at, ack_note FROM alert_state "
            "WHERE rule = ? AND scenario IS NULL", (rule,))}
    except sqlite3.OperationalError:  # no alert tables in this file: nothing to join
        return []
    episodes: list[dict[str, Any]] = []
    current: dict[str, dict[str, Any]] = {}
    for fingerprint, labels, to_state, severity, at in transitions:
        labels = json.loads(labels)
        if labels.get("device") != device or labels.get("point") != point:
            continue
        episode = current.get(fingerprint)
        if to_state == "pending" or episode is None:
            episode = current[fingerprint] = {"fingerprint": fingerprint, "from": at, "to": None, "fired": False,
                                              "severity": severity}
            episodes.append(episode)
        episode["fired"] = episode["fired"] or to_state == "firing"
        episode["severity"] = severity if to_state in ("pending", "firing") else episode["severity"]
        if to_state in ("resolved", "inactive"):
            episode["to"] = at
            del current[fingerprint]
    for episode in episodes:
        active_since, by, acked_at, note = states.get(episode["fingerprint"], (None, None, None, None))
        same = active_since is not None and active_since == episode["from"]
        episode.update(acknowledged_by=by if same else None, acknowledged_at=acked_at if same else None,
                       ack_note=note if same else None)
    return episodes


def _overlaps(alert: dict[str, Any], excursion: dict[str, Any]) -> bool:
    alert_end = alert["to"] if alert["to"] is not None else float("inf")
    return alert["from"] is not None and alert["from"] < excursion["end"] and alert_end > excursion["start"]
