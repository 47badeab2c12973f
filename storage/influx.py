"""InfluxDB back-end of WriteStore and ReadStore, for sites that outgrow one SQLite file (DESIGN.md §3.4).

Writes: ``write`` encodes readings as line protocol, appends them to a durable SQLite spool
(storage/spool.py) and returns; a sender thread feeds the spool to influxdb-client's batching WriteApi
(gzip) and removes lines only when the server acknowledged their batch. An outage of any length up to
the spool's limit therefore loses nothing, and a crash re-sends at most the batches in flight: points
carry their acquisition time, so a re-sent batch overwrites itself.

Schema (one point per device and instant)::

    <device class>,site=<site>,room=<room>,device=<device>,profile=<profile>[,scenario=<name>] \
        <point>=<float>,...,<point>__quality=<code>,... <acquisition time, ms>

- a GOOD reading writes its value as a float field named after the point (every field is always a
  float, so a field's type never changes);
- a MISSING or INVALID reading writes NO value field, only ``<point>__quality`` = 1 (missing) or
  2 (invalid) — the codes of storage/sqlite.py — so no aggregate ever sees a substitute number and a
  bucket's ``missing`` count is ``count(<point>__quality)``;
- text (identity strings, state names) is not written: InfluxDB holds numbers; a text-only reading is
  skipped and a state reading keeps its code. The name of a code comes from the device's profile.

Reads: InfluxQL on ``/query`` (InfluxDB 1.8+, 2.x with a DBRP mapping, 3.x), downsampled server-side
with ``GROUP BY time``; raw samples (``samples``, for envelope compliance) page by page with LIMIT and a
time cursor. Events stay in the local SQLite file (an ``event_store``): they are few, need
their order and JSON payload, and must be readable while InfluxDB is down.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import certifi
import urllib3
from influxdb_client import InfluxDBClient, WriteOptions, WritePrecision
from reactivex.scheduler import ThreadPoolScheduler

from collectors.model import Event, Quality, Reading
from storage.base import Bucket, Sample, SeriesKey
from storage.influx_config import InfluxConnection
from storage.spool import Spool, SpoolBatch, SpoolStats
from storage.sqlite import SqliteStore

log = logging.getLogger(__name__)

QUALITY_SUFFIX = "__quality"
# The codes of storage/sqlite.py: part of the stored format, never renumber.
QUALITY_CODE = {Quality.MISSING: 1, Quality.INVALID: 2}
_QUALITY_OF = {float(code): quality for quality, code in QUALITY_CODE.items()}
UNCLASSIFIED = "unclassified"  # measurement of a device the site does not declare
# Statuses that mean "the server/credentials are wrong", not "this data is wrong": retried, never dead-lettered.
_RETRY_STATUSES = frozenset({401, 403, 404, 405, 408, 429})
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class DeviceTags:
    """What InfluxDB files a device's readings under: its class (the measurement), room and profile."""

    device_class: str
    room: str
    profile: str


def device_tags(site: Any) -> dict[str, DeviceTags]:
    """The tags of every device of a site configuration (config.schema.SiteConfig)."""
    return {d.id: DeviceTags(d.device_class, d.room, d.profile) for d in site.devices}


class InfluxQueryError(RuntimeError):
    """InfluxDB refused or failed an InfluxQL query."""


class InfluxStore:
    """Readings in InfluxDB behind a durable spool; events in a local SQLite store.

    Example: ``store = InfluxStore(connection, device_tags(site), site="dc1", event_store=SqliteStore(path))``
    then ``store.write(readings)`` (returns once spooled, fsynced) and ``store.query("dh1-ups-a",
    "input.voltage", t0, t1, 500)``. ``flush()`` waits until InfluxDB acknowledged everything spooled.
    """

    sample_page = 10_000  # rows per /query request of ``samples``: a month of 2-s samples streams in pages

    def __init__(self, connection: InfluxConnection, devices: Mapping[str, DeviceTags], *, site: str,
                 event_store: SqliteStore, spool: Spool | None = None, start: bool = True):
        config = connection.config
        self.config = config
        self._devices = dict(devices)
        self._site = site
        self._events = event_store
        self._spool = spool or Spool(connection.spool_path, config.spool.max_lines,
                                     warn_fraction=config.spool.warn_fraction)
        try:
            self._query = _InfluxQL(connection)
            self._sender = _OutboxSender(connection, self._spool)
        except BaseException:
            self._spool.close()
            raise
        self._closed = False
        if start:
            self._sender.start()

    # --- WriteStore -------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> int:
        """Spool a batch durably and return how many readings it carried to InfluxDB (text-only ones are not)."""
        lines, count = self._lines(readings)
        self._spool.append(lines)
        self._sender.wake()
        return count

    def write_events(self, events: Sequence[Event]) -> None:
        """Store events in the local SQLite event store."""
        self._events.write_events(events)

    def apply_retention(self, now: float) -> int:
        """With ``retention_days`` set, delete older samples (InfluxQL DELETE, 1.x); else the server's policy rules."""
        days = self.config.retention_days
        if days is None:
            return 0
        cutoff = _ms(now) - round(days * 86_400_000)
        counted = self._query.run([f"SELECT count(*) FROM /.*/ WHERE {self._site_tag} AND time < {cutoff}ms"])[0]
        removed = sum(int(v or 0) for series in counted.get("series", []) for row in series["values"]
                      for v in row[1:])
        if removed:
            self._query.run([f"DELETE WHERE {self._site_tag} AND time < {cutoff}ms"])  # other sites keep theirs
        return removed

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until InfluxDB acknowledged every spooled line; False if some are still pending at the timeout."""
        return self._sender.drain(timeout)

    def spool_stats(self) -> SpoolStats:
        """Pending, dead-lettered and dropped lines of the spool (for /metrics)."""
        return self._spool.stats()

    def close(self) -> None:
        """Stop sending (unsent lines stay spooled for the next start) and release the connections."""
        if self._closed:
            return
        self._closed = True
        self._sender.stop()
        self._spool.close()
        self._query.close()

    # --- ReadStore --------------------------------------------------------------------------------

    def series(self) -> list[SeriesKey]:
        """Every (device, point) with at least one value or quality sample."""
        result = self._query.run([f'SELECT last(*) FROM /.*/ WHERE {self._site_tag} GROUP BY "device"'])[0]
        keys = set()
        for series in result.get("series", []):
            device = series.get("tags", {}).get("device", "")
            for column, value in zip(series["columns"][1:], series["values"][0][1:], strict=True):
                if value is not None:
                    keys.add(SeriesKey(device, _point_of(column.removeprefix("last_"))))
        return sorted(keys, key=lambda k: (k.device, k.point))

    def latest(self, devices: Iterable[str] | None = None) -> list[Reading]:
        """The newest reading of every point (one ``last()`` per field), optionally only of some devices."""
        where, measurements = f" WHERE {self._site_tag}", None
        if devices is not None:
            if isinstance(devices, str):
                raise TypeError("devices must be an iterable of device names, not one string")
            wanted = sorted(set(devices))
            if not wanted:
                return []
            where += " AND (" + " OR ".join(f'"device" = {_literal(d)}' for d in wanted) + ")"
            measurements = {self._measurement(d) for d in wanted}  # only their classes: far fewer statements
        fields = [(m, f) for m, fs in self._field_keys().items() if measurements is None or m in measurements
                  for f in fs]
        if not fields:
            return []
        statements = [f'SELECT last({_ident(f)}) FROM {_ident(m)}{where} GROUP BY "device", "scenario"'
                      for m, f in fields]
        newest: dict[tuple[str, str], Reading] = {}
        for (_, field), result in zip(fields, self._query.run(statements), strict=True):
            for series in result.get("series", []):
                reading = _latest_reading(field, series)
                key = (reading.device, reading.point)
                current = newest.get(key)
                if current is None or reading.ts > current.ts or (
                        reading.ts == current.ts and reading.quality is Quality.GOOD):
                    newest[key] = reading
        return [newest[key] for key in sorted(newest)]

    def query(self, device: str, point: str, start: float, end: float, max_points: int) -> list[Bucket]:
        """Samples in [start, end) downsampled by InfluxDB (GROUP BY time) to at most ``max_points`` buckets."""
        if max_points < 1:
            raise ValueError(f"max_points must be at least 1, got {max_points}")
        start_ms, end_ms = _ms(start), _ms(end)
        if end_ms <= start_ms:
            return []
        width = max(1, -(-(end_ms - start_ms) // max_points))
        value, quality = _ident(point), _ident(point + QUALITY_SUFFIX)
        # The offset aligns InfluxDB's epoch-aligned windows on ``start``, as SqliteStore's buckets are.
        statement = (
            f"SELECT min({value}), max({value}), mean({value}), count({value}), count({quality}) "
            f"FROM {_ident(self._measurement(device))} WHERE \"device\" = {_literal(device)} AND {self._site_tag} "
            f"AND time >= {start_ms}ms AND time < {end_ms}ms "
            f"GROUP BY time({width}ms, {start_ms % width}ms) fill(none)")
        result = self._query.run([statement])[0]
        buckets = []
        for series in result.get("series", []):
            for ts_ms, minimum, maximum, mean, count, missing in series["values"]:
                if count or missing:
                    buckets.append(Bucket(ts_ms / 1000, minimum, maximum, mean, int(count or 0), int(missing or 0)))
        return buckets

    def samples(self, device: str, point: str, start: float, end: float) -> Iterator[Sample]:
        """The raw samples in [start, end), oldest first, read page by page (time cursor); drills left out."""
        cursor_ms, end_ms = _ms(start), _ms(end)
        while cursor_ms < end_ms:
            rows, full = self._sample_rows(device, point, f"time >= {cursor_ms}ms AND time < {end_ms}ms",
                                           f"ORDER BY time ASC LIMIT {self.sample_page}")
            if full and rows[0][0] != rows[-1][0]:
                # The last instant may continue on the next page (several series of one device): read it again.
                cursor_ms = rows[-1][0]
                rows = [row for row in rows if row[0] < cursor_ms]
            else:
                cursor_ms = rows[-1][0] + 1 if full else end_ms
            yield from _samples(rows)

    def sample_before(self, device: str, point: str, start: float, look_back: float) -> Sample | None:
        """The newest raw sample in [start - look_back, start), drills left out."""
        start_ms = _ms(start)
        rows, _ = self._sample_rows(device, point, f"time >= {start_ms - _ms(look_back)}ms AND time < {start_ms}ms",
                                    "ORDER BY time DESC LIMIT 1")
        return next(_samples(rows), None)

    def events(self, start: float, end: float, device: str | None = None, limit: int = 1000) -> list[Event]:
        """Events in [start, end), newest first, from the local SQLite event store."""
        return self._events.events(start, end, device, limit)

    # --- context manager --------------------------------------------------------------------------

    def __enter__(self) -> InfluxStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

    # --- internals --------------------------------------------------------------------------------

    @property
    def _site_tag(self) -> str:
        """The InfluxQL condition for this site's series: one database may hold several sites."""
        return f'"site" = {_literal(self._site)}'

    def _measurement(self, device: str) -> str:
        tags = self._devices.get(device)
        return tags.device_class if tags else UNCLASSIFIED

    def _lines(self, readings: Sequence[Reading]) -> tuple[list[str], int]:
        """One line per device, instant and scenario, with every point of that poll as a field."""
        fields: dict[tuple[str, int, str | None], list[str]] = {}
        count = 0
        for reading in readings:
            field = _field(reading)
            if field is not None:
                fields.setdefault((reading.device, _ms(reading.ts), reading.scenario), []).append(field)
                count += 1
        return [f"{self._series_key(device, scenario)} {','.join(fs)} {ts_ms}"
                for (device, ts_ms, scenario), fs in fields.items()], count

    def _series_key(self, device: str, scenario: str | None) -> str:
        tags = self._devices.get(device)
        pairs = [("device", device), ("profile", tags.profile if tags else ""), ("room", tags.room if tags else ""),
                 ("scenario", scenario or ""), ("site", self._site)]
        # Tag keys in sorted order (InfluxDB's preferred form); empty values are not allowed in line protocol.
        rendered = ",".join(f"{key}={_escape(value)}" for key, value in pairs if value)
        return f"{_escape_measurement(self._measurement(device))},{rendered}"

    def _sample_rows(self, device: str, point: str, when: str, order: str) -> tuple[list[list], bool]:
        """(ms, value, quality code) rows of one point, real readings only; True when the page was cut short."""
        # A missing tag equals '': readings without a scenario tag are the real ones.
        statement = (f"SELECT {_ident(point)}, {_ident(point + QUALITY_SUFFIX)} "
                     f"FROM {_ident(self._measurement(device))} WHERE \"device\" = {_literal(device)} "
                     f"AND {self._site_tag} AND \"scenario\" = '' AND {when} {order}")
        result = self._query.run([statement])[0]
        rows = [row for series in result.get("series", []) for row in series["values"]]
        # "partial": the server's max-row-limit cut the answer below our LIMIT; there is more to read.
        partial = bool(result.get("partial")) or any(series.get("partial") for series in result.get("series", []))
        return rows, bool(rows) and (partial or len(rows) >= self.sample_page)

    def _field_keys(self) -> dict[str, list[str]]:
        result = self._query.run(["SHOW FIELD KEYS"])[0]
        return {s["name"]: [row[0] for row in s["values"]] for s in result.get("series", [])}


class _OutboxSender:
    """Moves spooled lines to influxdb-client's batching WriteApi; acks, dead-letters or retries its answers.

    Each spool batch is handed to the WriteApi as one record with the client's ``batch_size=1``, so each
    HTTP write is exactly one spool batch and its callback names it (by the body). At most
    ``max_in_flight`` batches are with the client at a time: its buffer is memory, the spool is disk.
    """

    def __init__(self, connection: InfluxConnection, spool: Spool, *, clock: Any = time.monotonic):
        config = connection.config
        self._spool = spool
        self._bucket = config.write_bucket
        self._org = config.org
        self._batch_lines = config.batch_lines
        self._max_in_flight = config.max_in_flight
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight: dict[bytes, list[SpoolBatch]] = {}
        self._in_flight_count = 0
        self._split: deque[SpoolBatch] = deque()  # halves of rejected batches, sent before new lines
        self._cursor = 0  # largest spool id handed to the client since the last rewind
        self._more = True  # the spool may hold lines past the cursor
        self._appends = 0  # wake() count: a read that found nothing only clears _more if none came meanwhile
        self._rewind = False
        self._resume_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._down_since: float | None = None
        self._stopping = False
        self._client = InfluxDBClient(
            url=config.url, token=connection.write_token.reveal(), org=config.org,
            timeout=round(config.timeout_s * 1000), enable_gzip=True, verify_ssl=config.tls.verify,
            ssl_ca_cert=str(connection.ca_file) if connection.ca_file else None)
        # influxdb-client logs every retry (WARNING) and every failed batch (ERROR): during an outage that
        # is several lines a second for what the spool absorbs; the sender logs once down, once back up.
        # After the client is built: its constructor resets its loggers to WARNING.
        logging.getLogger("influxdb_client.client.write.retry").setLevel(logging.ERROR)
        logging.getLogger("influxdb_client.client.write_api").setLevel(logging.CRITICAL)
        retry_ms = round(config.retry_time_s * 1000)
        # Our own worker, shut down in stop(): WriteOptions' default is one thread shared by the process.
        self._scheduler = ThreadPoolScheduler(max_workers=1)
        self._write_api = self._client.write_api(
            write_options=WriteOptions(
                batch_size=1, flush_interval=100, jitter_interval=0, retry_interval=500, max_retries=1_000,
                max_retry_delay=min(retry_ms, 10_000), max_retry_time=retry_ms, exponential_base=2,
                max_close_wait=2_000, write_scheduler=self._scheduler),
            success_callback=self._on_success, error_callback=self._on_error)
        self._thread = threading.Thread(target=self._run, name="influx-outbox", daemon=True)

    def start(self) -> None:
        """Start sending what the spool holds (left over from a previous run first)."""
        self._thread.start()

    def wake(self) -> None:
        """New lines were spooled."""
        with self._cond:
            self._more = True
            self._appends += 1
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty and nothing is in flight."""
        deadline = self._clock() + timeout
        with self._cond:
            while self._spool.pending or self._in_flight_count:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def stop(self) -> None:
        """Stop taking batches, give those in flight a moment, close the client."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._write_api.close()  # waits at most max_close_wait for batches in flight
        self._client.close()
        self._scheduler.executor.shutdown(wait=False)

    # --- sender thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._send(batch)

    def _send(self, batch: SpoolBatch) -> None:
        body = "\n".join(batch.lines).encode()
        with self._cond:
            self._in_flight.setdefault(body, []).append(batch)
            self._in_flight_count += 1
        self._write_api.write(self._bucket, self._org, body, WritePrecision.MS)

    def _next_batch(self) -> SpoolBatch | None:
        """Block until a batch may be sent and there is one; None when stopping."""
        while True:
            with self._cond:
                while not self._stopping and not self._may_send():
                    self._cond.wait(self._wait_s())
                if self._stopping:
                    return None
                if self._rewind:  # after a failure: start again from the oldest unacknowledged line
                    self._rewind, self._cursor = False, 0
                if self._split:
                    return self._split.popleft()
                cursor, appends = self._cursor, self._appends
            batch = self._spool.read(cursor, self._batch_lines)
            with self._cond:
                if batch is None:
                    self._more = self._appends != appends
                    continue
                self._cursor = max(self._cursor, batch.last)
                return batch

    def _may_send(self) -> bool:
        if self._in_flight_count >= self._max_in_flight or self._clock() < self._resume_at:
            return False
        if self._rewind and self._in_flight_count:
            return False  # wait for the batches in flight before re-reading from the oldest line
        return bool(self._split) or self._more or self._rewind

    def _wait_s(self) -> float:
        return max(0.01, min(1.0, self._resume_at - self._clock()))

    # --- WriteApi callbacks (the client's thread) ---------------------------------------------------

    def _take(self, body: bytes) -> SpoolBatch | None:
        with self._cond:
            batches = self._in_flight.get(body)
            if not batches:
                return None
            batch = batches.pop(0)
            if not batches:
                del self._in_flight[body]
            return batch

    def _on_success(self, _conf: tuple, body: bytes) -> None:
        batch = self._take(body)
        try:
            if batch is not None:
                self._spool.ack(batch)
        except sqlite3.ProgrammingError:  # closed meanwhile: the lines stay spooled and are re-sent next start
            log.debug("spool closed before InfluxDB acknowledged a batch")
        finally:
            self._finished(failed=False)

    def _on_error(self, _conf: tuple, body: bytes, exc: BaseException) -> None:
        batch = self._take(body)
        status = getattr(exc, "status", None)
        rejected = isinstance(status, int) and 400 <= status < 500 and status not in _RETRY_STATUSES
        try:
            if batch is not None and rejected:
                self._reject(batch, status, exc)
        except sqlite3.ProgrammingError:
            log.debug("spool closed before a rejected batch could be dead-lettered")
        finally:
            self._finished(failed=not rejected, error=exc)

    def _reject(self, batch: SpoolBatch, status: int, exc: BaseException) -> None:
        """Halve a rejected batch until the bad lines are alone, then dead-letter those."""
        if len(batch.ids) > 1:
            with self._cond:
                self._split.extend(batch.halves())
            return
        self._spool.dead_letter(batch, status, _reason(exc))
        log.error("InfluxDB rejected a line (HTTP %s: %s); moved to the spool's dead letters: %.200s",
                  status, _reason(exc), batch.lines[0])

    def _finished(self, *, failed: bool, error: BaseException | None = None) -> None:
        with self._cond:
            self._in_flight_count -= 1
            now = self._clock()
            if failed:
                if self._down_since is None:
                    self._down_since = now
                    log.warning("InfluxDB write failed (%s); readings stay in the spool and are retried",
                                _reason(error))
                self._rewind, self._split = True, deque()
                self._resume_at = now + self._backoff
                self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
            elif self._down_since is not None and not self._rewind:
                log.warning("InfluxDB writes work again after %.0f s; %d lines still spooled",
                            now - self._down_since, self._spool.pending)
                self._down_since, self._backoff = None, BACKOFF_MIN_S
            self._cond.notify_all()


class _InfluxQL:
    """InfluxQL over HTTP (``POST /query``): several statements per request, times as epoch ms."""

    def __init__(self, connection: InfluxConnection):
        config = connection.config
        self._url = config.url.rstrip("/") + "/query"
        self._fields = {"db": config.database, "epoch": "ms"}
        if config.retention_policy:
            self._fields["rp"] = config.retention_policy
        if connection.token is not None:
            self._headers = {"Authorization": f"Token {connection.token.reveal()}"}
        else:
            assert connection.password is not None
            self._headers = urllib3.make_headers(basic_auth=f"{connection.username}:{connection.password.reveal()}")
        ca = str(connection.ca_file) if connection.ca_file else certifi.where()
        self._http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if config.tls.verify else "CERT_NONE", ca_certs=ca,
            timeout=urllib3.Timeout(total=config.timeout_s), retries=False)

    def run(self, statements: Sequence[str]) -> list[dict]:
        """Results of the statements, in order; raise InfluxQueryError on any error."""
        fields = dict(self._fields, q=";".join(statements))
        try:
            response = self._http.request_encode_body("POST", self._url, fields=fields, headers=self._headers,
                                                      encode_multipart=False)
        except urllib3.exceptions.HTTPError as exc:
            raise InfluxQueryError(f"InfluxDB at {self._url} is unreachable: {exc}") from exc
        try:
            answer = json.loads(response.data)
        except ValueError:
            answer = {}
        if response.status != 200 or "error" in answer:
            raise InfluxQueryError(f"InfluxDB answered {response.status}: {answer.get('error', response.data[:200])}")
        results = answer.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxQueryError(f"InfluxQL error: {result['error']}")
        if len(results) != len(statements):
            raise InfluxQueryError(f"InfluxDB answered {len(results)} results to {len(statements)} statements")
        return results

    def close(self) -> None:
        self._http.clear()


def _field(reading: Reading) -> str | None:
    """The line-protocol field of a reading: its value if GOOD and finite, else its quality code; None for text."""
    if reading.quality is Quality.GOOD:
        if reading.value is None:
            return None  # a text-only reading: nothing numeric to store
        value = float(reading.value)
        if math.isfinite(value):
            return f"{_escape(reading.point)}={value!r}"
        code = QUALITY_CODE[Quality.MISSING]  # as SqliteStore: a NaN/inf "GOOD" value is a missing value
    else:
        code = QUALITY_CODE[Quality(reading.quality)]
    return f"{_escape(reading.point + QUALITY_SUFFIX)}={float(code)!r}"


def _latest_reading(field: str, series: dict) -> Reading:
    tags = series.get("tags", {})
    ts_ms, value = series["values"][0][:2]
    scenario = tags.get("scenario") or None
    if field.endswith(QUALITY_SUFFIX):
        quality = _QUALITY_OF.get(float(value), Quality.INVALID)
        return Reading(tags.get("device", ""), _point_of(field), ts_ms / 1000, None, quality, None, scenario)
    return Reading(tags.get("device", ""), field, ts_ms / 1000, float(value), Quality.GOOD, None, scenario)


def _samples(rows: list[list]) -> Iterator[Sample]:
    """One Sample per instant; a quality field on the instant wins over a value (never count a doubtful value)."""
    for ts_ms, group in itertools.groupby(rows, key=lambda row: row[0]):
        values, codes = zip(*((row[1], row[2]) for row in group), strict=True)
        code = next((c for c in codes if c is not None), None)
        value = next((v for v in values if v is not None), None)
        if code is None and value is not None:
            yield Sample(ts_ms / 1000, float(value), Quality.GOOD)
        else:
            yield Sample(ts_ms / 1000, None, _QUALITY_OF.get(float(code or 0), Quality.INVALID))


def _point_of(field: str) -> str:
    return field.removesuffix(QUALITY_SUFFIX)


def _ms(ts: float) -> int:
    return round(ts * 1000)


# Line protocol escapes only these; a newline cannot be escaped at all, so it becomes an (escaped) space.
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ "})


def _escape(text: str) -> str:
    """A tag key/value or field key in line protocol."""
    return text.translate(_TAG_ESCAPES)


def _escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def _ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    body = getattr(exc, "body", None)
    if body:
        return str(body)[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
