"""One contract, every store: SqliteStore and InfluxStore must answer the same writes the same way.

The InfluxStore variant writes through its spool and influxdb-client into a real influxd 1.6.7 (via
the 1.8 write-endpoint shim, see conftest.py) and reads back with InfluxQL. Known, documented
differences are not part of the contract: text is not stored in InfluxDB, and ``write`` returns the
readings spooled rather than the ones new to the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.model import Event, Quality, Reading, Severity
from storage.base import Bucket, ReadStore, SeriesKey, WriteStore
from storage.influx import InfluxStore
from storage.sqlite import SqliteStore
from tests.contract.conftest import close_store, influx_store

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RETENTION_DAYS = 2


@pytest.fixture(params=["sqlite", "influx"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore | InfluxStore]:
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "facwatch.db", retention_days=RETENTION_DAYS)
        yield sqlite
        sqlite.close()
        return
    shim = request.getfixturevalue("shim")
    database = request.getfixturevalue("influx_database")
    influx = influx_store(f"http://127.0.0.1:{shim.port}", database, tmp_path, retention_days=RETENTION_DAYS)
    yield influx
    close_store(influx)


def write(store: SqliteStore | InfluxStore, readings: list[Reading]) -> int:
    """Write and wait until the store answers reads with it (InfluxStore: the server acknowledged)."""
    count = store.write(readings)
    if isinstance(store, InfluxStore):
        assert store.flush(timeout=15), store.spool_stats()
    return count


def ramp(device: str, point: str, start: float, count: int, step: float = 10.0) -> list[Reading]:
    return [Reading(device, point, start + i * step, float(i)) for i in range(count)]


def test_both_stores_implement_both_protocols(store):
    assert isinstance(store, WriteStore)
    assert isinstance(store, ReadStore)


def test_fresh_batch_is_counted(store):
    assert write(store, ramp("dh1-ups-a", "input.voltage", T0, 5)) == 5


def test_latest_is_the_newest_reading_of_every_point(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 3) + ramp("dh1-ups-a", "battery.charge", T0, 4)
          + ramp("dh1-th-1", "temperature", T0 + 1.5, 2))
    latest = store.latest()
    assert [(r.device, r.point, r.ts, r.value, r.quality) for r in latest] == [
        ("dh1-th-1", "temperature", T0 + 11.5, 1.0, Quality.GOOD),
        ("dh1-ups-a", "battery.charge", T0 + 30, 3.0, Quality.GOOD),
        ("dh1-ups-a", "input.voltage", T0 + 20, 2.0, Quality.GOOD),
    ]


def test_latest_only_for_the_devices_asked(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 2) + ramp("dh1-ups-b", "input.voltage", T0, 2)
          + ramp("dh1-th-1", "temperature", T0, 2))
    assert {r.device for r in store.latest(["dh1-ups-b", "dh1-th-1"])} == {"dh1-ups-b", "dh1-th-1"}
    assert store.latest([]) == []
    with pytest.raises(TypeError):
        store.latest("dh1-ups-a")


def test_latest_of_a_failed_point_says_why_and_has_no_value(store):
    write(store, [Reading("dh1-ups-a", "input.voltage", T0, 230.0),
                  Reading("dh1-ups-a", "input.voltage", T0 + 10, None, Quality.MISSING),
                  Reading("dh1-ups-a", "output.load", T0 + 10, 912.0),
                  Reading("dh1-ups-a", "output.load", T0 + 20, None, Quality.INVALID)])
    assert [(r.point, r.ts, r.value, r.quality) for r in store.latest()] == [
        ("input.voltage", T0 + 10, None, Quality.MISSING),
        ("output.load", T0 + 20, None, Quality.INVALID),
    ]


def test_query_downsamples_to_min_mean_max_count_per_bucket(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 60))  # values 0..59 every 10 s
    buckets = store.query("dh1-ups-a", "input.voltage", T0, T0 + 600, max_points=6)
    assert buckets == [Bucket(T0 + 100 * b, 10.0 * b, 10.0 * b + 9, 10.0 * b + 4.5, 10, 0) for b in range(6)]


def test_bucket_edges_start_at_the_query_start_not_the_epoch(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 60))
    buckets = store.query("dh1-ups-a", "input.voltage", T0 + 35, T0 + 335, max_points=3)
    assert [(b.start, b.count, b.minimum, b.maximum) for b in buckets] == [
        (T0 + 35, 10, 4.0, 13.0), (T0 + 135, 10, 14.0, 23.0), (T0 + 235, 10, 24.0, 33.0)]


def test_query_is_half_open_and_empty_buckets_are_absent(store):
    write(store, [Reading("dh1-ups-a", "input.voltage", T0, 1.0), Reading("dh1-ups-a", "input.voltage", T0 + 90, 2.0),
                  Reading("dh1-ups-a", "input.voltage", T0 + 100, 3.0)])
    buckets = store.query("dh1-ups-a", "input.voltage", T0, T0 + 100, max_points=10)
    assert [(b.start, b.count) for b in buckets] == [(T0, 1), (T0 + 90, 1)]
    assert store.query("dh1-ups-a", "input.voltage", T0 + 100, T0 + 100, max_points=10) == []
    with pytest.raises(ValueError):
        store.query("dh1-ups-a", "input.voltage", T0, T0 + 100, max_points=0)


def test_missing_readings_are_counted_but_never_averaged(store):
    write(store, [Reading("dh1-ups-a", "input.voltage", T0, 230.0),
                  Reading("dh1-ups-a", "input.voltage", T0 + 10, None, Quality.MISSING),
                  Reading("dh1-ups-a", "input.voltage", T0 + 20, None, Quality.INVALID),
                  Reading("dh1-ups-a", "input.voltage", T0 + 30, 232.0),
                  Reading("dh1-ups-a", "input.voltage", T0 + 40, float("nan")),
                  Reading("dh1-ups-a", "input.voltage", T0 + 70, None, Quality.MISSING)])
    buckets = store.query("dh1-ups-a", "input.voltage", T0, T0 + 100, max_points=2)
    assert buckets == [Bucket(T0, 230.0, 232.0, 231.0, 2, 3), Bucket(T0 + 50, None, None, None, 0, 1)]


def test_replayed_batch_overwrites_instead_of_duplicating(store):
    batch = ramp("dh1-ups-a", "input.voltage", T0, 30)
    write(store, batch)
    write(store, batch)
    write(store, [Reading("dh1-ups-a", "input.voltage", T0 + 290, 100.0)])  # a same-instant correction
    (bucket,) = store.query("dh1-ups-a", "input.voltage", T0, T0 + 300, max_points=1)
    assert (bucket.count, bucket.maximum) == (30, 100.0)
    assert store.latest()[0].value == 100.0


def test_series_lists_every_point_that_has_samples(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 2) + ramp("dh1-th-1", "humidity", T0, 1)
          + [Reading("dh1-ups-b", "battery.charge", T0, None, Quality.MISSING)])
    assert store.series() == [SeriesKey("dh1-th-1", "humidity"), SeriesKey("dh1-ups-a", "input.voltage"),
                              SeriesKey("dh1-ups-b", "battery.charge")]


def test_unknown_series_queries_empty(store):
    write(store, ramp("dh1-ups-a", "input.voltage", T0, 2))
    assert store.query("dh1-ups-a", "no.such.point", T0, T0 + 100, 10) == []
    assert store.query("nobody", "input.voltage", T0, T0 + 100, 10) == []


def test_retention_removes_only_samples_older_than_the_retention(store):
    now = T0 + 10 * 86_400
    old = ramp("dh1-ups-a", "input.voltage", now - (RETENTION_DAYS + 1) * 86_400, 5)
    new = ramp("dh1-ups-a", "input.voltage", now - 3600, 4)
    write(store, old + new)
    assert store.apply_retention(now) == 5
    assert store.query("dh1-ups-a", "input.voltage", T0, now, 1)[0].count == 4
    assert store.apply_retention(now) == 0


def test_events_come_back_newest_first(store):
    events = [Event(T0 + i, "dh1-ups-a", "trap", f"trap{i}", Severity.WARNING, {"n": i}) for i in range(3)]
    store.write_events(events)
    store.write_events([Event(T0 + 1, None, "scenario", "mains_failure", Severity.INFO)])
    assert [e.name for e in store.events(T0, T0 + 10)] == ["trap2", "mains_failure", "trap1", "trap0"]
    assert [e.name for e in store.events(T0, T0 + 10, device="dh1-ups-a", limit=2)] == ["trap2", "trap1"]
