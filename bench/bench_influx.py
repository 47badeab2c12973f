"""Benchmark of the InfluxDB store: write throughput, outbox catch-up after an outage, InfluxQL query time.

Usage: ``python bench/bench_influx.py --out bench/results/influx.json`` (needs Debian's victoria-metrics
and influxdb; ports 127.0.0.1:30680-30699); ``run()`` returns the same figures.

- write: readings through ``InfluxStore.write`` (spooled, fsynced) and until VictoriaMetrics
  acknowledged all of them (``flush``);
- catch-up: VictoriaMetrics stopped while 10 minutes of 1,000 points/s are written (600,000 readings,
  50 devices × 20 points every second), then started again: time until the spool is empty;
- query: 30 days of one point every 10 s (259,200 samples) bulk-loaded into influxd 1.6.7 (through
  the 1.8 write-endpoint shim of tests/contract), then ``query`` downsampled to 1,000 / 100 buckets.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable as a plain script before the package is installed

from collectors.model import Reading  # noqa: E402
from tests.contract.conftest import (  # noqa: E402
    InfluxdPeer,
    V2WriteShim,
    VictoriaPeer,
    close_store,
    influx_store,
    influxql,
)

VM_PORT = 30680
INFLUXD_HTTP_PORT, INFLUXD_BIND_PORT, SHIM_PORT = 30681, 30682, 30683
DEVICES = 50
POINTS = 20
OUTAGE_S = 600  # simulated seconds of polls written while the store is down (1,000 points/s)
WRITE_READINGS = 200_000
QUERY_DAYS = 30
QUERY_STEP_S = 10
QUERY_RUNS = 20
T_END = float(int(time.time()) // 86_400 * 86_400)  # midnight today: every timestamp is in the past


def _polls(seconds: int, start: float) -> list[list[Reading]]:
    """One batch per second: every device's POINTS points (DEVICES × POINTS readings per batch)."""
    return [[Reading(f"dh1-ups-{d:02d}", f"p{p:02d}", start + s, 230.0 + (s % 17) * 0.1 + p)
             for d in range(DEVICES) for p in range(POINTS)] for s in range(seconds)]


def _measure_write(vm: VictoriaPeer, tmp: Path) -> dict:
    seconds = WRITE_READINGS // (DEVICES * POINTS)
    batches = _polls(seconds, T_END - 2 * 86_400)
    store = influx_store(vm.url, "facwatch", tmp / "write", batch_lines=5_000)
    started = time.perf_counter()
    for batch in batches:
        store.write(batch)
    spooled_s = time.perf_counter() - started
    assert store.flush(300), store.spool_stats()
    acked_s = time.perf_counter() - started
    close_store(store)
    total = seconds * DEVICES * POINTS
    return {"readings": total, "lines": seconds * DEVICES, "batch_readings": DEVICES * POINTS,
            "spool_readings_per_s": round(total / spooled_s), "acknowledged_readings_per_s": round(total / acked_s),
            "seconds": round(acked_s, 2)}


def _measure_catch_up(vm: VictoriaPeer, tmp: Path) -> dict:
    batches = _polls(OUTAGE_S, T_END - 86_400)
    store = influx_store(vm.url, "facwatch", tmp / "outage", batch_lines=5_000)
    vm.stop()
    started = time.perf_counter()
    for batch in batches:
        store.write(batch)
    spool_s = time.perf_counter() - started
    pending = store.spool_stats().pending
    vm.start()
    restarted = time.perf_counter()
    first_ack = None
    while store.spool_stats().pending:
        if first_ack is None and store.spool_stats().pending < pending:
            first_ack = time.perf_counter()
        time.sleep(0.01)
    drained = time.perf_counter()
    close_store(store)
    readings = OUTAGE_S * DEVICES * POINTS
    sending_s = drained - (first_ack or restarted)
    return {"outage_readings": readings, "spooled_lines": pending, "spool_write_s": round(spool_s, 2),
            "resume_after_restart_s": round((first_ack or drained) - restarted, 2),
            "catch_up_s": round(drained - restarted, 2),
            "catch_up_readings_per_s": round(readings / sending_s) if sending_s > 0 else None}


def _measure_query(influxd: InfluxdPeer, shim: V2WriteShim, tmp: Path) -> dict:
    influxql(influxd.port, 'CREATE DATABASE "bench"')
    url = f"http://127.0.0.1:{shim.port}"
    store = influx_store(url, "bench", tmp / "query", batch_lines=10_000)
    start = T_END - QUERY_DAYS * 86_400
    samples = QUERY_DAYS * 86_400 // QUERY_STEP_S
    loaded = time.perf_counter()
    for first in range(0, samples, 10_000):
        store.write([Reading("dh1-ups-a", "input.voltage", start + i * QUERY_STEP_S, 230.0 + (i % 100) * 0.01)
                     for i in range(first, min(samples, first + 10_000))])
    assert store.flush(600), store.spool_stats()
    load_s = time.perf_counter() - loaded
    timings = {}
    for label, span, max_points in (("30d_1000", QUERY_DAYS * 86_400, 1_000), ("30d_100", QUERY_DAYS * 86_400, 100),
                                    ("1d_1000", 86_400, 1_000)):
        runs = []
        for _ in range(QUERY_RUNS):
            t = time.perf_counter()
            buckets = store.query("dh1-ups-a", "input.voltage", T_END - span, T_END, max_points)
            runs.append(time.perf_counter() - t)
        assert sum(b.count for b in buckets) == span // QUERY_STEP_S, "not every sample was loaded"
        runs.sort()
        timings[label] = {"buckets": len(buckets), "median_ms": round(statistics.median(runs) * 1000, 1),
                          "p95_ms": round(runs[int(0.95 * (len(runs) - 1))] * 1000, 1)}
    t = time.perf_counter()
    latest = store.latest()
    latest_ms = round((time.perf_counter() - t) * 1000, 1)
    close_store(store)
    return {"samples": samples, "step_s": QUERY_STEP_S, "load_s": round(load_s, 2),
            "load_readings_per_s": round(samples / load_s), "queries": timings, "latest_ms": latest_ms,
            "latest_readings": len(latest), "server": "influxd 1.6.7 (Debian)"}


def run() -> dict:
    """All three measurements; starts and stops its own VictoriaMetrics and influxd."""
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp_name:
        tmp = Path(tmp_name)
        vm = VictoriaPeer(tmp / "vm", VM_PORT)
        vm.start()
        try:
            write = _measure_write(vm, tmp)
            catch_up = _measure_catch_up(vm, tmp)
        finally:
            vm.stop()
        influxd = InfluxdPeer(tmp / "influxd", INFLUXD_HTTP_PORT, INFLUXD_BIND_PORT)
        influxd.start()
        shim = V2WriteShim(influxd.port, SHIM_PORT)
        try:
            query = _measure_query(influxd, shim, tmp)
        finally:
            shim.close()
            influxd.stop()
    return {"write_victoriametrics": write, "catch_up_victoriametrics": catch_up, "query_influxd": query,
            "python": platform.python_version(), "machine": platform.machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "influx.json")
    args = parser.parse_args()
    result = run()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
