"""Start and stop the parts of facwatch: the only module that knows them all."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from collectors.model import Event, Reading, Severity
from config.load import Site
from evidence.detectors import EvidenceRecorder
from storage.base import WriteStore
from storage.sqlite import SqliteStore

log = logging.getLogger("facwatch")

RETENTION_EVERY_S = 3600.0


class ReadingWriter:
    """Carries readings from the collector's event loop to the store on a thread of its own.

    ``put`` never blocks the loop; the thread writes one batch per ``flush_s`` (or per
    ``max_batch`` readings), so SQLite sees few, large transactions.
    """

    def __init__(self, store: WriteStore, *, flush_s: float = 1.0, max_batch: int = 5000,
                 heartbeat: Callable[[], None] | None = None, beat_every_s: float = 1.0,
                 retention: Callable[[float], int] | None = None):
        self._store = store
        self._retention = retention  # per-kind, audited (evidence.retention); else the store's own
        self._flush_s = flush_s
        self._max_batch = max_batch
        self._heartbeat = heartbeat  # "collector" is alive: called after a written batch, at most once per beat_every_s
        self._beat_every_s = beat_every_s
        self._next_beat = 0.0
        self._queue: queue.SimpleQueue[Sequence[Reading] | _Events | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="reading-writer", daemon=True)
        self.written = 0
        self._thread.start()

    def put(self, readings: Sequence[Reading]) -> None:
        """Hand over a poll's readings (called from the event loop; never blocks)."""
        self._queue.put(readings)

    def put_events(self, events: Sequence[Event]) -> None:
        """Hand over events (traps, scenario markers); written on the same thread, in order."""
        self._queue.put(_Events(tuple(events)))

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        next_retention = time.monotonic() + 60.0  # first pass soon after start, then hourly
        running = True
        while running:
            batch, running = self._gather()
            if batch:
                self._write(batch)
            if time.monotonic() >= next_retention:
                self._retain()
                next_retention = time.monotonic() + RETENTION_EVERY_S

    def _gather(self) -> tuple[list[Reading], bool]:
        """Collect readings until the flush interval ends or the batch is full; False once closed."""
        batch: list[Reading] = []
        deadline = time.monotonic() + self._flush_s
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch, True
            if item is None:
                return batch, False
            if isinstance(item, _Events):
                self._write(batch)  # keep readings and events in the order they arrived
                batch = []
                self._write_events(item.events)
                continue
            batch.extend(item)
        return batch, True

    def _write_events(self, events: Sequence[Event]) -> None:
        try:
            self._store.write_events(events)
        except Exception:
            log.exception("store write failed; %d events lost", len(events))

    def _write(self, batch: list[Reading]) -> None:
        if not batch:
            return
        try:
            self._store.write(batch)
            self.written += len(batch)
        except Exception:  # a store error must not kill the writer; the readings are logged as lost
            log.exception("store write failed; %d readings lost", len(batch))
            return
        self._beat()

    def _beat(self) -> None:
        if self._heartbeat is None or time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self._beat_every_s
        try:
            self._heartbeat()
        except Exception:  # the dashboard then shows the collector as down: better than losing readings
            log.exception("collector heartbeat failed")

    def _retain(self) -> None:
        try:
            if self._retention is not None:
                removed = self._retention(time.time())
            else:
                removed = self._store.apply_retention(time.time())
        except Exception:
            log.exception("retention pass failed")
            return
        if removed:
            log.info("retention removed %d old rows", removed)


@dataclass(frozen=True, slots=True)
class _Events:
    """Events queued for the writer thread (told apart from reading batches)."""

    events: tuple[Event, ...]


@dataclass
class DashboardThread:
    """The dashboard served by waitress (or cheroot for HTTPS) on a thread beside the collectors."""

    server: object
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Where a browser finds it (https:// with dashboard.tls)."""
        return str(self.server.url)  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Close the listening socket and wait for the thread."""
        self.server.close()  # type: ignore[attr-defined]
        self.thread.join(timeout=10)


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def store_path(site: Site, data_dir: Path | None = None) -> Path:
    """Where the site's SQLite file is: ``data_dir/facwatch.db`` if given, else the config's storage path."""
    return data_dir / "facwatch.db" if data_dir is not None else site.storage_path()


def open_store(site: Site, data_dir: Path | None = None) -> SqliteStore:
    """The site's SQLite store (in ``data_dir`` if given), its folder created on first use."""
    path = store_path(site, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, retention_days=site.config.storage.retention_days)


def open_reading_store(site: Site, store: SqliteStore, *, send: bool = True, tags_from: Site | None = None):
    """Where readings go: InfluxDB when ``storage.influx`` is set (events stay in ``store``), else ``store``.

    ``send=False`` (the dashboard): read only, with a spool file of its own that nothing is written to.
    ``tags_from``: the whole site, for a shard that also writes other shards' devices (their trap readings).
    """
    if site.influx is None:
        return store
    from storage.influx import InfluxStore, device_tags

    connection = site.influx if send else replace(
        site.influx, spool_path=site.influx.spool_path.with_suffix(".dashboard.db"))
    connection.spool_path.parent.mkdir(parents=True, exist_ok=True)
    tags = device_tags((tags_from or site).config)
    return InfluxStore(connection, tags, site=site.config.site.id, event_store=store, start=send)


def start_dashboard(site: Site, store: SqliteStore, host: str | None = None,
                    port: int | None = None, simulate: bool = False, *, trusted_proxies: Sequence[str] = (),
                    secure_cookies: bool | None = None, readings=None, alerts=None,
                    actions=None) -> DashboardThread:
    """Build the Dash app and serve it on a background thread (waitress; cheroot for HTTPS with dashboard.tls).

    Accounts are on when the store has users (sessions, roles, kiosk tokens; auth actions in the
    hash-chained audit log); without users the dashboard is open and may only listen on loopback
    (``ServeRefused`` otherwise). ``trusted_proxies`` / ``secure_cookies``: see docs/deploy.md.
    """
    from alerts.commands import ActionStore
    from alerts.state import AlertStateStore
    from dashboard.app import DashboardSources, create_app
    from dashboard.serve import WebSecurity, count_users, make_server, web_access

    cfg = site.config.dashboard
    host = host or cfg.host
    proxies = tuple(trusted_proxies) or tuple(cfg.trusted_proxies)
    secure = secure_cookies if secure_cookies is not None else cfg.secure_cookies
    tls = site.dashboard_tls
    access = web_access(count_users(store.path), host, WebSecurity(proxies, secure, tls=tls is not None))
    auth = _auth_service(store.path) if access.accounts else None
    scenario_url = f"http://{site.config.simulation.control}/scenarios" if simulate else None
    # alerts/actions: a sharded site's ShardedAlertState/ShardedActions; else the store file's own
    app = create_app(DashboardSources(site=site, store=readings or store,
                                      alerts=alerts or AlertStateStore(store.path),
                                      actions=actions or ActionStore(store.path), scenario_url=scenario_url,
                                      auth=auth),
                     trusted_proxies=access.trusted_proxies, secure_cookies=access.secure_cookies,
                     proxy_user_header=cfg.proxy_user_header)
    server = make_server(app, host, port or cfg.port, tls=tls)
    if auth is None:
        log.warning("dashboard WITHOUT accounts on %s: open to every user of this machine "
                    "(facwatch users add NAME --role admin turns accounts on)", host)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    return DashboardThread(server, thread)


def _auth_service(db_path: Path):
    """Accounts over the store file, every auth action in its hash-chained audit log."""
    from auth.audit import chained_sink
    from auth.service import AuthService

    return AuthService.open(db_path, chained_sink(db_path))


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.asynccontextmanager
async def simulation(site: Site, *, seed: int | None = None, time_scale: float | None = None,
                     scenario: str | None = None,
                     on_scenario: Callable[[str, str, float], None] | None = None,
                     on_step: Callable | None = None) -> AsyncIterator:
    """The site's simulators with a scenario runner and the loopback control endpoint."""
    from simulators.control import ControlServer
    from simulators.scenario import ScenarioRunner
    from simulators.site import SiteSimulator

    async with SiteSimulator(site, seed=seed, time_scale=time_scale) as sim:
        sim.scenarios = ScenarioRunner(sim, on_change=on_scenario, on_step=on_step)
        host, port = site.config.simulation.control.rsplit(":", 1)
        control = ControlServer(sim.scenarios, host, int(port), asyncio.get_running_loop())
        control.start()
        log.info("simulator control on http://%s/scenarios (×%g time)", control.address, sim.time_scale)
        try:
            if scenario is not None:
                sim.scenarios.start(scenario)
            yield sim
        finally:
            await sim.scenarios.stop()
            control.stop()


def scenario_tagging(sink: Callable[[list], None], sim) -> Callable[[list], None]:
    """A sink that tags readings or events with the scenario running when they arose (kept out of evidence)."""

    def put(items: list) -> None:
        name = sim.active_scenario
        sink(items if name is None else [replace(item, scenario=name) for item in items])
    return put


def scenario_events(writer: ReadingWriter, alerting: Alerting | None = None) -> Callable[[str, str, float], None]:
    """Record scenario starts and ends as events in the store; at the end, end the scenario's alerts."""

    def record(name: str, what: str, clock_s: float) -> None:
        writer.put_events([Event(time.time(), None, "scenario", f"{name} {what}", Severity.INFO,
                                 {"scenario": name, "state": what, "sim_clock_s": round(clock_s, 1)}, name)])
        if alerting is not None and what != "started":
            alerting.end_scenario(name)
    return record


@contextlib.asynccontextmanager
async def trap_receiver(site: Site, sink: Callable[[list[Reading]], None],
                        event_sink: Callable[[list[Event]], None]) -> AsyncIterator:
    """Facwatch's SNMP trap listener: events to the store at once, varbind readings to the sink."""
    from collectors.traps import TrapReceiver

    async with TrapReceiver(site, on_readings=sink, on_events=event_sink) as receiver:
        log.info("SNMP traps on udp://%s", site.config.traps.listen)  # type: ignore[union-attr]
        yield receiver


class Alerting:
    """The alert engine beside the collectors: it sees every reading as it arrives (DESIGN.md §3.5).

    Changed alerts are logged, appended to the audit log and, when a notify config is given, handed to
    the notification pipeline (durable outbox, retries, grouping, silences). A tick drives the time-based
    transitions and the ``alerting`` heartbeat; operator commands (acks, silences) are applied every
    COMMAND_TICK_S, so a click in the dashboard shows within a second, each audited first (fail closed).

    At start-up the loaded rules are compared with the recorded versions (``evidence.thresholds``): every
    change becomes a ``config.change`` audit record and a ``rule_version`` row (who/why: ``change_by`` /
    ``change_reason``, else FACWATCH_CHANGE_BY / FACWATCH_CHANGE_REASON, else "unknown (not given)").

    An alert transition cannot be refused, so when its audit record cannot be written it is kept in a
    backlog (retried before every later transition and on every tick, oldest first, so the log keeps the
    order), logged at ERROR, counted in ``audit_failures``, and the meta alert ``audit_log_failing``
    (critical) goes to the pipeline until the backlog is written; ``audit_dropped`` counts records lost when
    the backlog overflows AUDIT_BACKLOG_MAX.
    """

    TICK_S = 2.0
    COMMAND_TICK_S = 0.5
    AUDIT_ACTOR = "facwatch"  # transitions are the engine's doing; operators are the actors of commands
    AUDIT_BACKLOG_MAX = 100_000

    def __init__(self, site: Site, db_path: Path, notify_path: Path | None = None, *, audit: bool = True,
                 change_by: str | None = None, change_reason: str | None = None,
                 on_changed: Callable[[list], None] | None = None, key_dir: Path | None = None):
        from alerts.commands import ActionStore, CommandApplier
        from alerts.engine import AlertEngine
        from alerts.rules import load_rules
        from alerts.state import AlertStateStore

        rules = load_rules()
        self.closed = False
        self.site_id = site.config.site.id
        self.audit = _open_audit(db_path, key_dir) if audit else None
        record_rule_versions(db_path, rules, self.audit, change_by, change_reason)
        self.state = AlertStateStore(db_path)
        self.engine = AlertEngine(site, rules, self.state)
        self.actions = ActionStore(db_path)
        self.pipeline = _pipeline(notify_path, db_path, self.actions) if notify_path is not None else None
        self.applier = CommandApplier(self.actions, self.engine, self._changed, self.pipeline, self.audit)
        self.on_changed = on_changed
        self._known = {a.fingerprint: (a.state.value, a.acknowledged_by) for a in self.engine.alerts()}
        self._backlog: collections.deque[dict] = collections.deque()
        self.audit_failures = 0
        self.audit_dropped = 0
        self._audit_failing_since: float | None = None
        if self.pipeline is not None:  # after a restart: dedup knows what was paged, escalation goes on
            self.pipeline.resume([a for a in self.engine.alerts() if a.state.value == "firing"], self.state.get)

    def observe(self, readings: Sequence[Reading]) -> None:
        """Evaluate a poll's readings (called from the collector's event loop)."""
        self._changed(self.engine.observe(readings))

    def end_scenario(self, name: str) -> None:
        """A scenario finished or was stopped: its alerts resolve (and are notified and audited as such)."""
        if self.closed:  # the simulators stop their scenario at shutdown, after alerting has closed
            return
        self._changed(self.engine.end_scenario(name, time.time()))

    def _changed(self, alerts: list) -> None:
        for alert in alerts:
            # firing and resolved are what on-call cares about; pending/inactive churn stays at debug
            level = logging.INFO if alert.state.value in ("firing", "resolved") else logging.DEBUG
            log.log(level, "alert %s %s [%s] %s", alert.rule, alert.state.value, alert.severity.value,
                    alert.summary or dict(alert.labels))
        self._audit_transitions(alerts)
        if alerts and self.pipeline is not None:
            self.pipeline.submit(alerts)
        if alerts and self.on_changed is not None:
            self.on_changed(alerts)

    def _audit_transitions(self, alerts: list) -> None:
        if self.audit is None:
            return
        for alert in alerts:
            before = self._known.get(alert.fingerprint)
            now = (alert.state.value, alert.acknowledged_by)
            self._known[alert.fingerprint] = now
            if before == now:
                continue  # an update without a transition (e.g. a new value while firing)
            self._backlog.append(_transition_record(alert, before[0] if before else None))
        while len(self._backlog) > self.AUDIT_BACKLOG_MAX:
            self._backlog.popleft()
            self.audit_dropped += 1
        self._flush_audit()

    def _flush_audit(self) -> None:
        from evidence.auditlog import AuditWriteError

        assert self.audit is not None
        while self._backlog:
            record = self._backlog[0]
            try:
                self.audit.append("alert.transition", self.AUDIT_ACTOR, record["subject"], before=record["before"],
                                  after=record["after"], details=record["details"], source=f"engine@{self.site_id}")
            except (AuditWriteError, ValueError) as exc:
                self._audit_failed(exc)
                return
            self._backlog.popleft()
        if self._audit_failing_since is not None:
            log.warning("audit log writable again: the alert-transition backlog is written")
            self._audit_meta("resolved")
            self._audit_failing_since = None

    def _audit_failed(self, exc: Exception) -> None:
        self.audit_failures += 1
        log.error("AUDIT LOG FAILING: %d alert transition(s) not yet recorded, retried on every tick (%s)",
                  len(self._backlog), exc)
        if self._audit_failing_since is None:
            self._audit_failing_since = time.time()
            self._audit_meta("firing")

    def _audit_meta(self, state: str) -> None:
        if self.pipeline is None or self._audit_failing_since is None:
            return
        from alerts.model import Alert, AlertState
        from alerts.model import Severity as AlertSeverity

        now = time.time()
        meta = Alert("audit_log_failing", {"site": self.site_id, "device": "facwatch"}, AlertSeverity.CRITICAL,
                     AlertState(state), summary=f"audit log not writable since {self._audit_failing_since:.0f}",
                     fired_at=self._audit_failing_since, resolved_at=now if state == "resolved" else None,
                     updated_at=now)
        try:
            self.pipeline.submit([meta])
        except Exception:
            log.exception("could not raise the audit_log_failing meta alert")

    def apply_commands(self) -> None:
        """Apply pending operator commands; a failure is logged, never fatal to the loop."""
        try:
            self.applier.apply_pending()
        except Exception:  # e.g. the database locked for longer than its timeout: try again next time
            log.exception("applying operator commands failed")

    def tick(self, now: float) -> None:
        """Time-driven alert transitions (and a retry of audit records not yet written), then the heartbeat."""
        self._changed(self.engine.tick(now))
        if self._backlog:
            self._flush_audit()
        try:
            self.actions.beat("alerting", now)
        except Exception:
            log.exception("alerting heartbeat failed")

    async def run(self) -> None:
        """Apply commands, tick the engine (and run the pipeline's delivery loop) until cancelled."""
        delivery = asyncio.create_task(self.pipeline.run()) if self.pipeline is not None else None
        # Devices are silent until the collectors (and, in the demo, the simulators and dashboard) have
        # started: count silence from now, not from construction, or start-up pages every device.
        self.engine.started_at = time.time()
        next_tick = time.monotonic() + self.TICK_S
        try:
            while True:
                self.apply_commands()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.TICK_S
                    self.tick(time.time())
                await asyncio.sleep(self.COMMAND_TICK_S)
        finally:
            if delivery is not None:
                delivery.cancel()
                await asyncio.gather(delivery, return_exceptions=True)
            self.close()

    def close(self) -> None:
        """Close the connections."""
        self.closed = True
        self.state.close()
        self.actions.close()
        if self.audit is not None:
            self.audit.close()


def _open_audit(db_path: Path, key_dir: Path | None = None):
    """The audit log of the file, signed with the configured key (or the one in ``key_dir``, default beside it)."""
    from evidence.auditlog import AuditLog

    return AuditLog.open(db_path, data_dir=key_dir)


def record_rule_versions(db_path: Path, rules: list, audit, change_by: str | None = None,
                         change_reason: str | None = None) -> list:
    """Compare the loaded rules with the recorded versions; record and audit each change (see evidence.thresholds)."""
    from evidence.thresholds import RuleVersionStore

    versions = RuleVersionStore(db_path)
    try:
        changes = versions.record(rules, audit, change_by, change_reason)
    finally:
        versions.close()
    for change in changes:
        log.info("rule %s %s (%s -> %s)", change.rule, change.change, change.old_hash, change.new_hash)
    return changes


def _transition_record(alert, before: str | None) -> dict:
    """What the audit log keeps of one alert transition: from/to state and the alert's context."""
    return {"subject": f"alert {alert.rule} {alert.fingerprint}", "before": {"state": before},
            "after": {"state": alert.state.value, "severity": alert.severity.value,
                      "value": alert.value if alert.value is None or math.isfinite(alert.value) else None,
                      "acknowledged_by": alert.acknowledged_by},
            "details": {"rule": alert.rule, "labels": dict(alert.labels), "summary": alert.summary,
                        "scenario": alert.scenario, "at": alert.updated_at}}


def _pipeline(notify_path: Path, db_path: Path, actions):
    from alerts.notify_config import load_notify_config
    from alerts.outbox import Outbox
    from alerts.pipeline import NotificationPipeline

    return NotificationPipeline(load_notify_config(notify_path), Outbox(db_path), actions=actions)


def retention(site: Site, store: SqliteStore):
    """The per-kind, audited retention pass for the reading writer (see evidence.retention)."""
    from evidence.auditlog import AuditLog
    from evidence.retention import Retention, RetentionPolicy

    return Retention(RetentionPolicy.for_site(site), store, AuditLog.open(store.path))


def collector_heartbeat(db_path: Path) -> Callable[[], None]:
    """A heartbeat for the reading writer's thread: ``collector`` is alive (on a connection of its own)."""
    from alerts.commands import ActionStore

    actions = ActionStore(db_path)
    return lambda: actions.beat("collector")


def fan_out(*sinks: Callable[[list[Reading]], None]) -> Callable[[list[Reading]], None]:
    """One sink that hands every batch to several (store writer, alert engine, evidence detectors).

    A sink that raises is logged and the others still get the batch: a detector bug must never
    cost the store its readings or the engine its alerts.
    """

    def put(readings: list[Reading]) -> None:
        for sink in sinks:
            try:
                sink(readings)
            except Exception:
                log.exception("reading sink %s failed; the other sinks still got the batch",
                              getattr(sink, "__qualname__", sink))
    return put


async def evidence_ticks(recorder, every_s: float = 60.0) -> None:
    """Close generator runs and power incidents whose data stopped (the recorder's clock-driven part)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            recorder.tick(time.time())
        except Exception:
            log.exception("evidence tick failed")


async def run_collectors(site: Site, sink: Callable[[list[Reading]], None],
                         until: asyncio.Future | None = None, metrics=None) -> None:
    """Poll every device of the site into the sink until a signal (or ``until``) arrives."""
    from collectors.scheduler import Collector

    collector = Collector(site, sink)
    if metrics is not None:
        metrics.watch(collector.status)
    task = asyncio.create_task(collector.run(), name="collector")
    try:
        await (until if until is not None else wait_for_signal())
    finally:
        await collector.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_site(site: Site, *, simulate: bool, dashboard: bool, data_dir: Path | None = None,
                   port: int | None = None, time_scale: float | None = None, scenario: str | None = None,
                   notify: Path | None = None, change_by: str | None = None,
                   change_reason: str | None = None, metrics_listen: str | None = None,
                   shard: str = "1/1", whole_site: Site | None = None) -> None:
    """Collectors + store + alerts (+ simulators for the demo) (+ dashboard), until SIGINT/SIGTERM.

    ``change_by`` / ``change_reason``: who changed the rules since the last start and why (see Alerting).
    ``whole_site``: the unsharded site when ``site`` is one shard of it; a shard with the trap listener
    attributes and stores traps of every device (collectors/sharding.py).
    """
    from facwatch.metrics import CollectorMetrics, start_metrics_server

    whole = whole_site or site
    store = open_store(site, data_dir)
    readings = open_reading_store(site, store, tags_from=whole)  # InfluxDB with storage.influx, else SQLite
    pruning = retention(site, store)
    writer = ReadingWriter(readings, heartbeat=collector_heartbeat(store.path), retention=pruning)
    alerting = Alerting(site, store.path, notify, change_by=change_by, change_reason=change_reason)
    evidence = EvidenceRecorder(site, store.path)
    web = start_dashboard(site, store, port=port, simulate=simulate, readings=readings) if dashboard else None
    metrics = CollectorMetrics(site, shard=shard, spool=getattr(readings, "spool_stats", None),
                               spool_path=site.influx.spool_path if site.influx else None, notify_db=store.path)
    metrics_server = start_metrics_server(metrics, metrics_listen) if metrics_listen else None
    try:
        async with contextlib.AsyncExitStack() as stack:
            # evidence last: the store and the alerts come first
            sink: Callable[[list[Reading]], None] = fan_out(writer.put, alerting.observe, evidence.observe,
                                                            metrics.observe)
            event_sink: Callable[[list[Event]], None] = writer.put_events
            if simulate:
                sim = await stack.enter_async_context(simulation(
                    site, time_scale=time_scale, scenario=scenario, on_scenario=scenario_events(writer, alerting)))
                sink, event_sink = scenario_tagging(sink, sim), scenario_tagging(writer.put_events, sim)
            alert_task = asyncio.create_task(alerting.run(), name="alerting")
            stack.push_async_callback(_cancel, alert_task)
            evidence_task = asyncio.create_task(evidence_ticks(evidence), name="evidence")
            stack.push_async_callback(_cancel, evidence_task)
            if site.config.traps is not None:
                await stack.enter_async_context(trap_receiver(whole, sink, event_sink))
            if web is not None:
                log.info("dashboard on %s", web.url)
            await run_collectors(site, sink, metrics=metrics)
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        if web is not None:
            web.stop()
        writer.close()
        if readings is not store:
            readings.close()
        pruning.audit.close()
        evidence.close()
        store.close()
