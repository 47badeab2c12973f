"""Acceptance of issue 8: two collector shards + the simulators + a real influxd; one dashboard store sees all.

Peers: ``facwatch simulate`` (a process of its own) serving tests/data/sites/influx_example.yaml, Debian's
influxd 1.6.7 behind the 1.8 write-endpoint shim of tests/contract. Ports 127.0.0.1:30800-30899.

The shards run as ``facwatch collect --shard i/2 --metrics ...`` processes once the CLI has ``--shard``;
until then they run in this process, wired as the runtime wires them (shard_site → InfluxStore behind its
own spool → ReadingWriter → Collector, /metrics beside it). Either way each shard serves /metrics, which
the test scrapes to prove that every shard polled exactly its own devices.

One ``facwatch dashboard`` (port 31200) over two ``collect --shard i/2`` processes shows the alerts of both
shards (mains_failure: UPSs on battery in one, the CRAC's power alarm in the other), acks through the
owning shard, and names the shard that was SIGKILLed in its banner. It is driven over real HTTP, as the
browser's renderer does (POST /_dash-update-component).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.rules import load_rules
from collectors.model import REACHABLE_POINT, Quality
from collectors.scheduler import Collector
from collectors.sharding import Shard, plan_shards, shard_path, shard_site
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
DASHBOARD_PORT = 31200  # the dashboard of the sharded site (31200-31299: issue 8's dashboard tests)
ALERTS_WAIT_S = 180.0  # mains_failure cuts the utility 30 s in; a shard ticks every 2 s
DOWN_WAIT_S = 120.0  # the banner calls a component down after 30 s without a heartbeat


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
async def _shard_processes(config: Path, tmp_path: Path) -> AsyncIterator[list[PeerProcess]]:
    """``facwatch collect --shard i/2 --metrics ...``: the real CLI, one process per shard."""
    procs = [PeerProcess([*FACWATCH, "collect", "-c", str(config), "--shard", f"{i}/2",
                          "--metrics", f"127.0.0.1:{port}"], tmp_path / f"shard-{i}.log",
                         env=os.environ | {"FACWATCH_INFLUX_TOKEN": TOKEN})
             for i, port in METRICS_PORTS.items()]
    try:
        for port in METRICS_PORTS.values():
            await asyncio.to_thread(wait_for_tcp, port, timeout=60)
        yield procs
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
    plan = plan_shards(site, 2, load_rules())  # as collect --shard places devices (rule groups kept whole)
    owners = {i: set(plan.devices(i)) for i in METRICS_PORTS}
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


class DashCallbacks:
    """Dash callbacks over real HTTP, as the browser's renderer sends them (POST /_dash-update-component)."""

    def __init__(self, base: str):
        self.base = base
        with urllib.request.urlopen(f"{base}/_dash-dependencies", timeout=10) as response:
            self.dependencies = json.load(response)

    def call(self, output_id: str, values: dict[str, object]) -> str:
        """Fire the callback whose first output is ``output_id``; inputs/states from ``values`` by id."""
        dep = next(d for d in self.dependencies if d["output"].lstrip(".").startswith(f"{output_id}."))
        outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
                   for part in dep["output"].strip(".").split("...")]
        body = {"output": dep["output"], "outputs": outputs if dep["output"].startswith("..") else outputs[0],
                "inputs": [{**i, "value": values.get(i["id"])} for i in dep["inputs"]],
                "state": [{**i, "value": values.get(i["id"])} for i in dep["state"]],
                "changedPropIds": [f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}"]}
        request = urllib.request.Request(f"{self.base}/_dash-update-component", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            # as text with its characters unescaped (Dash's encoder writes "/" as "\u002f")
            return json.dumps(json.load(response), ensure_ascii=False)

    def banner(self) -> str:
        """The banner's texts, as the shell's status callback renders them."""
        return self.call("header-clock", {"tick": 1})

    def alerts_page(self) -> str:
        """The Alerts page's tables (active, ack choices, silences, actions, history)."""
        return self.call("alerts-active-body", {"alerts-tick": 1})

    def acknowledge(self, fingerprint: str, author: str, note: str) -> str:
        """Press "Acknowledge" with the alert chosen."""
        return self.call("alerts-ack-message", {"alerts-ack-submit": 1, "alerts-author": author,
                                                "alerts-ack-alert": fingerprint, "alerts-ack-note": note})


def _start_scenario(name: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{CONTROL}/scenarios/{name}/start", b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def _active_alerts(path: Path, rule: str) -> dict[str, str]:
    """device → fingerprint of the pending/firing ``rule`` alerts in one shard's file (read only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT fingerprint, labels FROM alert_state WHERE rule = ? AND state IN "
                            "('pending', 'firing')", (rule,)).fetchall()
    finally:
        conn.close()
    return {json.loads(labels).get("device", ""): fp for fp, labels in rows}


def _ack_outcome(path: Path, fingerprint: str) -> str | None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT payload, outcome FROM operator_command WHERE kind = 'ack'").fetchall()
    finally:
        conn.close()
    return next((outcome for payload, outcome in rows if json.loads(payload)["fingerprint"] == fingerprint), None)


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(1.0)


async def test_one_dashboard_shows_and_acts_on_the_alerts_and_heartbeats_of_both_shards(
        influx: InfluxdPeer, config: Path, simulator: PeerProcess, tmp_path: Path) -> None:
    if not await asyncio.to_thread(_cli_has_shards):
        pytest.fail("facwatch collect has no --shard")
    site = load_site(config)
    files = {i: shard_path(site.storage_path(), Shard(i, 2)) for i in METRICS_PORTS}
    # mains_failure: the UPSs go on battery (kept together in one shard with mains_failure's other devices),
    # the CRAC of the other shard loses power until the generator takes the load
    watched = {"ups-a": "ups_on_battery", "dh1-crac-1": "crac_alarm"}
    plan = plan_shards(site, 2, load_rules())
    owner = {device: plan.owners[device] for device in watched}
    assert set(owner.values()) == {1, 2}, owner
    async with _shard_processes(config, tmp_path) as shards:
        dashboard = PeerProcess([*FACWATCH, "dashboard", "-c", str(config), "--port", str(DASHBOARD_PORT)],
                                tmp_path / "dashboard.log", env=os.environ | {"FACWATCH_INFLUX_TOKEN": TOKEN})
        try:
            await asyncio.to_thread(wait_for_tcp, DASHBOARD_PORT, timeout=60)
            assert all(str(path) in dashboard.output() for path in files.values()), dashboard.output()
            web = await asyncio.to_thread(DashCallbacks, f"http://127.0.0.1:{DASHBOARD_PORT}")
            _start_scenario("mains_failure")

            def raised() -> dict[str, str] | None:
                found = {device: _active_alerts(files[owner[device]], rule).get(device)
                         for device, rule in watched.items()}
                return found if all(found.values()) else None

            fps = await _until(raised, ALERTS_WAIT_S, "alerts of both shards in their files")
            page = await _until(lambda: (lambda text: text if all(fp in text for fp in fps.values()) else None)(
                web.alerts_page()), 30, "both shards' alerts on the dashboard's alerts page")
            assert "ups_on_battery" in page and "crac_alarm" in page
            status = await asyncio.to_thread(web.banner)
            assert "DOWN" not in status and "UNAVAILABLE" not in status, status

            ups_shard = owner["ups-a"]
            reply = await asyncio.to_thread(web.acknowledge, fps["ups-a"], "alice", "on it")
            assert "requested" in reply, reply
            outcome = await _until(lambda: _ack_outcome(files[ups_shard], fps["ups-a"]), 30,
                                   "the ack applied by the UPSs' shard")
            assert outcome == "applied"
            assert _ack_outcome(files[3 - ups_shard], fps["ups-a"]) is None  # only the owning shard got it

            os.kill(shards[ups_shard - 1].pid, signal.SIGKILL)
            shards[ups_shard - 1].process.wait(10)
            down = f"COLLECTOR {ups_shard}/2 DOWN since"
            status = await _until(lambda: (lambda text: text if down in text else None)(web.banner()),
                                  DOWN_WAIT_S, "the banner naming the dead shard")
            assert f"COLLECTOR {3 - ups_shard}/2" not in status and "COLLECTOR DOWN" not in status
            page = await asyncio.to_thread(web.alerts_page)
            assert fps["ups-a"] in page  # a dead shard's last alerts stay listed: its file is still readable
        finally:
            dashboard.stop(timeout=20)
