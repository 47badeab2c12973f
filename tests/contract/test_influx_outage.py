"""The InfluxStore write path against real servers: schema on the wire, outages, crashes, rejected lines.

VictoriaMetrics takes influxdb-client's /api/v2/write natively and gives every stored sample back
through /api/v1/export (metric name ``<measurement>_<field>``); influxd 1.6.7 (behind the 1.8 write
shim) answers 400 to a malformed line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from collectors.model import Quality, Reading
from storage.influx import InfluxQueryError
from storage.spool import Spool
from tests.conftest import ROOT
from tests.contract.conftest import VictoriaPeer, close_store, influx_store, influxql

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POINTS = ("input.voltage", "output.load", "battery.charge")
DEVICES = ("dh1-ups-a", "dh1-ups-b")


def poll(tick: int, base: float) -> list[Reading]:
    """One poll of every device: distinct instants per tick, values that encode the tick."""
    return [Reading(d, p, base + tick * 0.01, float(tick)) for d in DEVICES for p in POINTS]


def samples(answer: list[dict]) -> int:
    return sum(len(series["timestamps"]) for series in answer)


def exported(victoria: VictoriaPeer, at_least: int) -> tuple[set[tuple[str, str, int]], int, dict]:
    """(metric, device, ts_ms) of every stored sample, the raw sample count, and value by key."""
    keys: set[tuple[str, str, int]] = set()
    values: dict[tuple[str, str, int], float] = {}
    raw = 0
    for series in victoria.export('{__name__=~"ups_.*"}', until=lambda answer: samples(answer) >= at_least):
        metric = series["metric"]
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            key = (metric["__name__"], metric["device"], ts)
            keys.add(key)
            values[key] = value
            raw += 1
    return keys, raw, values


def expected(ticks: range, base: float) -> set[tuple[str, str, int]]:
    return {(f"ups_{p}", d, round((base + t * 0.01) * 1000)) for t in ticks for d in DEVICES for p in POINTS}


def test_readings_arrive_with_the_schema_tags_and_quality_fields(victoria, tmp_path):
    store = influx_store(victoria.url, "facwatch", tmp_path)
    now = round(time.time())
    store.write([Reading("dh1-ups-a", "input.voltage", now, 231.5),
                 Reading("dh1-ups-a", "input.voltage", now + 1, None, Quality.MISSING),
                 Reading("dh1-ups-a", "output.load", now + 1, 1e20, Quality.INVALID),
                 Reading("dh1-ups-a", "ups.firmware", now + 1, None, Quality.GOOD, "UPS 3.1.4")])
    assert store.flush(15)
    close_store(store)
    answer = victoria.export('{__name__=~"ups_.*"}', until=lambda answer: len(answer) >= 3)
    series = {s["metric"]["__name__"]: s for s in answer}
    assert set(series) == {"ups_input.voltage", "ups_input.voltage__quality", "ups_output.load__quality"}
    voltage = series["ups_input.voltage"]
    assert voltage["metric"] == {"__name__": "ups_input.voltage", "site": "dc1", "room": "dh1",
                                 "device": "dh1-ups-a", "profile": "ups/ietf_rfc1628"}
    assert (voltage["timestamps"], voltage["values"]) == ([now * 1000], [231.5])  # no value for the MISSING one
    assert series["ups_input.voltage__quality"]["values"] == [1.0]
    assert series["ups_output.load__quality"]["values"] == [2.0]  # the impossible value itself is not stored


def test_store_outage_loses_nothing_and_replays_harmlessly(victoria, tmp_path):
    store = influx_store(victoria.url, "facwatch", tmp_path, batch_lines=100)
    base = time.time() - 600
    ticks = 0
    stop = threading.Event()

    def writer() -> None:  # a steady 50 polls/s (300 readings/s), as the collectors would
        nonlocal ticks
        while not stop.is_set():
            store.write(poll(ticks, base))
            ticks += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(1.5)
        victoria.stop()  # graceful: what VM acknowledged is on its disk
        time.sleep(4.0)
        assert store.spool_stats().pending > 50  # the outage is buffered in the spool, not lost
        victoria.start()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    assert store.flush(60), store.spool_stats()
    stats = store.spool_stats()
    close_store(store)
    want = expected(range(ticks), base)
    keys, raw, values = exported(victoria, len(want))
    assert keys == want  # 0 lost, nothing invented
    assert raw >= len(keys)  # re-sent batches may be stored twice: same key, same value
    assert all(values[(m, d, ts)] == round((ts / 1000 - base) / 0.01) for m, d, ts in keys)
    assert (stats.dead_letters, stats.dropped) == (0, 0)


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.contract.conftest import influx_store
    from tests.contract.test_influx_outage import poll
    store = influx_store({url!r}, "facwatch", Path({tmp!r}), batch_lines=50)
    tick = 0
    while True:
        store.write(poll(tick, {base!r}))
        print(tick, flush=True)  # write() returned: these readings are acknowledged (spooled, fsynced)
        tick += 1
        time.sleep(0.005)
""")


def test_writer_killed_mid_batch_loses_no_acknowledged_reading(victoria, tmp_path):
    base = time.time() - 600
    script = _WRITER.format(root=str(ROOT), url=victoria.url, tmp=str(tmp_path), base=base)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT, start_new_session=True)
    acknowledged: list[int] = []
    reader = threading.Thread(target=lambda: acknowledged.extend(int(line) for line in process.stdout))
    reader.start()
    try:
        time.sleep(2.0)
        victoria.stop()  # batches now sit in the client's retry loop: the kill lands mid-batch
        time.sleep(1.0)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        reader.join(10)
    assert len(acknowledged) > 100
    with Spool(tmp_path / "spool.db", max_lines=10**9) as spool:
        assert spool.pending > 0  # the crash left unsent lines behind
    victoria.start()
    store = influx_store(victoria.url, "facwatch", tmp_path)
    assert store.flush(60), store.spool_stats()
    close_store(store)
    want = expected(range(len(acknowledged)), base)
    keys, _, _ = exported(victoria, len(want))
    assert want <= keys


def test_rejected_line_goes_to_dead_letters_and_the_rest_is_stored(shim, influx_database, tmp_path):
    store = influx_store(f"http://127.0.0.1:{shim.port}", influx_database, tmp_path, batch_lines=64)
    t0 = 1_767_225_600
    store.write([Reading("dh1-ups-a", "input.voltage", t0 + i, float(i)) for i in range(40)])
    store._spool.append(["ups,device=dh1-ups-a input.voltage=not-a-number 1767225700000"])
    store.write([Reading("dh1-ups-a", "input.voltage", t0 + 200 + i, float(i)) for i in range(40)])
    assert store.flush(30), store.spool_stats()
    stats = store.spool_stats()
    dead = store._spool.dead_letters()
    close_store(store)
    assert stats.dead_letters == 1
    assert dead[0][0] == 400 and "not-a-number" in dead[0][2]
    answer = influxql(shim.port, 'SELECT count("input.voltage") FROM "ups"', influx_database)
    assert answer["results"][0]["series"][0]["values"][0][1] == 80


def test_server_without_the_write_endpoint_keeps_lines_spooled_not_dead(influxd, influx_database, tmp_path):
    # influxd 1.6.7 answers 404 to /api/v2/write: a wrong server or URL, not bad data
    store = influx_store(f"http://127.0.0.1:{influxd.port}", influx_database, tmp_path)
    store.write([Reading("dh1-ups-a", "input.voltage", 1_767_225_600 + i, 1.0) for i in range(10)])
    assert not store.flush(2.5)
    stats = store.spool_stats()
    close_store(store)
    assert (stats.pending, stats.dead_letters) == (10, 0)


def test_reads_fail_loudly_while_the_server_is_down_and_writes_still_spool(tmp_path):
    store = influx_store("http://127.0.0.1:30649", "facwatch", tmp_path)  # nothing listens there
    try:
        assert store.write(poll(0, 1_767_225_600)) == 6
        with pytest.raises(InfluxQueryError, match="unreachable"):
            store.latest()
        assert store.spool_stats().pending == 2
    finally:
        close_store(store)
