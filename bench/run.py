"""facwatch benchmarks: collector vs bare library on the same agents, and the embedded store.

Run: ``make bench`` (or ``python bench/run.py --out results.json --markdown results.md``).
The simulated agents run in a separate process (``facwatch simulate``), so the figures here are the
polling process's own CPU; on a 2-core machine agent and poller still compete for cores, so
throughput figures are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_store  # noqa: E402
from collectors.model import HEALTH_POINTS  # noqa: E402
from config.load import Site, load_site  # noqa: E402
from tests.peers import wait_for_tcp  # noqa: E402

SECRETS = ROOT / "config" / "sites" / "demo-secrets"
SNMP_BASE_PORT, MODBUS_BASE_PORT, CONTROL_PORT = 26161, 26502, 26099
SCALE_SNMP_BASE, SCALE_MODBUS_BASE, SENSORS_PER_GATEWAY = 30000, 31000, 10
HEALTH = {spec.name for spec in HEALTH_POINTS}


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def site_header(site_id: str, name: str, control_port: int = CONTROL_PORT) -> list[str]:
    """The lines of a benchmark site before its devices: one room, the SNMPv3 SHA-256/AES credential."""
    return [
        f"site: {{id: {site_id}, name: {name}}}",
        "rooms: [{id: hall, name: Hall}]",
        "credentials:",
        "  v3: {type: snmp_v3, user: facwatch, auth_protocol: sha256, priv_protocol: aes128,",
        f"       auth_key: {{file: {SECRETS / 'snmp-auth-key'}}}, priv_key: {{file: {SECRETS / 'snmp-priv-key'}}}}}",
        f"simulation: {{snmp_credentials: [v3], control: '127.0.0.1:{control_port}'}}",
        "devices:",
    ]


def bench_site_yaml(snmp_devices: int, modbus_devices: int, interval_s: float) -> str:
    """A synthetic site: N RFC 1628 UPSs over SNMPv3 authPriv and N Modbus T/H transmitters."""
    lines = site_header("bench", "benchmark site")
    for i in range(snmp_devices):
        lines.append(f"  - {{id: ups-{i}, class: ups, profile: ups/ietf_rfc1628, room: hall, host: 127.0.0.1, "
                     f"port: {SNMP_BASE_PORT + i}, credential: v3, poll_interval_s: {interval_s}}}")
    for i in range(modbus_devices):
        lines.append(f"  - {{id: th-{i}, class: thsensor, profile: thsensor/generic_xymd02, room: hall, "
                     f"host: 127.0.0.1, port: {MODBUS_BASE_PORT + i}, poll_interval_s: {interval_s}}}")
    return "\n".join(lines) + "\n"


async def measure(workers: list[Callable[[], Awaitable[int]]], seconds: float) -> dict:
    """Run each worker in a loop for ``seconds``; points counted from their return values."""
    points = 0
    stop_at = time.monotonic() + seconds

    async def loop(work: Callable[[], Awaitable[int]]) -> None:
        nonlocal points
        while time.monotonic() < stop_at:
            got = await work()  # `points += await work()` would read `points` before awaiting and lose counts
            points += got

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(loop(w) for w in workers))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    return {"points": points, "seconds": round(wall, 2), "cpu_s": cpu, "points_per_s": round(points / wall, 1),
            "cpu_s_per_1000_points": round(1000 * cpu / max(points, 1), 4)}


async def bare_snmp_workers(site: Site) -> tuple[list, Callable[[], None]]:
    """A minimal pysnmp loop: the same OIDs, the same PDU sizes, pre-resolved, lookupMib=False."""
    from pysnmp.hlapi.v3arch.asyncio import (
        USM_AUTH_HMAC192_SHA256,
        USM_PRIV_CFB128_AES,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        get_cmd,
    )

    engine = SnmpEngine()
    cred = site.credential("v3")
    auth = UsmUserData(cred.user, authKey=cred.auth_key.reveal(), privKey=cred.priv_key.reveal(),
                       authProtocol=USM_AUTH_HMAC192_SHA256, privProtocol=USM_PRIV_CFB128_AES)
    workers = []
    for device in (d for d in site.devices if d.device_class == "ups"):
        target = await UdpTransportTarget.create((device.host, device.port), timeout=1.0, retries=1)
        oids = [ObjectType(ObjectIdentity(p.oid)) for p in site.profile(device).points]
        batches = [oids[i:i + device.snmp.max_oids_per_request if device.snmp else 24]
                   for i in range(0, len(oids), 24)]

        async def work(target=target, batches=batches) -> int:
            got = 0
            for batch in batches:
                err, status, _, varbinds = await get_cmd(engine, auth, target, ContextData(), *batch, lookupMib=False)
                got += 0 if err or status else len(varbinds)
            return got
        workers.append(work)
    return workers, engine.close_dispatcher


async def bare_modbus_workers(site: Site) -> tuple[list, Callable[[], Awaitable[None]]]:
    """A minimal pymodbus loop: one client per device, the same two block reads the planner makes."""
    from pymodbus.client import AsyncModbusTcpClient

    clients, workers = [], []
    for device in (d for d in site.devices if d.device_class == "thsensor"):
        client = AsyncModbusTcpClient(device.host, port=device.port, timeout=1.0, retries=1)
        await client.connect()
        clients.append(client)

        async def work(c=client) -> int:
            ir = await c.read_input_registers(1, count=2, device_id=1)
            hr = await c.read_holding_registers(257, count=4, device_id=1)
            return (0 if ir.isError() else 2) + (0 if hr.isError() else 4)
        workers.append(work)

    async def close() -> None:
        for client in clients:
            client.close()
    return workers, close


async def collector_workers(site: Site, device_class: str) -> tuple[list, Callable[[], Awaitable[None]]]:
    """facwatch's own poll path (poller + decode into Readings), one loop per device."""
    from collectors.scheduler import make_poller

    pollers = [make_poller(site, d) for d in site.devices if d.device_class == device_class]

    async def work_for(poller) -> int:
        result = await poller.poll()
        return sum(1 for r in result.readings if r.point not in HEALTH)

    async def close() -> None:
        for poller in pollers:
            await poller.close()
    return [lambda p=p: work_for(p) for p in pollers], close


@dataclass(frozen=True, slots=True)
class CollectorRun:
    """One Collector run for a fixed time: readings delivered (health points left out), statuses, cost."""

    delivered: int
    status: dict
    cpu_s: float
    wall_s: float
    rss_mb: float
    stop_s: float


async def run_collector(site: Site, seconds: float, stop_timeout: float = 10.0) -> CollectorRun:
    """Run the real Collector over ``site`` for ``seconds``; CPU, wall and RSS are taken before it stops."""
    from collectors.scheduler import Collector

    delivered = 0

    def sink(readings) -> None:
        nonlocal delivered
        delivered += sum(1 for r in readings if r.point not in HEALTH)

    collector = Collector(site, sink)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    task = asyncio.create_task(collector.run())
    await asyncio.sleep(seconds)
    status, rss = collector.status(), rss_mb()
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    stopping = time.monotonic()
    try:
        await asyncio.wait_for(collector.stop(), stop_timeout)
    except TimeoutError:
        print(f"collector of {len(site.devices)} devices did not stop within {stop_timeout} s",
              file=sys.stderr, flush=True)
    task.cancel()
    return CollectorRun(delivered, status, cpu, wall, rss, time.monotonic() - stopping)


async def scheduled_collector(site: Site, seconds: float) -> dict:
    """The real Collector on its schedule: points delivered, CPU per 1,000 points, overruns."""
    run = await run_collector(site, seconds)
    return {"devices": len(site.devices), "interval_s": site.devices[0].poll_interval_s,
            "points": run.delivered, "points_per_s": round(run.delivered / run.wall_s, 1),
            "cpu_s_per_1000_points": round(1000 * run.cpu_s / max(run.delivered, 1), 4),
            "overruns": sum(s.overruns for s in run.status.values()),
            "unreachable": sum(1 for s in run.status.values() if not s.reachable)}


async def compare(name: str, site: Site, device_class: str, bare_factory, seconds: float, rounds: int = 8) -> dict:
    """Bare library loop and facwatch's poll path against the same agents, alternating in rounds.

    Alternating (bare, ours, bare, ours, ...) and summing spreads the simulator's and the machine's
    own ups and downs over both sides instead of charging them to whichever ran second.
    """
    bare, close_bare = await bare_factory(site)
    ours, close_ours = await collector_workers(site, device_class)
    totals = {"bare_library": [], "facwatch_poller": []}
    for _ in range(rounds):
        totals["bare_library"].append(await measure(bare, seconds / rounds))
        totals["facwatch_poller"].append(await measure(ours, seconds / rounds))
    closed = close_bare()
    if asyncio.iscoroutine(closed):
        await closed
    await close_ours()
    merged = {side: _merge(results) for side, results in totals.items()}
    overhead = merged["facwatch_poller"]["cpu_s_per_1000_points"] / max(
        merged["bare_library"]["cpu_s_per_1000_points"], 1e-9)
    return {"protocol": name, "devices": len(bare), "rounds": rounds, **merged,
            "cpu_overhead_ratio": round(overhead, 3)}


def _merge(results: list[dict]) -> dict:
    """Sum rounds of one side into one figure."""
    points = sum(r["points"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {"points": points, "seconds": round(seconds, 2), "cpu_s": round(cpu, 3),
            "points_per_s": round(points / seconds, 1),
            "cpu_s_per_1000_points": round(1000 * cpu / max(points, 1), 4)}


def split_cpus() -> tuple[set[int], set[int]]:
    """Agents on one half of the CPUs, the measured poller on the other, so neither steals the other's core."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def start_simulator(config: Path, site: Site) -> subprocess.Popen:
    """``facwatch simulate`` in its own process, waited on until every Modbus port listens."""
    simulator_cpus, poller_cpus = split_cpus()
    proc = subprocess.Popen([sys.executable, "-m", "facwatch.cli", "simulate", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                            preexec_fn=lambda: os.sched_setaffinity(0, simulator_cpus))
    os.sched_setaffinity(0, poller_cpus)
    wait_for_control(proc)
    return proc


def wait_for_control(proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """The control endpoint answers only after every agent and gateway is bound: the readiness signal."""
    import urllib.request

    wait_for_tcp(CONTROL_PORT, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{CONTROL_PORT}/scenarios", timeout=5):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the simulator exited during start-up") from None
            time.sleep(0.2)
    raise TimeoutError("simulator did not become ready")


async def run_polling(seconds: float, devices: int) -> dict:
    """All polling benchmarks against one simulator process."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(bench_site_yaml(devices, devices, 1.0))
        site = load_site(config)
        proc = start_simulator(config, site)
        try:
            snmp = await compare("snmp (v3 authPriv SHA-256/AES)", site, "ups", bare_snmp_workers, seconds)
            modbus = await compare("modbus tcp", site, "thsensor", bare_modbus_workers, seconds)
            scheduled = await scheduled_collector(site, seconds)
        finally:
            proc.terminate()
            proc.wait(10)
    return {"snmp": snmp, "modbus": modbus, "scheduled_collector": scheduled}


def scale_site_yaml(snmp_devices: int, modbus_devices: int, interval_s: float) -> str:
    """A synthetic site: SNMPv3 UPSs, each its own agent, and T/H transmitters 10 per RTU gateway."""
    lines = bench_site_yaml(0, 0, interval_s).splitlines()
    for i in range(snmp_devices):
        lines.append(f"  - {{id: ups-{i}, class: ups, profile: ups/ietf_rfc1628, room: hall, host: 127.0.0.1, "
                     f"port: {SCALE_SNMP_BASE + i}, credential: v3, poll_interval_s: {interval_s}}}")
    for i in range(modbus_devices):
        gateway, unit = divmod(i, SENSORS_PER_GATEWAY)
        lines.append(f"  - {{id: th-{i}, class: thsensor, profile: thsensor/generic_xymd02, room: hall, "
                     f"host: 127.0.0.1, port: {SCALE_MODBUS_BASE + gateway}, modbus: {{unit_id: {unit + 1}}}, "
                     f"poll_interval_s: {interval_s}}}")
    return "\n".join(lines) + "\n"


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def run_scale(devices: int, seconds: float) -> dict:
    """One collector polling a 200-device site at 10 s: missed deadlines, CPU per point, memory."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "scale.yaml"
        config.write_text(scale_site_yaml(devices // 2, devices - devices // 2, 10.0))
        site = load_site(config)
        proc = start_simulator(config, site)
        try:
            rss_before = rss_mb()
            run = await run_collector(site, seconds)
            simulator_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    status, delivered, wall = run.status, run.delivered, run.wall_s
    return {"devices": len(site.devices), "snmp_devices": devices // 2, "modbus_devices": devices - devices // 2,
            "interval_s": 10.0, "seconds": round(wall, 1), "points": delivered,
            "points_per_s": round(delivered / wall, 1), "polls": sum(s.polls for s in status.values()),
            "missed_deadlines": sum(s.overruns for s in status.values()),
            "unreachable_at_end": sum(1 for s in status.values() if not s.reachable),
            "cpu_s_per_1000_points": round(1000 * run.cpu_s / max(delivered, 1), 4),
            "cpu_utilisation_pct": round(100 * run.cpu_s / wall, 1),
            "collector_rss_mb": run.rss_mb, "collector_rss_growth_mb": round(run.rss_mb - rss_before, 1),
            "simulator_rss_mb": simulator_rss}


def markdown(results: dict) -> str:
    """The README table."""
    rows = ["| benchmark | facwatch | bare library | ratio / target |", "|---|---|---|---|"]
    for key in ("snmp", "modbus"):
        r = results["polling"][key]
        ours, bare = r["facwatch_poller"], r["bare_library"]
        rows.append(f"| {r['protocol']}: points/s, {r['devices']} devices | {ours['points_per_s']:,} | "
                    f"{bare['points_per_s']:,} | |")
        rows.append(f"| {r['protocol']}: CPU-s per 1,000 points | {ours['cpu_s_per_1000_points']} | "
                    f"{bare['cpu_s_per_1000_points']} | {r['cpu_overhead_ratio']}× (target < 1.3×) |")
    s = results["polling"]["scheduled_collector"]
    rows.append(f"| scheduled collector, {s['devices']} devices @ {s['interval_s']} s: points/s, overruns | "
                f"{s['points_per_s']:,}, {s['overruns']} overruns | | CPU-s/1,000 pts {s['cpu_s_per_1000_points']} |")
    if "scale" in results:
        sc = results["scale"]
        rows.append(f"| {sc['devices']}-device site ({sc['snmp_devices']} SNMPv3 + {sc['modbus_devices']} Modbus) "
                    f"@ {sc['interval_s']:g} s, {sc['seconds']:g} s run: missed deadlines | {sc['missed_deadlines']} "
                    f"of {sc['polls']} polls | | target 0 |")
        rows.append(f"| same: points/s, CPU-s per 1,000 points, CPU use | {sc['points_per_s']:,}, "
                    f"{sc['cpu_s_per_1000_points']}, {sc['cpu_utilisation_pct']} % of a core | | |")
        rows.append(f"| same: collector RSS (growth during run) | {sc['collector_rss_mb']} MB "
                    f"(+{sc['collector_rss_growth_mb']} MB) | | simulator: {sc['simulator_rss_mb']} MB |")
    write, query = results["store"]["write"], results["store"]["query_24h_10s"]
    rows.append(f"| store batched writes (batches of {write['batch_size']:,}), points/s | {write['points_per_s']:,} | "
                "| target ≥ 100,000 |")
    rows.append(f"| store query: 24 h of one 10-s series → 1,000 points, median / p95 ms | "
                f"{query['median_ms']} / {query['p95_ms']} | | target ≤ 50 ms |")
    return "\n".join(rows) + "\n"


def main() -> int:
    """Run everything, write JSON (and markdown), print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each polling measurement")
    parser.add_argument("--devices", type=int, default=8, help="simulated devices per protocol")
    parser.add_argument("--scale-devices", type=int, default=200, help="devices in the scale run (0 = skip)")
    parser.add_argument("--scale-seconds", type=float, default=65.0, help="duration of the scale run")
    args = parser.parse_args()
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "polling": asyncio.run(run_polling(args.seconds, args.devices)),
        **({"scale": asyncio.run(run_scale(args.scale_devices, args.scale_seconds))} if args.scale_devices else {}),
        "store": bench_store.run(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
