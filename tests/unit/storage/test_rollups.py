"""Rollup cells: the rollup path of query() equals the raw scan, stays idempotent, survives raw retention."""

import logging
import math
import random
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.model import Quality, Reading
from evidence.auditlog import AuditLog
from evidence.keys import generate_key_file
from evidence.retention import DAY_S, Retention, RetentionPolicy
from storage.sqlite import _MIGRATIONS, _SCHEMA, ROLLUP_WIDTHS_MS, SqliteStore, _plan

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, whole hours
HOUR = 3600.0
TABLES = [f"rollup_{w // 1000}s" for w in ROLLUP_WIDTHS_MS]


def open_store(path: Path, **kwargs) -> SqliteStore:
    return SqliteStore(path, synchronous="NORMAL", background_backfill=False, **kwargs)


def cells(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        result = {t: conn.execute(f"SELECT * FROM {t} ORDER BY series_id, cell_ms").fetchall() for t in TABLES}
    conn.close()
    return result


def assert_same_buckets(got, want):
    """Start, min, max, count and missing exactly; the mean up to float rounding (sums merge in another order)."""
    assert [(b.start, b.minimum, b.maximum, b.count, b.missing) for b in got] == [
        (b.start, b.minimum, b.maximum, b.count, b.missing) for b in want]
    for g, w in zip(got, want, strict=True):
        assert (g.mean is None) == (w.mean is None)
        if g.mean is not None:
            assert math.isclose(g.mean, w.mean, rel_tol=1e-9, abs_tol=1e-9)


def both_paths(store: SqliteStore, start: float, end: float, max_points: int):
    """(rollup path, raw path) of the same query, bypassing the width threshold that picks one."""
    start_ms, end_ms = round(start * 1000), round(end * 1000)
    width = max(1, -(-(end_ms - start_ms) // max_points))
    return (store._query_rollups("d", "p", start_ms, end_ms, width),
            store._query_raw("d", "p", start_ms, end_ms, width))


# --- equivalence -------------------------------------------------------------------------------------

SPAN_MS = 3 * 86_400_000
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False), st.integers(-50, 50).map(float),
    st.sampled_from([Quality.MISSING, Quality.INVALID, "text", math.nan, math.inf]))
# Spread over three days (one sample per cell, mostly) or packed into two hours (many per cell).
samples = st.sampled_from([1, 36]).flatmap(
    lambda squeeze: st.lists(st.tuples(st.integers(0, SPAN_MS).map(lambda o: o // squeeze), values), max_size=150))


def reading(offset_ms: int, value, scenario: str | None = None) -> Reading:
    ts = T0 + offset_ms / 1000
    if isinstance(value, Quality):
        return Reading("d", "p", ts, None, value)
    if value == "text":
        return Reading("d", "p", ts, None, Quality.GOOD, "on", scenario)
    return Reading("d", "p", ts, value, Quality.GOOD, None, scenario)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=samples, second=samples, batches=st.integers(1, 4), shuffle_seed=st.integers(0, 1000),
       retain_at=st.one_of(st.none(), st.integers(0, SPAN_MS)),
       start=st.integers(-3_600_000, SPAN_MS), span=st.integers(1, SPAN_MS + 7_200_000),
       max_points=st.integers(1, 700))
def test_rollup_path_equals_the_raw_scan(first, second, batches, shuffle_seed, retain_at, start, span, max_points):
    """Random batches, out of order, replayed and corrected, with or without a retention pass in between."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "f.db") as store:
        readings = [reading(o, v) for o, v in first]
        random.Random(shuffle_seed).shuffle(readings)
        for i in range(batches):
            store.write(readings[i::batches])
        if retain_at is not None:
            store.apply_retention(T0 + retain_at / 1000, days=0.0)
        store.write([reading(o, v) for o, v in second])  # corrections, replays and late (even pruned) stamps
        store.write(readings[: len(readings) // 2])  # a replay
        rollup, raw = both_paths(store, T0 + start / 1000, T0 + (start + span) / 1000, max_points)
        assert_same_buckets(rollup, raw)


@pytest.mark.parametrize(("span_s", "max_points"), [(365 * 86_400, 600), (30 * 86_400, 600), (7 * 86_400, 600),
                                                     (86_400, 24), (86_400, 1)])
@pytest.mark.parametrize("offset_s", [0.0, 37.25, 1234.5])
def test_long_ranges_aligned_or_not_equal_the_raw_scan(tmp_path, span_s, max_points, offset_s):
    with open_store(tmp_path / "f.db") as store:
        rng = random.Random(7)
        store.write([Reading("d", "p", T0 + i * HOUR + rng.random() * 3000, rng.uniform(-5, 5))
                     for i in range(24 * 60)])
        store.write([Reading("d", "p", T0 + 86_400 + i * 7.0, rng.uniform(0, 1)) for i in range(5_000)])
        rollup, raw = both_paths(store, T0 + offset_s, T0 + offset_s + span_s, max_points)
        assert rollup and len(rollup) <= max_points
        assert_same_buckets(rollup, raw)
        assert_same_buckets(store.query("d", "p", T0 + offset_s, T0 + offset_s + span_s, max_points), raw)


def test_aligned_query_reads_whole_cells_only():
    plan = _plan(round(T0 * 1000), round((T0 + 24 * HOUR) * 1000), 3_600_000, floor=-(2**62))
    assert plan[0] == [] and plan[60_000] == [] and plan[900_000] == []
    assert len(plan[3_600_000]) == 24


def test_unaligned_query_reads_raw_only_at_the_edges():
    start = round(T0 * 1000) + 12_345
    plan = _plan(start, start + 30 * 86_400_000, 30 * 86_400_000 // 600, floor=-(2**62))
    assert all(hi - lo < 60_000 for _, lo, hi in plan[0])
    assert len(plan[0]) <= 2 * 600


def test_wide_buckets_take_the_rollup_path_narrow_ones_the_raw_scan(tmp_path, monkeypatch):
    with open_store(tmp_path / "f.db") as store:
        store.write([Reading("d", "p", T0 + i * 60.0, float(i)) for i in range(2000)])
        monkeypatch.setattr(store, "_query_raw", lambda *a: pytest.fail("raw path taken"))
        assert sum(b.count for b in store.query("d", "p", T0, T0 + 2000 * 60, 100)) == 2000
        monkeypatch.undo()
        monkeypatch.setattr(store, "_query_rollups", lambda *a: pytest.fail("rollup path taken"))
        assert sum(b.count for b in store.query("d", "p", T0, T0 + 3600, 600)) == 60


def test_scenario_tagged_readings_count_in_rollups_as_in_the_raw_scan(tmp_path):
    with open_store(tmp_path / "f.db") as store:
        store.write([reading(i * 10_000, float(i), "mains_failure" if i % 2 else None) for i in range(720)])
        rollup, raw = both_paths(store, T0, T0 + 2 * HOUR, 2)
        assert [b.count for b in rollup] == [360, 360]
        assert_same_buckets(rollup, raw)


# --- idempotence, order --------------------------------------------------------------------------------

def ramp(count: int, step: float = 2.0, start: float = T0) -> list[Reading]:
    return [Reading("d", "p", start + i * step, float(i % 97)) for i in range(count)]


def test_replayed_batches_leave_the_cells_as_they_were(tmp_path):
    path = tmp_path / "f.db"
    batch = ramp(5_000)
    with open_store(path) as store:
        store.write(batch)
        before = cells(path)
        assert store.write(batch) == 0
        assert store.write(batch[1000:3000]) == 0
        assert cells(path) == before
        (bucket,) = store.query("d", "p", T0, T0 + 10_000, 1)
        assert bucket.count == 5_000


def test_out_of_order_batches_build_the_same_cells_as_one_ordered_batch(tmp_path):
    batch = ramp(5_000)
    with open_store(tmp_path / "a.db") as store:
        store.write(batch)
    shuffled = batch[:]
    random.Random(3).shuffle(shuffled)
    with open_store(tmp_path / "b.db") as store:
        for i in range(0, len(shuffled), 97):
            store.write(shuffled[i:i + 97])
    assert cells(tmp_path / "a.db") == cells(tmp_path / "b.db")  # bit for bit: cells are recomputed, not summed


def test_a_correction_lowers_the_maximum_of_every_level(tmp_path):
    with open_store(tmp_path / "f.db") as store:
        store.write([Reading("d", "p", T0 + 30, 500.0), *ramp(10, start=T0 + 100)])
        store.write([Reading("d", "p", T0 + 30, None, Quality.MISSING)])
        stored = cells(tmp_path / "f.db")
        assert stored["rollup_60s"][0][2:] == (None, None, None, 0, 1, 1)
        for table in TABLES[1:]:
            assert stored[table][0][2:] == (0.0, 9.0, 45.0, 10, 1, 11)
        (bucket,) = store.query("d", "p", T0, T0 + HOUR, 1)
        assert (bucket.maximum, bucket.count, bucket.missing) == (9.0, 10, 1)


def test_text_only_cells_appear_as_empty_buckets_as_in_the_raw_scan(tmp_path):
    with open_store(tmp_path / "f.db") as store:
        store.write([Reading("d", "p", T0 + i * 600, None, Quality.GOOD, "UPS 09.3") for i in range(12)])
        rollup, raw = both_paths(store, T0, T0 + 2 * HOUR, 2)
        assert rollup == raw and [b.count for b in rollup] == [0, 0]


# --- retention -----------------------------------------------------------------------------------------

def test_raw_retention_keeps_hourly_cells_and_query_answers_only_the_samples_kept(tmp_path):
    path = tmp_path / "f.db"
    with open_store(path, retention_days=1) as store:
        store.write(ramp(3 * 86_400 // 60, step=60.0))  # three days of a 60-s series
        now = T0 + 3 * 86_400
        assert store.apply_retention(now) == 2 * 86_400 // 60
        left = cells(path)
        assert all(row[1] >= (now - 86_400) * 1000 for t in TABLES[:2] for row in left[t])
        assert len(left["rollup_3600s"]) == 72  # the hourly cells of the deleted days are kept
        (bucket,) = store.query("d", "p", T0, now, 1)
        assert bucket.count == 86_400 // 60  # query() answers the samples the store holds, as before rollups
        rollup, raw = both_paths(store, T0 + 17.5, now, 600)
        assert_same_buckets(rollup, raw)


def test_rollup_retention_never_prunes_cells_above_the_raw_floor(tmp_path):
    with open_store(tmp_path / "f.db", retention_days=1) as store:
        store.write(ramp(3 * 86_400 // 60, step=60.0))
        assert store.prune_rollups(T0 + 3 * 86_400) == 0  # nothing deleted as raw yet: all cells needed
        store.apply_retention(T0 + 3 * 86_400)
        assert store.has_old("rollups", T0 + 3 * 86_400)
        assert store.prune_rollups(T0 + 3 * 86_400) == 48  # only the hours below the floor (2 days)
        assert not store.has_old("rollups", T0 + 3 * 86_400)
        rollup, raw = both_paths(store, T0, T0 + 3 * 86_400, 72)
        assert_same_buckets(rollup, raw)


def test_store_own_retention_prunes_rollups_after_rollup_retention_days(tmp_path):
    path = tmp_path / "f.db"
    with open_store(path, retention_days=1, rollup_retention_days=2) as store:
        store.write(ramp(4 * 86_400 // 60, step=60.0))
        store.apply_retention(T0 + 4 * 86_400)
        assert len(cells(path)["rollup_3600s"]) == 48


def test_audited_retention_pass_prunes_rollups_as_their_own_kind(tmp_path):
    db = tmp_path / "f.db"
    now = T0 + 100 * DAY_S
    with open_store(db) as store, AuditLog(db, generate_key_file(tmp_path / "audit.key")) as audit:
        store.write(ramp(24 * 50, step=HOUR))  # 50 days, hourly
        removed = Retention(RetentionPolicy(readings_days=70, rollups_days=80), store, audit, lambda: now)()
        assert removed == 24 * 30 + 24 * 20  # 30 days of samples, then 20 days of hourly cells
        subjects = [e.subject for e in audit.entries()]
        assert subjects.count("retention rollups") == 2  # intent, then outcome
        assert len(cells(db)["rollup_3600s"]) == 24 * 30


def test_policy_refuses_non_positive_rollup_retention():
    with pytest.raises(ValueError, match="rollups"):
        RetentionPolicy(rollups_days=0)


# --- migration ----------------------------------------------------------------------------------------

def old_schema_file(path: Path, readings: list[Reading]) -> None:
    """A file as schema version 2 wrote it (no rollup tables), holding ``readings`` of series d/p."""
    with sqlite3.connect(path) as conn:
        for ddl in (*_SCHEMA, *_MIGRATIONS[2]):
            conn.execute(ddl)
        conn.execute("INSERT INTO series (id, device, point) VALUES (1, 'd', 'p'), (2, 'd', 'q')")
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?, 0, NULL, NULL)",
                         [(sid, round(r.ts * 1000), r.value) for r in readings for sid in (1, 2)])
        conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_old_schema_file_is_backfilled_in_chunks_and_reads_raw_meanwhile(tmp_path, caplog):
    readings = ramp(5 * 86_400 // 30, step=30.0)  # 5 days of a 30-s series, two series
    old_schema_file(tmp_path / "old.db", readings)
    with open_store(tmp_path / "new.db") as fresh:
        fresh.write(readings)
        fresh.write([Reading("d", "q", r.ts, r.value) for r in readings])
        fresh.write(ramp(10, step=30.0, start=T0 + 2 * 86_400))
    caplog.set_level(logging.INFO, "facwatch.storage")
    with open_store(tmp_path / "old.db") as store:
        assert store.backfill_pending()
        want = store._query_raw("d", "p", round(T0 * 1000), round((T0 + 5 * 86_400) * 1000), 720_000)
        assert store.query("d", "p", T0, T0 + 5 * 86_400, 600) == want  # raw until the rollups are complete
        assert store.backfill_rollups(max_chunks=3) is False  # one series-day per transaction
        store.write(ramp(10, step=30.0, start=T0 + 2 * 86_400))  # writers interleave with the backfill
        assert store.backfill_rollups() is True
        assert not store.backfill_pending()
        rollup, raw = both_paths(store, T0, T0 + 5 * 86_400, 600)
        assert_same_buckets(rollup, raw)
        assert_same_buckets(store.query("d", "p", T0, T0 + 5 * 86_400, 600), raw)
    assert cells(tmp_path / "old.db") == cells(tmp_path / "new.db")
    assert "rollups will be built" in caplog.text and "backfill complete" in caplog.text


def test_backfill_runs_in_the_background_and_resumes_after_close(tmp_path):
    old_schema_file(tmp_path / "old.db", ramp(3 * 86_400 // 60, step=60.0))
    store = SqliteStore(tmp_path / "old.db", synchronous="NORMAL")  # starts the backfill thread
    store.close()  # stops it (between chunks) and waits for it
    with SqliteStore(tmp_path / "old.db", synchronous="NORMAL") as store:
        store._backfill_thread.join(timeout=30)
        assert not store.backfill_pending()
    assert len(cells(tmp_path / "old.db")["rollup_3600s"]) == 2 * 72


def test_a_new_file_needs_no_backfill(tmp_path):
    with open_store(tmp_path / "f.db") as store:
        assert not store.backfill_pending()


def test_readers_on_the_rollup_path_see_whole_batches_while_a_writer_writes(tmp_path):
    batches, per_batch = 30, 600
    seen: list[int] = []
    errors: list[BaseException] = []
    with open_store(tmp_path / "f.db") as store:
        done = threading.Event()

        def write():
            try:
                for b in range(batches):
                    store.write(ramp(per_batch, step=5.0, start=T0 + b * per_batch * 5.0))
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        def read():
            try:
                while True:
                    finished = done.is_set()
                    seen.append(sum(b.count for b in store.query("d", "p", T0 + 7.5, T0 + batches * per_batch * 5, 50)))
                    if finished:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert seen == sorted(seen) and seen[-1] == batches * per_batch - 2  # the samples before T0 + 7.5 s
    assert all(count % per_batch == per_batch - 2 for count in seen if count)  # never half a batch


def test_rollup_retention_shorter_than_raw_keeps_the_cells_raw_samples_still_need(tmp_path):
    db = tmp_path / "f.db"
    now = T0 + 100 * DAY_S
    with open_store(db) as store, AuditLog(db, generate_key_file(tmp_path / "audit.key")) as audit:
        store.write(ramp(24 * 50, step=HOUR))
        Retention(RetentionPolicy(readings_days=70, rollups_days=10), store, audit, lambda: now)()
        assert len(cells(db)["rollup_3600s"]) == 24 * 20  # exactly the hours of the samples left
        rollup, raw = both_paths(store, T0, now, 100)
        assert_same_buckets(rollup, raw)
