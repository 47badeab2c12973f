"""Benchmark of the SQLite store: batched write throughput and downsampled query latency.

Also the rollups: write throughput with their maintenance patched out (the cost of keeping them), the
migration backfill of an old-schema file, and long-range queries (1 year of a 60-s series and 30 days
of a 2-s series → 600 buckets, start not aligned, as the Trends page asks) by the raw scan and by rollups.

Usage: ``python bench/bench_store.py --out bench/results/store.json``; ``run()`` returns the same figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable as a plain script before the package is installed

import storage.sqlite as sqlite_module  # noqa: E402
from collectors.model import Reading  # noqa: E402
from storage.sqlite import _MIGRATIONS, _SCHEMA, SqliteStore  # noqa: E402

SERIES = 50
BATCH = 5_000
TOTAL_POINTS = 500_000
STEP_S = 10.0
T0 = 1_700_000_000.0
QUERY_SPAN_S = 86_400.0
QUERY_POINTS = 1_000
QUERY_RUNS = 50
# Long ranges: (name, span s, step s); one series each, ending LONG_END, queried into LONG_POINTS buckets.
LONG_SERIES = (("year_60s", 365 * 86_400, 60), ("30d_2s", 30 * 86_400, 2))
LONG_END = T0 + 400 * 86_400
LONG_POINTS = 600
LONG_OFFSET_S = 17.3  # the dashboard's end is "now": never on a minute
RAW_RUNS, ROLLUP_RUNS = 3, 20


def _batches() -> list[list[Reading]]:
    """Batches of BATCH readings: every series at successive 10-s instants, built before timing."""
    per_batch = BATCH // SERIES
    instants = TOTAL_POINTS // SERIES
    batches = []
    for first in range(0, instants, per_batch):
        batches.append([
            Reading(f"dev-{s:02d}", "input.voltage", T0 + i * STEP_S, 230.0 + (i % 17) * 0.1 + s)
            for i in range(first, first + per_batch)
            for s in range(SERIES)
        ])
    return batches


def _measure_writes(store: SqliteStore, batches: list[list[Reading]]) -> dict:
    """Write every batch once, timed; then replay one batch to time the idempotent path."""
    started, cpu_started = time.perf_counter(), time.process_time()
    inserted = sum(store.write(batch) for batch in batches)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    replay_started = time.perf_counter()
    store.write(batches[-1])
    replay_s = time.perf_counter() - replay_started
    return {
        "points": inserted,
        "batch_size": BATCH,
        "series": SERIES,
        "seconds": round(elapsed, 3),
        "points_per_s": round(inserted / elapsed),
        # CPU time of this process: steadier than wall time on a shared machine (fsync waits excluded)
        "cpu_points_per_s": round(inserted / cpu),
        "replay_batch_ms": round(replay_s * 1000, 2),
    }


def _measure_query(store: SqliteStore) -> dict:
    """Median and p95 of the last 24 h of one 10-s series downsampled to QUERY_POINTS."""
    end = T0 + (TOTAL_POINTS // SERIES) * STEP_S
    start = end - QUERY_SPAN_S
    timings, buckets = [], []
    for _ in range(QUERY_RUNS):
        started = time.perf_counter()
        buckets = store.query("dev-07", "input.voltage", start, end, QUERY_POINTS)
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "samples": sum(b.count for b in buckets),
        "buckets": len(buckets),
        "runs": QUERY_RUNS,
        "median_ms": round(statistics.median(timings), 3),
        "p95_ms": round(statistics.quantiles(timings, n=20)[18], 3),
    }


def _measure_latest(store: SqliteStore) -> dict:
    """Median of latest() over all series: the dashboard's current-values read."""
    timings = []
    for _ in range(QUERY_RUNS):
        started = time.perf_counter()
        store.latest()
        timings.append((time.perf_counter() - started) * 1000)
    return {"series": SERIES, "median_ms": round(statistics.median(timings), 3)}


@contextmanager
def _rollups_off() -> Iterator[None]:
    """Patch out rollup maintenance, to measure what keeping rollups costs a write."""
    recompute = sqlite_module._recompute_cells
    sqlite_module._recompute_cells = lambda *args: None
    try:
        yield
    finally:
        sqlite_module._recompute_cells = recompute


def _old_schema_file(path: Path) -> None:
    """A schema-2 file (no rollups) holding the LONG_SERIES, written straight into ``samples``."""
    with sqlite3.connect(path) as conn:
        for ddl in (*_SCHEMA, *_MIGRATIONS[2]):
            conn.execute(ddl)
        for sid, (name, span, step) in enumerate(LONG_SERIES, start=1):
            conn.execute("INSERT INTO series (id, device, point) VALUES (?, ?, 'input.voltage')", (sid, name))
            first = round((LONG_END - span) * 1000)
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?, 0, NULL, NULL)",
                             ((sid, first + i * step * 1000, 230.0 + (i % 17) * 0.1) for i in range(span // step)))
        conn.execute("PRAGMA user_version = 2")
    conn.close()


def _median_ms(call, runs: int) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2), result


def _measure_long_ranges(tmp: Path) -> dict:
    """Migrate an old file (backfill timed), then time each long range by the raw scan and by rollups."""
    path = tmp / "long.db"
    _old_schema_file(path)
    samples = sum(span // step for _, span, step in LONG_SERIES)
    with SqliteStore(path, background_backfill=False) as store:
        started = time.perf_counter()
        store.backfill_rollups()
        backfill_s = time.perf_counter() - started
        result: dict = {"backfill": {"samples": samples, "seconds": round(backfill_s, 2),
                                     "samples_per_s": round(samples / backfill_s)}}
        for name, span, step in LONG_SERIES:
            end = LONG_END - LONG_OFFSET_S
            start_ms, end_ms = round((end - span) * 1000), round(end * 1000)
            width = -(-(end_ms - start_ms) // LONG_POINTS)
            raw_ms, raw = _median_ms(partial(store._query_raw, name, "input.voltage", start_ms, end_ms, width),
                                     RAW_RUNS)
            rollup_ms, rollup = _median_ms(partial(store.query, name, "input.voltage", end - span, end, LONG_POINTS),
                                           ROLLUP_RUNS)
            assert [(b.start, b.count, b.minimum, b.maximum) for b in rollup] == [
                (b.start, b.count, b.minimum, b.maximum) for b in raw], name
            result[name] = {"samples": span // step, "buckets": len(rollup), "raw_median_ms": raw_ms,
                            "rollup_median_ms": rollup_ms, "speed_up": round(raw_ms / rollup_ms, 1)}
    return result


def run() -> dict:
    """Run the benchmark on a temporary file and return the figures."""
    batches = _batches()
    with tempfile.TemporaryDirectory() as tmp:
        with SqliteStore(Path(tmp) / "bench.db") as store:
            write = _measure_writes(store, batches)
            query = _measure_query(store)
            latest = _measure_latest(store)
        with _rollups_off(), SqliteStore(Path(tmp) / "no-rollups.db") as store:
            write_without = _measure_writes(store, batches)
        long_ranges = _measure_long_ranges(Path(tmp))
    write["rollup_cpu_cost"] = round(1 - write["cpu_points_per_s"] / write_without["cpu_points_per_s"], 3)
    return {
        "write": write,
        "write_without_rollups": write_without,
        "query_24h_10s": query,
        "latest": latest,
        "long_ranges": long_ranges,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _print_table(result: dict) -> None:
    """Print the headline figures."""
    rows = [
        ("write throughput (batches of 5,000)", f"{result['write']['points_per_s']:,} points/s"),
        ("  per CPU second", f"{result['write']['cpu_points_per_s']:,} points/s"),
        ("  the same with rollup maintenance patched out",
         f"{result['write_without_rollups']['points_per_s']:,} points/s, "
         f"{result['write_without_rollups']['cpu_points_per_s']:,} per CPU second"),
        ("points written", f"{result['write']['points']:,}"),
        ("replay of one batch", f"{result['write']['replay_batch_ms']} ms"),
        ("query 24 h → 1,000 points, median", f"{result['query_24h_10s']['median_ms']} ms"),
        ("query 24 h → 1,000 points, p95", f"{result['query_24h_10s']['p95_ms']} ms"),
        ("latest() over 50 series, median", f"{result['latest']['median_ms']} ms"),
        ("rollup backfill of an old file", f"{result['long_ranges']['backfill']['samples_per_s']:,} samples/s"),
        *((f"query {name} → {LONG_POINTS} buckets, raw / rollups",
           f"{result['long_ranges'][name]['raw_median_ms']} / {result['long_ranges'][name]['rollup_median_ms']} ms")
          for name, _, _ in LONG_SERIES),
        ("python / sqlite", f"{result['python']} / {result['sqlite']}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    """Run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the JSON figures")
    args = parser.parse_args(argv)
    result = run()
    _print_table(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
