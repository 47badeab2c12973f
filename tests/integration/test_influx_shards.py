"""Acceptance of issue 8: two collector shards + the simulators + a real influxd; one dashboard store sees all.

Peers: ``facwatch simulate`` (a process of its own) serving tests/data/sites/influx_example.yaml, Debian's
influxd 1.6.7 behind the 1.8 write-endpoint shim of tests/contract. Ports 127.0.0.1:30800-30899.

The shards run as ``facwatch collect --shard i/2 --metrics ...`` processes once the CLI has ``--shard``;
until then they run in this process, wired as the runtime wires them (shard_site → InfluxStore behind its
own spool → ReadingWriter → Collector, /metrics beside it). Either way each shard serves /metrics, which
the test scrapes to prove that every shard polled exactly its own devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.model import REACHABLE_POINT, Quality
from collectors.scheduler import Collector
from collectors.sharding import Shard, shard_site
from config.load import Site, load_site
from facwatch.metrics import CollectorMetrics, start_metrics_server
from facwatch.runtime import ReadingWriter, fan_out
from storage.influx import InfluxStore, device_tags
from storage.sqlite import SqliteStore
from tests.contract.conftest import InfluxdPeer, V2WriteShim, influxql
from tests.peers import PeerProcess, wait_for_tcp

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "data" / "sites" / "influx_example.yaml"
FACWATCH = [sys.executable, "-m", "facwatch.cli"]
INFLUXD_HTTP, INFLUXD_BIND, SHIM = 30800, 30801, 30802  # the example's url is the shim
METRICS_PORTS = {1: 30851, 2: 30852}
CONTROL = 30899  # simulation.control of the example
TOKEN = "test-token"  # influxd 1.6.7 runs without auth; the client still sends it
SETTLE_S = 90.0


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdPeer]:
    peer = InfluxdPeer(tmp_path_factory.mktemp("influxd"), INFLUXD_HTTP, INFLUXD_BIND)
    peer.start()
    shim = V2WriteShim(peer.port, SHIM)
    try:
        influxql(peer.port, 'CREATE DATABASE "facwatch"')
        yield peer
    finally:
        shim.close()
        peer.stop()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example site with its files in tmp_path and the demo secrets by absolute path."""
    monkeypatch.setenv("FACWATCH_INFLUX_TOKEN", TOKEN)
    path = tmp_path / "site.yaml"
    path.write_text(EXAMPLE.read_text().replace("../../../config/", f"{ROOT}/config/")
                    .replace("../../../var/", f"{tmp_path}/"))
    return path


@pytest.fixture
def simulator(config: Path, tmp_path: Path) -> Iterator[PeerProcess]:
    proc = PeerProcess([*FACWATCH, "simulate", "-c", str(config), "--seed", "8"], tmp_path / "simulate.log",
                       env=os.environ | {"FACWATCH_INFLUX_TOKEN": TOKEN})
    try:
        _wait_for_control(proc)
        yield proc
    finally:
        proc.stop(timeout=20)


def _wait_for_control(proc: PeerProcess, timeout: float = 60.0) -> None:
    """The control endpoint answers only after every agent and gateway is bound."""
    wait_for_tcp(CONTROL, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{CONTROL}/scenarios", timeout=5):
                return
        except OSError:
            assert proc.process.poll() is None, proc.output()
            assert time.monotonic() < deadline, "simulator not ready"
            time.sleep(0.2)


def _cli_has_shards() -> bool:
    out = subprocess.run([*FACWATCH, "collect", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    return "--shard" in out.stdout and "--metrics" in out.stdout


@contextlib.asynccontextmanager
async def _shard_processes(config: Path, tmp_path: Path) -> AsyncIterator[None]:
    """``facwatch collect --shard i/2 --metrics ...``: the real CLI, one process per shard."""
    procs = [PeerProcess([*FACWATCH, "collect", "-c", str(config), "--shard", f"{i}/2",
                          "--metrics", f"127.0.0.1:{port}"], tmp_path / f"shard-{i}.log",
                         env=os.environ | {"FACWATCH_INFLUX_TOKEN": TOKEN})
             for i, port in METRICS_PORTS.items()]
    try:
        for port in METRICS_PORTS.values():
            await asyncio.to_thread(wait_for_tcp, port, timeout=60)
        yield
    finally:
        for proc in procs:
            proc.stop(timeout=20)


@contextlib.asynccontextmanager
async def _shard_in_process(site: Site, shard: Shard, metrics_port: int) -> AsyncIterator[None]:
    """One shard wired as facwatch.runtime wires ``collect --shard`` (the lines handed to the lead)."""
    part = shard_site(site, shard)
    assert part.influx is not None
    part.storage_path().parent.mkdir(parents=True, exist_ok=True)
    events = SqliteStore(part.storage_path())
    store = InfluxStore(part.influx, device_tags(part.config), site=part.config.site.id, event_store=events)
    writer = ReadingWriter(store)
    metrics = CollectorMetrics(part, shard=f"{shard.index}/{shard.count}", spool=store.spool_stats,
                               spool_path=part.influx.spool_path, notify_db=events.path)
    server = start_metrics_server(metrics, f"127.0.0.1:{metrics_port}")
    collector = Collector(part, fan_out(writer.put, metrics.observe))
    metrics.watch(collector.status)
    await collector.start()
    try:
        yield
    finally:
        await collector.stop()
        writer.close()
        store.close()
        events.close()
        server.stop()


@contextlib.asynccontextmanager
async def _two_shards(config: Path, tmp_path: Path) -> AsyncIterator[str]:
    if await asyncio.to_thread(_cli_has_shards):
        async with _shard_processes(config, tmp_path):
            yield "cli"
        return
    site = load_site(config)
    async with _shard_in_process(site, Shard(1, 2), METRICS_PORTS[1]), \
            _shard_in_process(site, Shard(2, 2), METRICS_PORTS[2]):
        yield "in-process"


def _dashboard_store(site: Site, tmp_path: Path) -> InfluxStore:
    """What ``facwatch dashboard`` reads with storage.influx set: the whole site, no sender."""
    from dataclasses import replace

    assert site.influx is not None
    connection = replace(site.influx, spool_path=tmp_path / "dashboard-spool.db")
    return InfluxStore(connection, device_tags(site.config), site=site.config.site.id,
                       event_store=SqliteStore(tmp_path / "dashboard.db"), start=False)


def _polled_devices(port: int) -> dict[str, float]:
    """device → polls, from a real GET of the shard's /metrics, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.labels["device"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "facwatch_polls_total"}


def _devices_with_data(store: InfluxStore) -> dict[str, dict[str, float | None]]:
    """device → {point: newest GOOD value}, as the dashboard's latest() sees them."""
    seen: dict[str, dict[str, float | None]] = {}
    for reading in store.latest():
        if reading.quality is Quality.GOOD:
            seen.setdefault(reading.device, {})[reading.point] = reading.value
    return seen


async def test_two_shards_write_one_influxdb_and_one_dashboard_shows_every_device(
        influx: InfluxdPeer, config: Path, simulator: PeerProcess, tmp_path: Path) -> None:
    site = load_site(config)
    every = {d.id for d in site.devices}
    owners = {i: {d for d in every if Shard(i, 2).owns(d)} for i in METRICS_PORTS}
    assert all(owners.values()), "the example site must give both shards devices"
    dashboard = _dashboard_store(site, tmp_path)
    try:
        async with _two_shards(config, tmp_path) as mode:
            deadline = time.monotonic() + SETTLE_S
            while True:
                seen = await asyncio.to_thread(_devices_with_data, dashboard)
                complete = {d for d, points in seen.items() if REACHABLE_POINT in points and len(points) > 2}
                if complete >= every or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            polled = {i: await asyncio.to_thread(_polled_devices, port) for i, port in METRICS_PORTS.items()}
    finally:
        events = dashboard._events
        dashboard.close()
        events.close()

    assert complete == every, f"({mode}) devices without data in InfluxDB: {sorted(every - complete)}"
    assert set(seen) == every  # nothing under a name the site does not have
    for index, devices in owners.items():
        assert set(polled[index]) == devices, f"shard {index}/2 polled {sorted(polled[index])}"
        assert all(count >= 1 for count in polled[index].values())
    assert all(points[REACHABLE_POINT] == 1 for points in seen.values())  # the newest poll of each answered
