"""``/metrics`` of a collector process in the Prometheus text format (prometheus_client).

Each collector process (one per shard) serves its own metrics on a loopback address, so Prometheus
scrapes every shard and a dead dashboard never hides a sick collector. What it says:

- polls, failed polls and poll latency, from the ``device.reachable`` / ``device.poll_duration``
  readings every poll emits (``observe`` is one more sink of the reading fan-out, so the scheduler
  needs no hook); per-device series carry ``device`` and ``class`` labels, bounded by
  ``max_device_labels`` (devices past it are counted under ``device="other"``); the latency
  histogram is per class only;
- missed deadlines per device, when the collector's ``status()`` is given;
- the InfluxDB outbox: lines pending, limit, level, dead letters, dropped lines, and the age of the
  oldest pending reading (read from the spool file);
- notifications sent, failed (dead), retried and pending per receiver (alerts/outbox.py tables).

Example::

    metrics = CollectorMetrics(site, spool=store.spool_stats, spool_path=..., notify_db=db_path)
    server = start_metrics_server(metrics, "127.0.0.1:9464")   # GET http://127.0.0.1:9464/metrics
    ...
    server.stop()
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Reading

log = logging.getLogger(__name__)

OTHER_DEVICE = "other"
MAX_DEVICE_LABELS = 2000
# Poll latency: SNMP/Modbus answers take 5-200 ms on a healthy network; a dead device uses its budget (s).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
SQLITE_TIMEOUT_S = 1.0  # a scrape never waits long for a busy database
SPOOL_LEVELS = ("ok", "near_full", "full")


class CollectorMetrics:
    """The metrics of one collector process: ``observe`` readings, then scrape ``registry``."""

    def __init__(self, site: Any, *, shard: str = "1/1", spool: Callable[[], Any] | None = None,
                 spool_path: Path | None = None, notify_db: Path | None = None,
                 status: Callable[[], Mapping[str, Any]] | None = None,
                 max_device_labels: int = MAX_DEVICE_LABELS, clock: Callable[[], float] = time.time):
        devices = list(site.devices)
        self._label = {d.id: d.id if i < max_device_labels else OTHER_DEVICE for i, d in enumerate(devices)}
        self._class = {d.id: d.device_class for d in devices}
        self.registry = CollectorRegistry(auto_describe=True)
        self._polls = Counter("facwatch_polls", "Polls of a device (answered or not)", ["device", "class"],
                              registry=self.registry)
        self._errors = Counter("facwatch_poll_errors", "Polls the device did not answer", ["device", "class"],
                               registry=self.registry)
        self._latency = Histogram("facwatch_poll_duration_seconds", "Time one poll of a device took",
                                  ["class"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._readings = Counter("facwatch_readings", "Readings handed to the store, alerts and evidence",
                                 registry=self.registry)
        self._pulled = _PulledMetrics(site.config.site.id, shard, len(devices), spool, spool_path, notify_db,
                                      status, self._label, clock)
        self.registry.register(self._pulled)
        self._lock = threading.Lock()

    def watch(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Report missed deadlines from a collector's ``status()`` (``Collector.status``)."""
        self._pulled.status = status

    def observe(self, readings: Sequence[Reading]) -> None:
        """Count a poll's readings (a sink of the reading fan-out; cheap, never raises on odd readings)."""
        with self._lock:
            self._readings.inc(len(readings))
            for reading in readings:
                if reading.point == REACHABLE_POINT:
                    self._count_poll(reading)
                elif reading.point == POLL_DURATION_POINT and isinstance(reading.value, int | float):
                    self._latency.labels(self._class.get(reading.device, "unknown")).observe(reading.value)

    def _count_poll(self, reading: Reading) -> None:
        labels = (self._label.get(reading.device, OTHER_DEVICE), self._class.get(reading.device, "unknown"))
        self._polls.labels(*labels).inc()
        if reading.value != 1:
            self._errors.labels(*labels).inc()


@dataclass
class MetricsServer:
    """The loopback HTTP server of ``/metrics`` on its own thread."""

    server: Any
    thread: threading.Thread

    @property
    def address(self) -> str:
        """``host:port`` it listens on (the real port when 0 was asked for)."""
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(metrics: CollectorMetrics, listen: str) -> MetricsServer:
    """Serve ``metrics`` at ``http://<listen>/metrics`` (``listen`` is host:port; port 0 picks a free one)."""
    host, _, port = listen.rpartition(":")
    if not host:
        raise ValueError(f"metrics address must be host:port, e.g. 127.0.0.1:9464 (got {listen!r})")
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=metrics.registry)
    thread.name = "metrics-http"
    return MetricsServer(server, thread)


class _PulledMetrics(Collector):
    """Metrics read at scrape time: collector status, the InfluxDB outbox, the notification outbox."""

    def __init__(self, site_id: str, shard: str, devices: int, spool: Callable[[], Any] | None,
                 spool_path: Path | None, notify_db: Path | None, status: Callable[[], Mapping[str, Any]] | None,
                 labels: Mapping[str, str], clock: Callable[[], float]):
        self._info = (site_id, shard, devices)
        self._spool, self._spool_path, self._notify_db = spool, spool_path, notify_db
        self.status, self._labels, self._clock = status, labels, clock

    def collect(self) -> Iterator[Any]:
        site_id, shard, devices = self._info
        info = GaugeMetricFamily("facwatch_collector_devices", "Devices this collector polls",
                                 labels=["site", "shard"])
        info.add_metric([site_id, shard], devices)
        yield info
        for part in (self._deadlines, self._outbox, self._notifications):
            try:
                yield from part()
            except Exception:  # a scrape must not fail because one source is busy or gone
                log.exception("metrics: %s failed", part.__name__)

    def _deadlines(self) -> Iterable[Any]:
        if self.status is None:
            return []
        missed = CounterMetricFamily("facwatch_missed_deadlines", "Poll deadlines skipped because a poll overran",
                                     labels=["device"])
        totals: dict[str, int] = {}
        for device_id, status in self.status().items():
            label = self._labels.get(device_id, "other")
            totals[label] = totals.get(label, 0) + status.overruns
        for label, value in totals.items():
            missed.add_metric([label], value)
        return [missed]

    def _outbox(self) -> Iterable[Any]:
        if self._spool is None:
            return []
        stats = self._spool()
        pending = GaugeMetricFamily("facwatch_outbox_pending_lines", "Lines waiting for InfluxDB", value=stats.pending)
        limit = GaugeMetricFamily("facwatch_outbox_limit_lines", "Lines the outbox holds before dropping the oldest",
                                  value=stats.limit)
        dead = GaugeMetricFamily("facwatch_outbox_dead_letters", "Lines InfluxDB refused for good",
                                 value=stats.dead_letters)
        dropped = CounterMetricFamily("facwatch_outbox_dropped_lines", "Lines dropped because the outbox was full",
                                      value=stats.dropped)
        level = GaugeMetricFamily("facwatch_outbox_level", "1 for the outbox's current level", labels=["level"])
        for name in SPOOL_LEVELS:
            level.add_metric([name], 1 if str(stats.level) == name else 0)
        age = GaugeMetricFamily("facwatch_outbox_oldest_age_seconds",
                                "Age of the oldest reading not yet in InfluxDB (0 when empty)",
                                value=self._oldest_spooled_age(stats.pending))
        return [pending, limit, dead, dropped, level, age]

    def _oldest_spooled_age(self, pending: int) -> float:
        if not pending or self._spool_path is None:
            return 0.0
        row = _query_one(self._spool_path, "SELECT line FROM outbox ORDER BY id LIMIT 1")
        if row is None:
            return 0.0
        ts_ms = int(str(row[0]).rsplit(" ", 1)[-1])  # line protocol ends with the acquisition time (ms)
        return max(0.0, self._clock() - ts_ms / 1000)

    def _notifications(self) -> Iterable[Any]:
        if self._notify_db is None:
            return []
        rows = _query_all(self._notify_db,
                          "SELECT receiver, state, count(*), sum(attempts), min(created_at) FROM notify_outbox "
                          "GROUP BY receiver, state")
        if rows is None:
            return []  # no notification pipeline has written this file yet
        sent = CounterMetricFamily("facwatch_notifications_sent", "Notifications a receiver accepted",
                                   labels=["receiver"])
        failed = CounterMetricFamily("facwatch_notifications_failed",
                                     "Notifications given up on (permanent failure)", labels=["receiver"])
        retried = CounterMetricFamily("facwatch_notification_attempts_failed",
                                      "Delivery attempts that failed (retried or given up)", labels=["receiver"])
        pending = GaugeMetricFamily("facwatch_notifications_pending", "Notifications waiting for delivery",
                                    labels=["receiver"])
        oldest = GaugeMetricFamily("facwatch_notifications_oldest_pending_age_seconds",
                                   "Age of the oldest notification not yet delivered", labels=["receiver"])
        for receiver, figures in _by_receiver(rows).items():
            sent.add_metric([receiver], figures["delivered"])
            failed.add_metric([receiver], figures["dead"])
            retried.add_metric([receiver], figures["failed_attempts"])
            pending.add_metric([receiver], figures["pending"])
            created = figures["oldest_pending"]
            oldest.add_metric([receiver], max(0.0, self._clock() - created) if created is not None else 0.0)
        return [sent, failed, retried, pending, oldest]


def _by_receiver(rows: list[tuple]) -> dict[str, dict[str, Any]]:
    """(receiver, state, rows, attempts, oldest) → per receiver: delivered, dead, pending, failed attempts."""
    out: dict[str, dict[str, Any]] = {}
    for receiver, state, count, attempts, oldest in rows:
        figures = out.setdefault(receiver, {"delivered": 0, "dead": 0, "pending": 0, "failed_attempts": 0,
                                            "oldest_pending": None})
        figures[state if state in ("delivered", "dead", "pending") else "pending"] += count
        # a delivered row's last attempt succeeded; every other attempt failed
        figures["failed_attempts"] += (attempts or 0) - (count if state == "delivered" else 0)
        if state == "pending":
            figures["oldest_pending"] = oldest
    return out


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection: a scrape never creates or locks the file it reads."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)


def _query_all(path: Path, sql: str) -> list[tuple] | None:
    """Rows of ``sql``, or None if the file or table does not exist (yet)."""
    if not path.exists():
        return None
    conn = _connect(path)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    finally:
        conn.close()


def _query_one(path: Path, sql: str) -> tuple | None:
    rows = _query_all(path, sql)
    return rows[0] if rows else None
