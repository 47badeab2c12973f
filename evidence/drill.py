"""``facwatch drill SCENARIO``: a scripted drill end to end against the simulators, timed, kept apart.

The drill runs what ``facwatch demo`` runs — the site's simulators, the collectors, the alert engine and
(with ``--notify``) the notification pipeline — starts the scenario once every device has been polled,
and measures from the scenario's start (wall clock, and the plant's simulated clock beside it):

* the time to each alert the scenario's ``expect:`` section names, and from the causing step to it
  (the figure checked against the expectation's ``within`` budget);
* the time to its first delivered notification (``notify_outbox.delivered_at``);
* the time to its acknowledgement — by a person during the drill (``facwatch alerts ack --data-dir
  <drill dir>``) or, unattended, by the drill itself ``--ack-after`` seconds after the alert fired
  (recorded as ``drill (unattended)``, through the same audited command path as a person's ack).

Kept apart from real evidence, twice over: every reading is tagged with the scenario (so alerts and
records are drill-tagged), and everything the drill writes goes to its OWN database in
``<data dir>/drills/<scenario>-<UTC stamp>/`` (its own audit log included). The site's database only
gets one ``drill_run`` row (tagged with the scenario, so a real evidence pack drops it) holding the
report; ``facwatch evidence export --drills`` packs those rows on their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.providers import iso, read_only

if TYPE_CHECKING:
    from config.load import Site
    from simulators.scenario import Expectation, Scenario, Step

log = logging.getLogger("facwatch.drill")
REPORT_FORMAT = "facwatch-drill-report/1"
UNATTENDED = "drill (unattended)"
Progress = Callable[[str], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drill_run (
    id INTEGER PRIMARY KEY AUTOINCREMENT, scenario TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL NOT NULL,
    result TEXT NOT NULL, time_scale REAL NOT NULL, data_dir TEXT NOT NULL, report TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS drill_run_started ON drill_run (started_at);
"""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """How to run a drill: scenario, speed, notifications, unattended acks, where to keep its data."""

    scenario: str
    time_scale: float | None = None
    notify: Path | None = None
    ack_after: float | None = None  # seconds after firing; None: only people ack
    drill_dir: Path | None = None  # the drill's own database; default under the site's data dir
    settle_s: float = 10.0  # after the scenario: wait this long at most for notifications and acks
    warmup_s: float | None = None  # before the scenario: default two of the slowest poll intervals
    progress_every_s: float = 5.0
    key_dir: Path | None = None  # the audit signing key's folder: the site's, so drills are signed like the rest


@dataclass
class _Fired:
    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str
    wall: float
    plant: float


@dataclass
class DrillClock:
    """What the drill saw happen, on both clocks: step times and the first firing of every alert."""

    sim: Any
    start_wall: float | None = None
    start_plant: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)
    fired: dict[str, _Fired] = field(default_factory=dict)

    def start(self) -> None:
        """The scenario starts now."""
        self.start_wall, self.start_plant = time.time(), self.sim.plant.clock_s

    def step(self, scenario: str, step: Step, plant_clock: float) -> None:
        """A step has acted on the plant (ScenarioRunner's on_step)."""
        self.steps.append({"at_s": step.at, "action": step.action, "arguments": dict(step.arguments),
                           "wall_s": self._since(time.time()), "plant_s": round(plant_clock - self.start_plant, 1)})

    def changed(self, alerts: list) -> None:
        """Alerts changed (Alerting's on_changed): remember the first firing of each."""
        now = time.time()
        for alert in alerts:
            if alert.state.value == "firing" and alert.fingerprint not in self.fired:
                self.fired[alert.fingerprint] = _Fired(alert.fingerprint, alert.rule, dict(alert.labels),
                                                       alert.severity.value, now, self.sim.plant.clock_s)

    def _since(self, wall: float) -> float:
        return round(wall - (self.start_wall or wall), 3)


def default_drill_dir(site: Site, scenario: str, data_dir: Path | None = None, now: float | None = None) -> Path:
    """``<data dir>/drills/<scenario>-<UTC stamp>``: beside, never inside, the site's database."""
    from facwatch.runtime import store_path

    stamp = datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
    return store_path(site, data_dir).parent / "drills" / f"{scenario}-{stamp}"


async def run_drill(site: Site, options: DrillOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the drill and return its report (not yet written anywhere)."""
    from simulators.scenario import load_scenarios

    say = progress or (lambda message: None)
    scenarios = load_scenarios()
    if options.scenario not in scenarios:
        raise ValueError(f"unknown scenario {options.scenario!r}; known: {', '.join(sorted(scenarios))}")
    scenario = scenarios[options.scenario]
    drill_dir = options.drill_dir or default_drill_dir(site, scenario.name)
    drill_dir.mkdir(parents=True, exist_ok=True)
    say(f"drill {scenario.name}: data in {drill_dir} (ack with: facwatch alerts ack --data-dir {drill_dir} ...)")
    clock, time_scale = await _run(site, scenario, options, drill_dir, say)
    return build_report(site, scenario, options, drill_dir, clock, time_scale)


async def _run(site: Site, scenario: Scenario, options: DrillOptions, drill_dir: Path,
               say: Progress) -> tuple[DrillClock, float]:
    from collectors.scheduler import Collector
    from facwatch.runtime import Alerting, ReadingWriter, fan_out, open_store, simulation

    store = open_store(site, drill_dir)
    writer = ReadingWriter(store, flush_s=0.2)
    clock = DrillClock(sim=None)
    alerting = Alerting(site, store.path, options.notify, on_changed=clock.changed, change_by="facwatch drill",
                        change_reason=f"drill {scenario.name}", key_dir=options.key_dir)
    try:
        async with simulation(site, time_scale=options.time_scale, on_step=clock.step) as sim:
            clock.sim = sim
            sink = _tagged(fan_out(writer.put, alerting.observe), scenario.name)
            alert_task = asyncio.create_task(alerting.run(), name="drill-alerting")
            try:
                async with Collector(site, sink):
                    await asyncio.sleep(options.warmup_s if options.warmup_s is not None else _warmup(site))
                    clock.start()
                    sim.scenarios.start(scenario.name)
                    await _follow(sim, scenario, options, alerting, clock, say, store.path)
            finally:
                alert_task.cancel()
                await asyncio.gather(alert_task, return_exceptions=True)
            time_scale = sim.time_scale
    finally:
        writer.close()
        store.close()
    return clock, time_scale


def _tagged(sink: Callable[[list], None], name: str) -> Callable[[list], None]:
    """Every reading of a drill is a drill reading, warm-up included."""
    return lambda items: sink([replace(item, scenario=name) for item in items])


def _warmup(site: Site) -> float:
    return min(30.0, 2 * max((d.poll_interval_s for d in site.devices), default=1.0) + 1.0)


async def _follow(sim, scenario: Scenario, options: DrillOptions, alerting, clock: DrillClock,
                  say: Progress, db: Path) -> None:
    """Until the scenario ends and then until notifications and acks are in (or settle_s has passed)."""
    acks: set[str] = set()
    next_progress = time.time() + options.progress_every_s
    settle_until: float | None = None
    while True:
        now = time.time()
        _unattended_acks(options, alerting, clock, acks, now)
        if now >= next_progress:
            next_progress = now + options.progress_every_s
            say(_progress_line(scenario, sim, clock))
        if sim.scenarios.active is None:
            settle_until = settle_until or now + options.settle_s
            if now >= settle_until or _settled(options, db, clock, scenario):
                return
        await asyncio.sleep(0.2)


def _unattended_acks(options: DrillOptions, alerting, clock: DrillClock, done: set[str], now: float) -> None:
    if options.ack_after is None:
        return
    for fired in clock.fired.values():
        if fired.fingerprint not in done and now - fired.wall >= options.ack_after:
            done.add(fired.fingerprint)
            alerting.actions.request_ack(fired.fingerprint, UNATTENDED,
                                         f"--ack-after {options.ack_after:g}s", source="drill")


def _settled(options: DrillOptions, db: Path, clock: DrillClock, scenario: Scenario) -> bool:
    """True when every expected alert that fired has its notification and (unattended) ack."""
    expected = [f for f in clock.fired.values() if any(_matches(e, f) for e in scenario.expect)]
    if options.notify is not None:
        delivered = _delivered_rows(db)
        if any(f.fingerprint not in delivered for f in expected):
            return False
    if options.ack_after is not None:
        acked = _ack_rows(db)
        if any(f.fingerprint not in acked for f in expected):
            return False
    return True


def _progress_line(scenario: Scenario, sim, clock: DrillClock) -> str:
    plant = sim.plant.clock_s - clock.start_plant
    share = min(100.0, 100.0 * plant / scenario.duration)
    fired = sorted({f.rule for f in clock.fired.values() if f.wall >= (clock.start_wall or 0)})
    return (f"drill {scenario.name}: plant {_duration(plant)} of {_duration(scenario.duration)} ({share:.0f} %), "
            f"wall {time.time() - (clock.start_wall or time.time()):.1f} s; alerts fired: {', '.join(fired) or 'none'}")


def _matches(expectation: Expectation, fired: _Fired) -> bool:
    return fired.rule == expectation.alert and all(fired.labels.get(k) == v for k, v in expectation.labels.items())


# -- the report ---------------------------------------------------------------------------------------------

def build_report(site: Site, scenario: Scenario, options: DrillOptions, drill_dir: Path, clock: DrillClock,
                 time_scale: float) -> dict[str, Any]:
    """The drill report: per expected alert its times to alert, notification and acknowledgement."""
    db = drill_dir / "facwatch.db"
    delivered = _delivered_rows(db)
    acks = _ack_rows(db)
    step_wall = {s["at_s"]: s["wall_s"] for s in clock.steps}
    expected = [_expected(e, clock, step_wall, delivered, acks) for e in scenario.expect]
    matched = {f["fingerprint"] for e in expected for f in e.pop("_fired")}
    others = [{"alert": f.rule, "labels": f.labels, "severity": f.severity,
               "to_alert_s": round(f.wall - (clock.start_wall or f.wall), 3)}
              for f in clock.fired.values() if f.fingerprint not in matched]
    passed = all(e["result"] == "pass" for e in expected)
    return {"format": REPORT_FORMAT, "scenario": scenario.name, "description": scenario.description,
            "site": site.config.site.id, "started_at": iso(clock.start_wall), "ended_at": iso(time.time()),
            "time_scale": time_scale, "notify": options.notify is not None, "ack_after_s": options.ack_after,
            "data_dir": str(drill_dir), "result": "pass" if passed and expected else "fail" if expected else
            "no expectations", "steps": clock.steps, "expected": expected, "other_alerts": others,
            "note": "times in seconds from the scenario's start on the wall clock; plant_s on the simulated clock"}


def _expected(expectation: Expectation, clock: DrillClock, step_wall: dict[float, float],
              delivered: dict[str, tuple[float, str]], acks: dict[str, tuple[float, str]]) -> dict[str, Any]:
    start = clock.start_wall or 0.0
    fired = sorted((f for f in clock.fired.values() if _matches(expectation, f) and f.wall >= start),
                   key=lambda f: f.wall)
    row: dict[str, Any] = {"alert": expectation.alert, "labels": dict(expectation.labels),
                           "after_s": expectation.after, "within_s": expectation.within,
                           "_fired": [{"fingerprint": f.fingerprint} for f in fired]}
    if not fired:
        return {**row, "fired": False, "result": "fail", "why": "the alert never fired"}
    first = fired[0]
    cause = step_wall.get(expectation.after, 0.0)
    to_alert = round(first.wall - start, 3)
    from_cause = round(to_alert - cause, 3)
    row.update({"fired": True, "devices": sorted({f.labels.get("device", f.labels.get("site", "")) for f in fired}),
                "severity": first.severity, "fired_at": iso(first.wall), "to_alert_s": to_alert,
                "to_alert_plant_s": round(first.plant - clock.start_plant, 1), "from_cause_s": from_cause})
    row.update(_first_of(fired, delivered, start, "notified", "receiver"))
    row.update(_first_of(fired, acks, start, "acknowledged", "by"))
    if row.get("acknowledged_at"):
        row["ack_after_alert_s"] = round(row["to_ack_s"] - to_alert, 3)
    ok = from_cause <= expectation.within
    row["result"] = "pass" if ok else "fail"
    if not ok:
        row["why"] = f"fired {from_cause:g} s after its cause, budget {expectation.within:g} s"
    return row


def _first_of(fired: list[_Fired], times: dict[str, tuple[float, str]], start: float, what: str,
              who: str) -> dict[str, Any]:
    found = sorted(times[f.fingerprint] for f in fired if f.fingerprint in times)
    if not found:
        return {f"{what}_at": None}
    at, name = found[0]
    key = "to_notification_s" if what == "notified" else "to_ack_s"
    return {f"{what}_at": iso(at), key: round(at - start, 3), f"{what}_{who}": name}


def _delivered_from(conn: sqlite3.Connection) -> dict[str, tuple[float, str]]:
    """Fingerprint → (first delivered_at, receiver) of firing notifications."""
    from alerts.notifiers import alert_from_dict

    first: dict[str, tuple[float, str]] = {}
    rows = conn.execute("SELECT batch, delivered_at, receiver FROM notify_outbox WHERE delivered_at IS NOT NULL "
                        "ORDER BY delivered_at").fetchall()
    for batch, at, receiver in rows:
        for item in json.loads(batch)["alerts"]:
            alert = alert_from_dict(item)
            if alert.state.value == "firing":
                first.setdefault(alert.fingerprint, (at, receiver))
    return first


def _delivered_rows(db: Path) -> dict[str, tuple[float, str]]:
    with read_only(db) as conn:
        try:
            return _delivered_from(conn)
        except sqlite3.OperationalError:
            return {}  # no pipeline ran: no outbox table


def _ack_rows(db: Path) -> dict[str, tuple[float, str]]:
    """Fingerprint → (acknowledged_at, by) from the drill's alert state."""
    with read_only(db) as conn:
        try:
            rows = conn.execute("SELECT fingerprint, acknowledged_at, acknowledged_by FROM alert_state "
                                "WHERE acknowledged_at IS NOT NULL").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {fp: (at, by) for fp, at, by in rows}


def report_text(report: dict[str, Any]) -> str:
    """A readable summary of a drill report."""
    ack_after = report["ack_after_s"]
    lines = [f"Drill {report['scenario']} on site {report['site']}: {report['result'].upper()}",
             f"started {report['started_at']}, ended {report['ended_at']}, time scale ×{report['time_scale']:g}, "
             f"notifications {'on' if report['notify'] else 'off'}, unattended ack "
             f"{f'after {ack_after:g} s' if ack_after is not None else 'off'}",
             f"data: {report['data_dir']}", ""]
    for row in report["expected"]:
        if not row["fired"]:
            lines.append(f"  {row['alert']:<28} FAIL  never fired (budget {row['within_s']:g} s after "
                         f"{_duration(row['after_s'])})")
            continue
        lines.append(f"  {row['alert']:<28} {row['result'].upper():<5} alert {row['to_alert_s']:.1f} s "
                     f"({row['from_cause_s']:.1f} s after its cause, budget {row['within_s']:g} s; plant "
                     f"{_duration(row['to_alert_plant_s'])})")
        note = f"{row['to_notification_s']:.1f} s via {row['notified_receiver']}" if row.get("notified_at") \
            else "none delivered"
        ack = f"{row['to_ack_s']:.1f} s by {row['acknowledged_by']}" if row.get("acknowledged_at") else "not acked"
        lines.append(f"  {'':<28}       notification {note}; acknowledgement {ack}")
    if report["other_alerts"]:
        lines += ["", "other alerts fired: " + ", ".join(sorted({a["alert"] for a in report["other_alerts"]}))]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# -- keeping reports --------------------------------------------------------------------------------------

def write_report(report: dict[str, Any], output: Path) -> tuple[Path, Path]:
    """Write the report as JSON and its summary as text beside it (``.txt``); returns both paths."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = output.with_suffix(".txt")
    text.write_text(report_text(report), encoding="utf-8")
    return output, text


def record_drill(db_path: Path, report: dict[str, Any]) -> int:
    """Keep the report in the site's database (``drill_run``, tagged with its scenario); returns its id."""
    conn = sqlite3.connect(str(db_path), timeout=10.0, isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
        started = _epoch(report["started_at"])
        cursor = conn.execute(
            "INSERT INTO drill_run (scenario, started_at, ended_at, result, time_scale, data_dir, report) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (report["scenario"], started, _epoch(report["ended_at"]),
                                            report["result"], report["time_scale"], report["data_dir"],
                                            json.dumps(report, sort_keys=True)))
        return int(cursor.lastrowid or 0)
    finally:
        conn.close()


def _epoch(text: str | None) -> float:
    if not text:  # a report without its times is broken: never invent one for an evidence record
        raise ValueError("drill report has no start or end time")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _runs(db_path: Path, start: float, end: float) -> list[tuple]:
    with read_only(db_path) as conn:
        try:
            return conn.execute("SELECT id, scenario, started_at, ended_at, result, time_scale, data_dir, report "
                                "FROM drill_run WHERE started_at >= ? AND started_at < ? ORDER BY started_at, id",
                                (start, end)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def drill_runs(db_path: Path, start: float, end: float) -> list[dict]:
    """Drills pack provider: one row per drill run (``scenario`` set: a real evidence pack never takes it)."""
    return [{"id": r[0], "scenario": r[1], "started_at": iso(r[2]), "ended_at": iso(r[3]), "result": r[4],
             "time_scale": r[5], "data_dir": r[6]} for r in _runs(db_path, start, end)]


def drill_timings(db_path: Path, start: float, end: float) -> list[dict]:
    """Drills pack provider: one row per expected alert of every drill run, with its measured times."""
    keys = ("alert", "result", "within_s", "from_cause_s", "to_alert_s", "to_notification_s", "to_ack_s",
            "fired_at", "notified_at", "acknowledged_at", "acknowledged_by")
    rows = []
    for run in _runs(db_path, start, end):
        for row in json.loads(run[7])["expected"]:
            rows.append({"drill_id": run[0], "scenario": run[1], **{k: row.get(k) for k in keys}})
    return rows


def progress_to_stderr(message: str) -> None:
    """Progress lines of long drills."""
    print(message, file=sys.stderr, flush=True)


async def drill(site: Site, options: DrillOptions, output: Path | None, data_dir: Path | None,
                progress: Progress = progress_to_stderr) -> dict[str, Any]:
    """Run a drill, write its report (JSON + text), keep it in the site's database; returns the report."""
    from facwatch.runtime import open_store, store_path

    main_db = store_path(site, data_dir)
    open_store(site, data_dir).close()  # the site's store exists (readings tables included) to keep the report
    if options.drill_dir is None:
        options = replace(options, drill_dir=default_drill_dir(site, options.scenario, data_dir))
    if options.key_dir is None:
        options = replace(options, key_dir=main_db.parent)
    report = await run_drill(site, options, progress)
    assert options.drill_dir is not None
    try:  # kept first, so the report files carry the drill's id
        report["drill_id"] = record_drill(main_db, report)
    except sqlite3.Error as exc:  # the report files are still written; say so rather than lose the run
        log.error("drill report not kept in %s (%s); see the report files", main_db, exc)
    paths = write_report(report, output or options.drill_dir / "drill-report.json")
    if output is not None:
        write_report(report, options.drill_dir / "drill-report.json")
    progress(f"drill {report['scenario']}: {report['result']}; report {paths[0]} and {paths[1]}")
    return report
