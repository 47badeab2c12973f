"""View-models of the Evidence page: the site's SQLite file and ReadStore + a period in, rows out (no Dash).

Every figure comes from the evidence package's own readers (``evidence.records``, ``evidence.compliance``,
``evidence.thresholds``, ``evidence.drill``, ``evidence.verify``), so the page shows exactly what an
exported pack holds. Periods are whole UTC days, like ``facwatch evidence export --from/--to`` (the "to"
day included). Real records and drills are read separately and never mixed.
"""

from __future__ import annotations

import calendar
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.rules import Rule
from alerts.sharded import shard_set_of
from collectors.sharding import Shard
from config.load import Site
from storage.base import ReadStore

MISSING = "—"
MAX_PROBLEMS = 5  # of the audit log's, on the page (the CLI's verify-log lists them all)
MAX_REASON = 500
MAX_NAME = 200


# --- the period --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in epoch seconds, from the first day's midnight UTC to the end of the last day."""

    first_day: date
    last_day: date

    @property
    def start(self) -> float:
        """Midnight UTC of the first day."""
        return float(calendar.timegm(self.first_day.timetuple()))

    @property
    def end(self) -> float:
        """Midnight UTC after the last day (exclusive)."""
        return float(calendar.timegm((self.last_day + timedelta(days=1)).timetuple()))

    @property
    def label(self) -> str:
        """``2026-11-01 – 2026-11-30 (UTC)``."""
        return f"{self.first_day.isoformat()} – {self.last_day.isoformat()} (UTC)"


def month_of(moment: float) -> Period:
    """The UTC calendar month that contains ``moment``."""
    day = datetime.fromtimestamp(moment, UTC).date()
    last = calendar.monthrange(day.year, day.month)[1]
    return Period(day.replace(day=1), day.replace(day=last))


def month_options(now: float, count: int = 13) -> list[tuple[str, str]]:
    """(label, ``YYYY-MM``) of the current month and the ``count - 1`` before it, newest first."""
    day = datetime.fromtimestamp(now, UTC).date().replace(day=1)
    options = []
    for _ in range(count):
        options.append((day.strftime("%B %Y"), day.strftime("%Y-%m")))
        day = (day - timedelta(days=1)).replace(day=1)
    return options


def month_period(value: Any) -> Period | None:
    """The month named ``YYYY-MM``, or None for anything else."""
    if not isinstance(value, str) or len(value) != 7:
        return None
    try:
        first = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    return month_of(first.timestamp())


def period_from_dates(first: Any, last: Any) -> Period:
    """The period of two ``YYYY-MM-DD`` dates (the last one included); ValueError with a message to show."""
    try:
        first_day, last_day = (date.fromisoformat(str(value)[:10]) for value in (first, last))
    except (TypeError, ValueError):
        raise ValueError("choose a from and a to date (YYYY-MM-DD)") from None
    if last_day < first_day:
        raise ValueError("the to date is before the from date")
    if (last_day - first_day).days > 3660:
        raise ValueError("choose a period of at most ten years")
    return Period(first_day, last_day)


# --- formatting --------------------------------------------------------------------------------------

def utc_text(ts: float | None) -> str:
    """``2026-11-22 21:30:05Z``; ``—`` for None."""
    if ts is None:
        return MISSING
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration_text(seconds: float | None) -> str:
    """``8.0 s``, ``46 min``, ``2 h 05 min``, ``3 d 4 h``; ``—`` for None."""
    if seconds is None:
        return MISSING
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86_400:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest:02d} min"
    days, rest = divmod(round(seconds / 3600), 24)
    return f"{days} d {rest} h"


def number_text(value: float | None, unit: str = "", decimals: int = 1) -> str:
    """``58.9 %``; ``—`` for None."""
    if value is None:
        return MISSING
    text = f"{float(value):.{decimals}f}"
    return f"{text} {unit}" if unit else text


def pct_text(value: float | None) -> str:
    """A share of the period: ``99.95 %`` (two decimals: 0.01 % of a month is about 4 min)."""
    return MISSING if value is None else f"{float(value):.2f} %"


# --- rows --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Kpi:
    """One labelled figure of a section's summary; ``state`` colours it (``ok``, ``warning``, ``critical``, ``""``)."""

    label: str
    text: str
    state: str = ""


@dataclass(frozen=True, slots=True)
class GeneratorRunRow:
    """A generator run: what kind, when, how long at the minimum load, and the verdict with its reasons."""

    id: int
    device: str
    kind: str
    start: str
    run: str
    at_load_label: str  # "at ≥ 30 % load"
    at_load: str  # longest unbroken stretch (of the total)
    load_mean: str
    start_time: str
    result: str  # pass | fail | not judged
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what the auditor should know, e.g. facwatch restarted during the run
    scenario: str | None = None


@dataclass(frozen=True, slots=True)
class UpsTestRow:
    """A UPS battery self-test with the battery's figures during it."""

    id: int
    device: str
    start: str
    duration: str
    result: str
    vendor_result: str
    voltage_dip: str
    runtime_min: str
    charge_min: str
    notes: tuple[str, ...] = ()  # e.g. shorter than a poll, facwatch restarted during the test
    scenario: str | None = None


@dataclass(frozen=True, slots=True)
class PowerEventRow:
    """An incident with its KPIs and notes."""

    id: int
    start: str
    duration: str
    cause: str  # "mains failure" or "UPS on battery (mains kept)"
    kpis: tuple[Kpi, ...]
    load_lost: bool
    notes: tuple[str, ...]
    scenario: str | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeFigure:
    """One envelope of one sensor point: its band and the share of the period inside it."""

    level: str
    band: str
    inside: str
    outside: str
    state: str  # ok: never outside and no gap; the level when ever outside; gap: never outside but data missing


@dataclass(frozen=True, slots=True)
class ExcursionRow:
    """A stretch outside one envelope, with the alert that covered it and its acknowledgement."""

    level: str
    start: str
    end: str
    duration: str
    peak: str
    alert: str  # "fired (critical)", "pending only", "no alert"
    acknowledged_by: str
    acknowledged_at: str
    note: str


@dataclass(frozen=True, slots=True)
class ComplianceRow:
    """Envelope compliance of one sensor point in one month (all its envelopes)."""

    month: str
    room: str
    device: str
    device_label: str
    point: str
    rule: str
    rule_hash: str
    envelopes: tuple[EnvelopeFigure, ...]
    gap: str
    gap_detail: str
    excursions: tuple[ExcursionRow, ...]
    state: str  # ok, warning, critical (worst envelope left), or gap when data is missing


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    """A rule version in force during the period: who changed it, when, why."""

    rule: str
    hash: str
    valid_from: str
    valid_to: str
    changed_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class DrillRow:
    """A drill run (``facwatch drill``): its scenario, result and expected alerts in budget."""

    id: int
    scenario: str
    started: str
    ended: str
    result: str
    time_scale: str
    expected: str
    failures: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrillRecordRow:
    """A generator run, UPS self-test or power event recorded during a drill or simulation."""

    kind: str
    scenario: str
    device: str
    start: str
    summary: str


@dataclass(frozen=True, slots=True)
class Section:
    """A section's rows, its summary figures, and the error that kept it empty (if any)."""

    rows: tuple[Any, ...] = ()
    kpis: tuple[Kpi, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """Everything the Evidence page shows for one period."""

    period: Period
    generator_runs: Section
    ups_tests: Section
    power_events: Section
    compliance: Section
    thresholds: Section
    drills: Section
    drill_records: Section
    compliance_until: float | None = None  # compliance stops here when the period is not over yet


@dataclass(frozen=True, slots=True)
class AuditStatus:
    """The live audit log as ``verify_log`` sees it."""

    state: str  # ok | problems | unavailable
    headline: str
    head_seq: str
    records: str
    last_checkpoint: str
    checkpoints: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvidenceSource:
    """Where the page reads evidence: a SQLite file, the site (a shard's devices only), the readings.

    On a sharded site each shard keeps its own records and audit log, so the page reads one shard at a
    time, as ``facwatch evidence export --shard I/N`` does; ``shard`` is None on an unsharded site.
    """

    db: Path
    site: Site
    readings: ReadStore | None
    shard: Shard | None = None

    @property
    def shard_name(self) -> str:
        """``2/2``, or "" on an unsharded site."""
        return "" if self.shard is None else f"{self.shard.index}/{self.shard.count}"


# --- reading -----------------------------------------------------------------------------------------

def evidence_view(db_path: Path, site: Site, rules: Sequence[Rule], period: Period,
                  now: float | None = None, readings: ReadStore | None = None) -> EvidenceView:
    """Every section of the page for ``period``, each read on its own (one failing leaves the others).

    Compliance stops at ``now`` when the period is not over: the rest of the month is not a data gap yet.
    ``readings``: the dashboard's ReadStore (InfluxDB with ``storage.influx``); default the SQLite file's.
    """
    from evidence.drill import drill_runs
    from evidence.records import EvidenceStore

    start, end = period.start, period.end
    until = min(end, max(start, now)) if now is not None and now < end else None

    def records(method: str, drills: bool) -> list[dict]:
        store = EvidenceStore(db_path)
        try:
            return getattr(store, method)(start, end, drills=drills)
        finally:
            store.close()

    return EvidenceView(
        period=period,
        generator_runs=_section(lambda: generator_section(records("generator_runs", False))),
        ups_tests=_section(lambda: ups_section(records("ups_self_tests", False))),
        power_events=_section(lambda: power_section(records("power_events", False))),
        compliance=_section(lambda: compliance_section(
            site, _compliance(db_path, site, rules, start, until if until is not None else end, readings))),
        thresholds=_section(lambda: threshold_section(_rule_versions(db_path, start, end))),
        drills=_section(lambda: drill_section(_drill_reports(db_path, start, end), drill_runs(db_path, start, end))),
        drill_records=_section(lambda: drill_record_section(
            records("generator_runs", True), records("ups_self_tests", True), records("power_events", True))),
        compliance_until=until,
    )


def _section(build: Callable[[], Section]) -> Section:
    try:
        return build()
    # RuntimeError: InfluxQueryError (InfluxDB down or refusing) empties compliance, not the whole page
    except (sqlite3.Error, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        return Section(error=f"could not be read: {type(exc).__name__}: {exc}")


def _compliance(db_path: Path, site: Site, rules: Sequence[Rule], start: float, end: float,
                readings: ReadStore | None) -> list[dict]:
    from evidence.compliance import envelope_compliance

    if end <= start:
        return []  # a period that has not started yet

    return envelope_compliance(db_path, site, start, end, readings=readings, rules=list(rules))


def _rule_versions(db_path: Path, start: float, end: float) -> list[dict]:
    from evidence.thresholds import rule_versions

    return rule_versions(db_path, start, end)


def _drill_reports(db_path: Path, start: float, end: float) -> dict[int, dict]:
    """Drill run id → its stored report (the expected alerts and their results)."""
    from evidence.providers import read_only

    with read_only(db_path) as conn:
        try:
            rows = conn.execute("SELECT id, report FROM drill_run WHERE started_at >= ? AND started_at < ?",
                                (start, end)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
    reports = {}
    for run_id, text in rows:
        try:
            reports[run_id] = json.loads(text)
        except ValueError:
            reports[run_id] = {}
    return reports


# --- sections ----------------------------------------------------------------------------------------

def generator_section(runs: Iterable[Mapping[str, Any]]) -> Section:
    """Generator runs with pass/fail; KPIs: runs, tests, passed, failed, outages."""
    rows = tuple(generator_row(run) for run in runs)
    tests = [r for r in rows if r.kind.startswith("test")]
    failed = sum(r.result == "fail" for r in rows)
    kpis = (Kpi("runs", str(len(rows))), Kpi("test runs", str(len(tests)), "ok" if tests else "warning"),
            Kpi("passed", str(sum(r.result == "pass" for r in rows)), "ok" if rows else ""),
            Kpi("failed", str(failed), "critical" if failed else ""),
            Kpi("in outages", str(sum(r.kind == "outage" for r in rows))))
    return Section(rows, kpis)


def generator_row(run: Mapping[str, Any]) -> GeneratorRunRow:
    """One generator run as the page shows it."""
    min_load = (run.get("criteria") or {}).get("min_load_pct", 30.0)
    longest, total = run.get("longest_at_min_load_s"), run.get("time_at_min_load_s")
    at_load = duration_text(longest)
    if total is not None and longest is not None and total - longest >= 1:
        at_load += f" (of {duration_text(total)} in all)"
    passed = run.get("passed")
    return GeneratorRunRow(
        id=int(run.get("id") or 0), device=str(run.get("device", "")), kind=str(run.get("kind", "")).replace("_", " "),
        start=utc_text(run.get("start")), run=duration_text(run.get("run_s")),
        at_load_label=f"at ≥ {min_load:g} % load", at_load=at_load,
        load_mean=number_text(run.get("load_pct_mean"), "%"), start_time=duration_text(run.get("start_s")),
        result="not judged" if passed is None else "pass" if passed else "fail",
        reasons=tuple(str(r) for r in run.get("reasons") or ()), notes=_notes(run), scenario=run.get("scenario"))


def ups_section(tests: Iterable[Mapping[str, Any]]) -> Section:
    """UPS self-tests; KPIs: tests, passed, warnings, failed."""
    rows = tuple(ups_row(test) for test in tests)
    failed = sum(r.result in ("fail", "aborted") for r in rows)
    warned = sum(r.result == "warning" for r in rows)
    kpis = (Kpi("self-tests", str(len(rows))), Kpi("passed", str(sum(r.result == "pass" for r in rows)),
                                                   "ok" if rows else ""),
            Kpi("warnings", str(warned), "warning" if warned else ""),
            Kpi("failed or aborted", str(failed), "critical" if failed else ""))
    return Section(rows, kpis)


def ups_row(test: Mapping[str, Any]) -> UpsTestRow:
    """One UPS self-test as the page shows it."""
    seen = () if test.get("seen_running", True) else ("shorter than a poll: only the result was seen",)
    return UpsTestRow(
        id=int(test.get("id") or 0), device=str(test.get("device", "")), start=utc_text(test.get("start")),
        duration=duration_text(test.get("duration_s")), result=str(test.get("result", "")),
        vendor_result=str(test.get("vendor_result", "")), voltage_dip=number_text(test.get("voltage_dip_v"), "V"),
        runtime_min=number_text(test.get("runtime_min_min"), "min"),
        charge_min=number_text(test.get("charge_min_pct"), "%", 0), notes=seen + _notes(test),
        scenario=test.get("scenario"))


def power_section(events: Iterable[Mapping[str, Any]]) -> Section:
    """Power events with their KPIs; summary: incidents, mains failures, longest on battery, load lost."""
    raw = list(events)
    rows = tuple(power_row(event) for event in raw)
    on_battery = [e.get("on_battery_s") for e in raw if e.get("on_battery_s") is not None]
    runtimes = [e.get("lowest_runtime_min") for e in raw if e.get("lowest_runtime_min") is not None]
    transfers = [e.get("time_to_generator_s") for e in raw if e.get("time_to_generator_s") is not None]
    lost = sum(r.load_lost for r in rows)
    kpis = (Kpi("incidents", str(len(rows))), Kpi("mains failures", str(sum(bool(e.get("mains_lost")) for e in raw))),
            Kpi("longest on battery", duration_text(max(on_battery)) if on_battery else MISSING),
            Kpi("lowest runtime left", number_text(min(runtimes), "min") if runtimes else MISSING),
            Kpi("slowest to generator", duration_text(max(transfers)) if transfers else MISSING),
            Kpi("load lost", str(lost), "critical" if lost else "ok" if rows else ""))
    return Section(rows, kpis)


def power_row(event: Mapping[str, Any]) -> PowerEventRow:
    """One power event as the page shows it."""
    kpis = (Kpi("mains out", duration_text(event.get("mains_out_s"))),
            Kpi("on battery (longest UPS)", duration_text(event.get("on_battery_s"))),
            Kpi("lowest runtime", number_text(event.get("lowest_runtime_min"), "min")),
            Kpi("lowest charge", number_text(event.get("lowest_charge_pct"), "%", 0)),
            Kpi("generator", str(event.get("generator") or MISSING)),
            Kpi("to rated V/Hz", duration_text(event.get("generator_rated_s"))),
            Kpi("to ATS on generator", duration_text(event.get("time_to_generator_s"))),
            Kpi("transfer break", duration_text(event.get("transfer_s"))),
            Kpi("retransfer delay", duration_text(event.get("retransfer_delay_s"))),
            Kpi("retransfer break", duration_text(event.get("retransfer_s"))))
    lost = bool(event.get("load_lost"))
    return PowerEventRow(
        id=int(event.get("id") or 0), start=utc_text(event.get("start")),
        duration=duration_text(event.get("duration_s")),
        cause="mains failure" if event.get("mains_lost", True) else "UPS on battery (mains kept)",
        kpis=kpis, load_lost=lost, notes=tuple(str(n) for n in event.get("notes") or ()),
        scenario=event.get("scenario"))


def compliance_section(site: Site, rows: Iterable[Mapping[str, Any]]) -> Section:
    """One row per month × sensor × point (its envelopes side by side); KPIs: points, fully inside, gaps."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["month"], row["room"], row["device"], row["point"], row["rule"]), []).append(row)
    out = tuple(compliance_row(site, levels) for levels in grouped.values())
    inside = sum(r.state == "ok" for r in out)
    gaps = sum(r.state == "gap" for r in out)
    outside = len(out) - inside - gaps
    kpis = (Kpi("sensor points", str(len(out))), Kpi("always inside", str(inside), "ok" if out else ""),
            Kpi("with excursions", str(outside), "warning" if outside else ""),
            Kpi("with data gaps only", str(gaps), "warning" if gaps else ""),
            Kpi("excursions", str(sum(len(r.excursions) for r in out))))
    return Section(out, kpis)


def compliance_row(site: Site, levels: Sequence[Mapping[str, Any]]) -> ComplianceRow:
    """The envelopes of one sensor point in one month, warning before critical."""
    first = levels[0]
    order = {"warning": 0, "critical": 1}
    levels = sorted(levels, key=lambda r: order.get(r["level"], 9))
    figures = tuple(EnvelopeFigure(
        r["level"], band_text(r.get("limits") or {}, r["point"]), pct_text(r.get("inside_pct")),
        pct_text(r.get("outside_pct")), r["level"] if r.get("outside_s") else "gap" if r.get("gap_s") else "ok")
        for r in levels)
    excursions = tuple(excursion_row(r["level"], e) for r in levels for e in r.get("excursions") or ())
    outside = [f.level for f in figures if f.state not in ("ok", "gap")]
    state = "critical" if "critical" in outside else "warning" if outside else \
        "gap" if first.get("gap_s") else "ok"
    gap_detail = "" if not first.get("gap_count") else \
        f"{first['gap_count']} gap(s), longest {duration_text(first.get('longest_gap_s'))}"
    return ComplianceRow(
        month=str(first["month"]), room=_room_name(site, str(first["room"])), device=str(first["device"]),
        device_label=_device_label(site, str(first["device"])), point=str(first["point"]), rule=str(first["rule"]),
        rule_hash=str(first.get("rule_hash", "")), envelopes=figures, gap=pct_text(first.get("gap_pct")),
        gap_detail=gap_detail, excursions=excursions, state=state)


def band_text(limits: Mapping[str, Any], point: str) -> str:
    """``19–23 °C`` / ``≤ 60 %RH`` from an envelope's limits."""
    unit = "°C" if "temperature" in point else "%RH" if "humidity" in point else ""
    below, above = limits.get("below"), limits.get("above")
    if below is not None and above is not None:
        return f"{below:g}–{above:g} {unit}".rstrip()
    if above is not None:
        return f"≤ {above:g} {unit}".rstrip()
    if below is not None:
        return f"≥ {below:g} {unit}".rstrip()
    return MISSING


def excursion_row(level: str, excursion: Mapping[str, Any]) -> ExcursionRow:
    """An excursion with the covering alert's state and acknowledgement."""
    alert = excursion.get("alert") or None
    if alert is None:
        covered = "no alert"
    elif alert.get("fired"):
        covered = f"fired ({alert.get('severity') or '?'})"
    else:
        covered = "pending only (did not fire)"
    alert = alert or {}
    return ExcursionRow(
        level=level, start=utc_text(excursion.get("start")), end=utc_text(excursion.get("end")),
        duration=duration_text(excursion.get("duration_s")), peak=number_text(excursion.get("peak")),
        alert=covered, acknowledged_by=str(alert.get("acknowledged_by") or ""),
        acknowledged_at=utc_text(alert["acknowledged_at"]) if alert.get("acknowledged_at") else "",
        note=str(alert.get("ack_note") or ""))


def threshold_section(versions: Iterable[Mapping[str, Any]]) -> Section:
    """Rule versions in force during the period; KPIs: rules, versions, changes within the period."""
    rows = tuple(ThresholdRow(str(v["rule"]), str(v["hash"]), _iso_text(v.get("valid_from")),
                              _iso_text(v.get("valid_to")) if v.get("valid_to") else "in force",
                              str(v.get("changed_by") or ""), str(v.get("reason") or "")) for v in versions)
    rules = len({r.rule for r in rows})
    return Section(rows, (Kpi("rules", str(rules)), Kpi("versions in force", str(len(rows))),
                          Kpi("changed in the period", str(len(rows) - rules), "warning" if len(rows) > rules else "")))


def drill_section(reports: Mapping[int, Mapping[str, Any]], runs: Iterable[Mapping[str, Any]]) -> Section:
    """Drill runs (``drill_run`` rows) with their expected alerts; never evidence of a real event."""
    rows = []
    for run in runs:
        expected = list((reports.get(int(run["id"])) or {}).get("expected") or ())
        good = sum(e.get("result") == "pass" for e in expected)
        failures = tuple(f"{e.get('alert')}: {e.get('why') or 'failed'}" for e in expected
                         if e.get("result") != "pass")
        rows.append(DrillRow(int(run["id"]), str(run.get("scenario", "")), _iso_text(run.get("started_at")),
                             _iso_text(run.get("ended_at")), str(run.get("result", "")),
                             f"×{float(run.get('time_scale') or 1):g}",
                             f"{good} of {len(expected)} in budget" if expected else "no expectations", failures))
    failed = sum(r.result != "pass" for r in rows)
    return Section(tuple(rows), (Kpi("drills", str(len(rows))), Kpi("passed", str(len(rows) - failed)),
                                 Kpi("failed", str(failed), "warning" if failed else "")))


def drill_record_section(runs: Iterable[Mapping[str, Any]], tests: Iterable[Mapping[str, Any]],
                         events: Iterable[Mapping[str, Any]]) -> Section:
    """Records the detectors made during drills or simulations: shown apart, never counted above."""
    rows = [DrillRecordRow("generator run", str(r.get("scenario")), str(r.get("device", "")), utc_text(r.get("start")),
                           f"{generator_row(r).kind}, {generator_row(r).result}") for r in runs]
    rows += [DrillRecordRow("UPS self-test", str(t.get("scenario")), str(t.get("device", "")),
                            utc_text(t.get("start")), str(t.get("result", ""))) for t in tests]
    rows += [DrillRecordRow("power event", str(e.get("scenario")), str(e.get("generator") or ""),
                            utc_text(e.get("start")), power_row(e).cause) for e in events]
    return Section(tuple(sorted(rows, key=lambda r: r.start)))


# --- the audit log -----------------------------------------------------------------------------------

def audit_status(db_path: Path) -> AuditStatus:
    """``verify_log`` over the live audit log, with its head and the newest signed checkpoint."""
    from evidence.verify import verify_log

    report = verify_log(db_path)
    facts = report.facts
    last = _last_checkpoint(db_path)
    records = str(facts.get("audit records", MISSING))
    head = str(facts.get("last seq", MISSING))
    checkpoints = str(facts.get("checkpoints", MISSING))
    if report.ok:
        return AuditStatus("ok", "OK — audit log intact", head, records, last, checkpoints,
                           warnings=tuple(report.warnings))
    problems = tuple(report.errors[:MAX_PROBLEMS])
    more = len(report.errors) - len(problems)
    if more > 0:
        problems += (f"… and {more} more (run: facwatch evidence verify-log)",)
    state = "unavailable" if "audit records" not in facts else "problems"
    headline = "NO AUDIT LOG" if state == "unavailable" else f"PROBLEMS — {len(report.errors)} found"
    return AuditStatus(state, headline, head, records, last, checkpoints, problems, tuple(report.warnings))


def _last_checkpoint(db_path: Path) -> str:
    from evidence.providers import read_only

    try:
        with read_only(db_path) as conn:
            row = conn.execute("SELECT seq, time FROM audit_checkpoint ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return MISSING
    if row is None:
        return "none yet"
    return f"{row[1][:19].replace('T', ' ')}Z (seq {row[0]})"


# --- export ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A checked export request from the page."""

    period: Period
    drills: bool
    reveal_names: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class BuiltPack:
    """A pack ready to hand to the browser."""

    filename: str
    content: bytes
    message: str
    rows: Mapping[str, int] = field(default_factory=dict)


def export_request(first: Any, last: Any, kind: Any, reveal: Any, reason: Any) -> ExportRequest:
    """The request as the page's controls give it; ValueError with a message to show."""
    period = period_from_dates(first, last)
    reveal_names = reveal is True or (isinstance(reveal, list) and "reveal" in reveal)
    text = reason.strip() if isinstance(reason, str) else ""
    if reveal_names and not text:
        raise ValueError("revealing names needs a reason (it is recorded in the audit log)")
    if len(text) > MAX_REASON:
        raise ValueError(f"the reason is longer than {MAX_REASON} characters")
    return ExportRequest(period, kind == "drills", reveal_names, text or None)


def pack_filename(site_id: str, request: ExportRequest, shard: Shard | None = None) -> str:
    """``facwatch-<site>-evidence-2026-11-01-2026-11-30.zip`` (site ids are validated slugs); a shard's names it."""
    kind = "drills" if request.drills else "evidence"
    part = f"-shard-{shard.label}" if shard is not None else ""
    return f"facwatch-{site_id}-{kind}{part}-{request.period.first_day}-{request.period.last_day}.zip"


def build_pack(db_path: Path, site: Site, request: ExportRequest, actor: str, source: str,
               progress: Callable[[str], None] | None = None, readings: ReadStore | None = None,
               shard: Shard | None = None) -> BuiltPack:
    """Build the pack as ``evidence export [--shard]`` does (audited by ``export_pack``), read it back, delete it."""
    from evidence.pack import export_pack
    from evidence.providers import drill_providers, pack_providers

    filename = pack_filename(site.config.site.id, request, shard)
    providers = drill_providers() if request.drills else pack_providers(site, readings)
    with tempfile.TemporaryDirectory(prefix="facwatch-pack-") as folder:
        out = Path(folder) / filename
        summary = export_pack(db_path, request.period.start, request.period.end, out, providers=providers,
                              reveal_names=request.reveal_names, reason=request.reason, actor=actor[:MAX_NAME],
                              source=source, site=site.config.site.id, progress=progress, drills=request.drills)
        content = out.read_bytes()
    names = "names revealed" if request.reveal_names else "names pseudonymised"
    rows = ", ".join(f"{name} {count}" for name, count in summary.rows.items())
    message = (f"{filename}: {len(content) / 1024:.0f} kB, signed by key {summary.key_id}, {names}; "
               f"export recorded as audit seq {summary.export_seq}. Rows: {rows}")
    return BuiltPack(filename, content, message, dict(summary.rows))


# --- helpers -----------------------------------------------------------------------------------------

def store_file(sources: Any, shard: int | None = None) -> Path | None:
    """The SQLite file behind the dashboard: the store's, else the alert state's (they share it).

    On a sharded dashboard (alerts/sharded.py) that of shard ``shard`` (1-based), None without one.
    """
    shards = shard_set_of(sources.alerts)
    if shards is not None:
        return shards.shard(shard).path if shard is not None and 1 <= shard <= shards.count else None
    path = getattr(sources.store, "path", None)
    if path is not None and str(path) != ":memory:":
        return Path(path)
    for store in (sources.alerts, sources.actions):
        conn = getattr(store, "conn", None)
        if conn is None:
            continue
        try:
            rows = conn.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error:
            continue
        main = next((row[2] for row in rows if row[1] == "main" and row[2]), None)
        if main:
            return Path(main)
    return None


def _notes(record: Mapping[str, Any]) -> tuple[str, ...]:
    """A record's ``notes`` (evidence.records; None in rows written before the column existed)."""
    return tuple(str(n) for n in record.get("notes") or ())


def _room_name(site: Site, room_id: str) -> str:
    return next((room.name for room in site.config.rooms if room.id == room_id), room_id)


def _device_label(site: Site, device_id: str) -> str:
    try:
        return site.device(device_id).label
    except KeyError:
        return device_id


def _iso_text(value: Any) -> str:
    """An ISO text (``2026-11-22T21:30:05Z``) or epoch seconds as the page writes times."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, int | float):
        return utc_text(float(value))
    return str(value).replace("T", " ")
