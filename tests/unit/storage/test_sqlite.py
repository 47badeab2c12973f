import gc
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from collectors.model import Quality, Reading
from storage.base import Bucket, ReadStore, SeriesKey, WriteStore
from storage.sqlite import SqliteStore

T0 = 1_700_000_000.0
DAY = 86_400.0
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "facwatch.db"


@pytest.fixture
def store(path):
    with SqliteStore(path) as s:
        yield s


def series_of(values, device="dh1-ups-a", point="battery.charge", start=T0, step=1.0):
    """GOOD readings of one series, one per step; a Quality in `values` makes a non-GOOD one."""
    readings = []
    for i, v in enumerate(values):
        ts = start + i * step
        if isinstance(v, Quality):
            readings.append(Reading(device, point, ts, None, v))
        else:
            readings.append(Reading(device, point, ts, v))
    return readings


def sample_count(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]


# --- contract and round trip -----------------------------------------------------------------------

def test_store_implements_both_protocols(store):
    assert isinstance(store, WriteStore)
    assert isinstance(store, ReadStore)


def test_reading_round_trips_with_text_and_scenario(store):
    reading = Reading("dh1-ups-a", "ups.status", T0 + 0.123, 3.0, Quality.GOOD, "onBattery", "mains_failure")
    store.write([reading])
    assert store.latest() == [reading]


def test_text_point_keeps_its_text_and_stays_good(store):
    reading = Reading("dh1-ups-a", "ups.firmware", T0, None, Quality.GOOD, "UPS 09.3")
    store.write([reading])
    assert store.latest() == [reading]


def test_non_good_reading_is_stored_without_value(store):
    store.write([Reading("dh1-crac-1", "supply_air.temperature", T0, 999.0, Quality.INVALID)])
    (stored,) = store.latest()
    assert stored.value is None
    assert stored.quality is Quality.INVALID


def test_series_lists_every_series_with_samples_sorted(store):
    store.write(series_of([1.0], device="b", point="x") + series_of([1.0], device="a", point="y"))
    assert store.series() == [SeriesKey("a", "y"), SeriesKey("b", "x")]


def test_write_of_an_empty_batch_stores_nothing(store, path):
    assert store.write([]) == 0
    assert sample_count(path) == 0


# --- idempotence -----------------------------------------------------------------------------------

def test_write_returns_the_number_of_new_samples(store):
    assert store.write(series_of([1.0, 2.0, 3.0])) == 3
    assert store.write(series_of([1.0, 2.0, 3.0, 4.0])) == 1


def test_replaying_a_batch_changes_nothing(store, path):
    batch = series_of([1.0, 2.0, Quality.MISSING, 4.0])
    store.write(batch)
    before = (store.latest(), store.query("dh1-ups-a", "battery.charge", T0, T0 + 10, 10), sample_count(path))
    assert store.write(batch) == 0
    after = (store.latest(), store.query("dh1-ups-a", "battery.charge", T0, T0 + 10, 10), sample_count(path))
    assert after == before


def test_same_instant_written_again_overwrites_sample_and_latest(store):
    store.write([Reading("d", "p", T0, 1.0)])
    assert store.write([Reading("d", "p", T0, 2.0)]) == 0
    assert store.latest()[0].value == 2.0
    assert store.query("d", "p", T0, T0 + 1, 1)[0].mean == 2.0


def test_failed_batch_leaves_nothing_and_series_ids_stay_consistent(store, path):
    bad = [Reading("a", "p", T0, 1.0), Reading("a", "p", T0 + 1, 1.0, quality="bogus")]
    with pytest.raises(KeyError):
        store.write(bad)
    assert sample_count(path) == 0
    store.write([Reading("b", "p", T0, 2.0)])  # reuses the id the rolled-back series "a" had
    store.write([Reading("a", "p", T0, 1.0)])
    assert [(r.device, r.value) for r in store.latest()] == [("a", 1.0), ("b", 2.0)]


# --- latest ----------------------------------------------------------------------------------------

def test_older_reading_written_later_does_not_replace_latest(store):
    store.write([Reading("d", "p", T0 + 10, 1.0)])
    store.write([Reading("d", "p", T0 + 5, 2.0)])
    assert store.latest() == [Reading("d", "p", T0 + 10, 1.0)]


def test_latest_takes_the_newest_reading_of_an_unordered_batch(store):
    store.write([Reading("d", "p", T0 + 2, 2.0), Reading("d", "p", T0 + 9, 9.0), Reading("d", "p", T0, 0.0)])
    assert store.latest() == [Reading("d", "p", T0 + 9, 9.0)]


def test_latest_can_be_limited_to_some_devices(store):
    store.write(series_of([1.0], device="a") + series_of([2.0], device="b") + series_of([3.0], device="c"))
    assert [r.device for r in store.latest(["c", "a"])] == ["a", "c"]
    assert store.latest([]) == []


def test_latest_refuses_a_single_string_as_devices(store):
    with pytest.raises(TypeError):
        store.latest("dh1-ups-a")


# --- query -----------------------------------------------------------------------------------------

def test_query_downsamples_to_exact_min_max_mean(store):
    store.write(series_of([1.0, 2.0, 4.0, 8.0, 3.0, 5.0, 7.0, 6.0, 0.5, 2.5]))
    buckets = store.query("dh1-ups-a", "battery.charge", T0, T0 + 10, 5)
    assert buckets == [
        Bucket(T0 + 0, 1.0, 2.0, 1.5, 2, 0),
        Bucket(T0 + 2, 4.0, 8.0, 6.0, 2, 0),
        Bucket(T0 + 4, 3.0, 5.0, 4.0, 2, 0),
        Bucket(T0 + 6, 6.0, 7.0, 6.5, 2, 0),
        Bucket(T0 + 8, 0.5, 2.5, 1.5, 2, 0),
    ]


def test_missing_samples_are_counted_apart_and_never_in_the_mean(store):
    store.write(series_of([10.0, Quality.MISSING, Quality.INVALID, 20.0]))
    (bucket,) = store.query("dh1-ups-a", "battery.charge", T0, T0 + 4, 1)
    assert bucket == Bucket(T0, 10.0, 20.0, 15.0, 2, 2)


def test_bucket_with_only_missing_samples_has_no_values(store):
    store.write(series_of([Quality.MISSING, Quality.MISSING]))
    assert store.query("dh1-ups-a", "battery.charge", T0, T0 + 2, 1) == [Bucket(T0, None, None, None, 0, 2)]


def test_gaps_stay_gaps(store):
    store.write(series_of([1.0, 2.0]) + series_of([3.0, 4.0], start=T0 + 8))
    buckets = store.query("dh1-ups-a", "battery.charge", T0, T0 + 10, 5)
    assert [b.start for b in buckets] == [T0, T0 + 8]


@pytest.mark.parametrize("max_points", [1, 7, 333, 999, 1000, 5000])
def test_query_never_returns_more_than_max_points(store, max_points):
    store.write(series_of([float(i) for i in range(1000)], step=0.5))
    buckets = store.query("dh1-ups-a", "battery.charge", T0, T0 + 500, max_points)
    assert 0 < len(buckets) <= max_points
    assert sum(b.count for b in buckets) == 1000
    assert all(T0 <= b.start < T0 + 500 for b in buckets)


def test_query_includes_start_and_excludes_end(store):
    store.write(series_of([1.0, 2.0, 3.0]))
    buckets = store.query("dh1-ups-a", "battery.charge", T0, T0 + 2, 100)
    assert [b.mean for b in buckets] == [1.0, 2.0]


def test_query_of_an_unknown_series_or_empty_range_is_empty(store):
    store.write(series_of([1.0]))
    assert store.query("nope", "battery.charge", T0, T0 + 10, 10) == []
    assert store.query("dh1-ups-a", "battery.charge", T0 + 10, T0, 10) == []


def test_query_refuses_max_points_below_one(store):
    with pytest.raises(ValueError):
        store.query("dh1-ups-a", "battery.charge", T0, T0 + 10, 0)


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_good_value_is_stored_as_missing(store, bad):
    store.write(series_of([1.0, bad, 3.0]))
    (bucket,) = store.query("dh1-ups-a", "battery.charge", T0, T0 + 3, 1)
    assert bucket == Bucket(T0, 1.0, 3.0, 2.0, 2, 1)
    store.write(series_of([bad], start=T0 + 10))
    assert store.latest()[0].quality is Quality.MISSING
    assert store.latest()[0].value is None


def test_good_reading_without_value_or_text_is_stored_as_missing(store):
    store.write([Reading("d", "p", T0, None)])
    assert store.latest()[0].quality is Quality.MISSING


# --- retention -------------------------------------------------------------------------------------

def test_retention_deletes_only_old_samples_and_reports_the_count(path):
    now = T0 + 10 * DAY
    with SqliteStore(path, retention_days=1) as store:
        store.write([*series_of([1.0, 2.0, 3.0, 4.0], start=now - 3 * DAY, step=DAY), Reading("d", "p", now, 5.0)])
        assert store.apply_retention(now) == 2
        assert sample_count(path) == 3
        buckets = store.query("dh1-ups-a", "battery.charge", now - 4 * DAY, now + 1, 4 * 86_400)
        assert [b.mean for b in buckets] == [3.0, 4.0]  # the sample exactly at the cutoff is kept
        assert store.apply_retention(now) == 0


def test_retention_works_in_chunks_across_series(path):
    with SqliteStore(path, retention_days=1) as store:
        store.retention_chunk = 2
        store.write(series_of([1.0] * 5, device="a") + series_of([1.0] * 4, device="b"))
        assert store.apply_retention(T0 + 2 * DAY) == 9
        assert sample_count(path) == 0


def test_retention_keeps_latest_but_drops_emptied_series_from_series(path):
    with SqliteStore(path, retention_days=1) as store:
        store.write(series_of([1.0]))
        store.apply_retention(T0 + 2 * DAY)
        assert store.series() == []
        assert store.latest() == series_of([1.0])


def test_store_refuses_non_positive_retention(path):
    with pytest.raises(ValueError):
        SqliteStore(path, retention_days=0)


# --- threads ---------------------------------------------------------------------------------------

def test_readers_in_other_threads_see_monotonic_growth_while_a_writer_writes(store):
    batches, per_batch = 40, 250
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def write():
        try:
            for b in range(batches):
                store.write(series_of([float(i) for i in range(per_batch)], start=T0 + b * per_batch))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read(counts):
        try:
            while True:
                finished = done.is_set()
                buckets = store.query("dh1-ups-a", "battery.charge", T0, T0 + batches * per_batch, 100)
                counts.append(sum(b.count for b in buckets))
                store.latest()
                store.series()
                if finished:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)]
    for _ in range(3):
        seen.append([])
        threads.append(threading.Thread(target=read, args=(seen[-1],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for counts in seen:
        assert counts == sorted(counts)
        assert counts[-1] == batches * per_batch


def test_reader_connection_of_a_finished_thread_is_released(store):
    thread = threading.Thread(target=store.latest)
    thread.start()
    thread.join()
    gc.collect()
    assert len(store._readers) == 0


# --- persistence -----------------------------------------------------------------------------------

def test_store_reopened_after_close_keeps_data(path):
    batch = series_of([1.0, 2.0, 3.0])
    with SqliteStore(path) as store:
        store.write(batch)
    with SqliteStore(path) as store:
        assert store.latest() == batch[-1:]
        assert store.write(batch) == 0
        assert store.write([Reading("dh1-ups-a", "battery.charge", T0 + 3, 4.0)]) == 1


def test_closed_store_refuses_work(path):
    store = SqliteStore(path)
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.write(series_of([1.0]))
    with pytest.raises(sqlite3.ProgrammingError):
        store.latest()


def test_file_from_a_newer_schema_is_refused(path):
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        SqliteStore(path)


def test_file_is_in_wal_mode(store, path):
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


_CHILD = """
import sys
from collectors.model import Reading
from storage.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
written = store.write([Reading("dev", "p", 1_700_000_000.0 + i, float(i)) for i in range(5000)])
print(written, flush=True)
sys.stdin.read()  # block until killed, without closing the store
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_process_killed_after_write_returned_loses_nothing_of_that_batch(path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd=REPO, env=env,
    ) as child:
        assert child.stdout.readline().strip() == "5000"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").exists()  # the batch was only in the WAL when the process died
    with SqliteStore(path) as store:
        (bucket,) = store.query("dev", "p", T0, T0 + 5000, 1)
        assert (bucket.count, bucket.minimum, bucket.maximum) == (5000, 0.0, 4999.0)
        assert store.latest() == [Reading("dev", "p", T0 + 4999, 4999.0)]
