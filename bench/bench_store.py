"""Benchmark of the SQLite store: batched write throughput and downsampled query latency.

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable as a plain script before the package is installed

from collectors.model import Reading  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402

SERIES = 50
BATCH = 5_000
TOTAL_POINTS = 500_000
STEP_S = 10.0
T0 = 1_700_000_000.0
QUERY_SPAN_S = 86_400.0
QUERY_POINTS = 1_000
QUERY_RUNS = 50


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
    started = time.perf_counter()
    inserted = sum(store.write(batch) for batch in batches)
    elapsed = time.perf_counter() - started
    replay_started = time.perf_counter()
    store.write(batches[-1])
    replay_s = time.perf_counter() - replay_started
    return {
        "points": inserted,
        "batch_size": BATCH,
        "series": SERIES,
        "seconds": round(elapsed, 3),
        "points_per_s": round(inserted / elapsed),
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


def run() -> dict:
    """Run the benchmark on a temporary file and return the figures."""
    batches = _batches()
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.db") as store:
        write = _measure_writes(store, batches)
        query = _measure_query(store)
        latest = _measure_latest(store)
    return {
        "write": write,
        "query_24h_10s": query,
        "latest": latest,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _print_table(result: dict) -> None:
    """Print the headline figures."""
    rows = [
        ("write throughput (batches of 5,000)", f"{result['write']['points_per_s']:,} points/s"),
        ("points written", f"{result['write']['points']:,}"),
        ("replay of one batch", f"{result['write']['replay_batch_ms']} ms"),
        ("query 24 h → 1,000 points, median", f"{result['query_24h_10s']['median_ms']} ms"),
        ("query 24 h → 1,000 points, p95", f"{result['query_24h_10s']['p95_ms']} ms"),
        ("latest() over 50 series, median", f"{result['latest']['median_ms']} ms"),
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
