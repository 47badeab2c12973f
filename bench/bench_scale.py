"""Benchmark at scale: points/s per core against slow devices, the largest site one collector keeps on time,
and the InfluxDB outbox catch-up.

Usage: ``python bench/bench_scale.py --out bench/results/scale.json`` (about 5 minutes on 2 cores; needs
Debian's victoria-metrics for the catch-up part). Ports 127.0.0.1:11000-12999 (below the ephemeral range).

Every simulated device answers each request after a delay drawn uniformly from 50-200 ms
(``simulation.latency_ms``), like real SNMP cards and Modbus gateways, so polls overlap as they do on
a real network. The simulators run in a process of their own pinned to one core, the measured
collector on the other (bench/run.py's split), so each figure is the collector's own CPU.

- throughput: every device polled back to back by facwatch's pollers (SNMPv3 authPriv RFC 1628 UPSs;
  Modbus T/H transmitters, one per port): points/s, and points per CPU-second of the collector
  (= points/s one core sustains);
- ramp: one Collector at a 10 s interval over a mixed site (1 in 16 an SNMPv3 UPS, the rest Modbus
  transmitters 10 per RTU gateway) of growing size; a step passes with no missed deadline and no
  device left unanswered; the figure is the largest passing size;
- catch-up: bench/bench_influx.py's outbox catch-up (10 minutes of 1,000 points/s spooled while
  VictoriaMetrics is down, then drained).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # runnable as a plain script before the package is installed

from bench.run import collector_workers, cpu_seconds, rss_mb, run_collector, site_header, split_cpus  # noqa: E402
from config.load import Site, load_site  # noqa: E402
from simulators.site import SiteSimulator  # noqa: E402

LATENCY_MS = (50, 200)
INTERVAL_S = 10.0
RAMP_SNMP_BASE, RAMP_MODBUS_BASE = 11000, 12000  # up to 1,000 agents; up to 400 gateways (4,000 sensors)
TP_SNMP_BASE, TP_MODBUS_BASE = 12400, 12500  # throughput: up to 100 agents, 490 one-unit ports
CONTROL_PORT = 12999
SENSORS_PER_GATEWAY = 10
# One SNMP agent per device costs the simulator ~0.25 s of start-up each, so the ramp's site is mostly
# sensors (as a data hall is: a UPS, PDU or CRAC card per many T/H transmitters).
SNMP_SHARE = 0.0625
# The plant model runs once (first publish) and then holds its values: stepping the physics of thousands
# of devices takes the simulator's core for a second or more at a time, and the requests that wait behind
# it time out — a limit of the simulator, not of the collector being measured.
SIM_TICK_S = 3600.0
STOP_TIMEOUT_S = 10.0
READY = "SIMULATOR READY"


# --- sites ---------------------------------------------------------------------------------------

def site_yaml(snmp: int, modbus: int, *, snmp_base: int, modbus_base: int, per_gateway: int,
              latency_ms: tuple[float, float] = LATENCY_MS, interval_s: float = INTERVAL_S) -> str:
    """``snmp`` SNMPv3 UPSs (an agent each) and ``modbus`` T/H transmitters (``per_gateway`` per port)."""
    latency = f"simulation: {{latency_ms: [{latency_ms[0]}, {latency_ms[1]}]}}"
    lines = site_header("bench-scale", "scale benchmark", CONTROL_PORT)
    for i in range(snmp):
        lines.append(f"  - {{id: ups-{i}, class: ups, profile: ups/ietf_rfc1628, room: hall, host: 127.0.0.1, "
                     f"port: {snmp_base + i}, credential: v3, poll_interval_s: {interval_s}, {latency}}}")
    for i in range(modbus):
        gateway, unit = divmod(i, per_gateway)
        lines.append(f"  - {{id: th-{i}, class: thsensor, profile: thsensor/generic_xymd02, room: hall, "
                     f"host: 127.0.0.1, port: {modbus_base + gateway}, modbus: {{unit_id: {unit + 1}}}, "
                     f"poll_interval_s: {interval_s}, {latency}}}")
    return "\n".join(lines) + "\n"


def write_site(folder: Path, name: str, text: str) -> tuple[Path, Site]:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path, load_site(path)


# --- the simulator process ---------------------------------------------------------------------

class LatentSiteSimulator(SiteSimulator):
    """The site simulator with each device's ``simulation.latency_ms`` applied to its endpoint.

    For as long as simulators/site.py does not pass the latency to the agents and gateways itself.
    """

    def _build_endpoints(self) -> None:
        super()._build_endpoints()
        for device_id, agent in self._agents.items():
            agent.latency_ms = self.site.device(device_id).simulation.latency_ms
        for (host, port), gateway in self._gateways.items():
            first = next(d for d in self.site.devices if (d.host, d.port) == (host, port))
            gateway.latency_ms = first.simulation.latency_ms


async def serve(config: Path) -> None:
    """Serve a site with latency until SIGTERM; print READY once every endpoint is bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with LatentSiteSimulator(load_site(config), seed=1, tick_s=SIM_TICK_S):
        print(READY, flush=True)
        await stop.wait()


def _child_setup(cpus: set[int]) -> None:
    """In the simulator child before exec: its CPUs, and SIGTERM when the benchmark dies (no orphans)."""
    import ctypes

    os.sched_setaffinity(0, cpus)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SimulatorProcess:
    """``bench_scale.py serve`` on the simulator half of the CPUs; the caller moves to the other half."""

    def __init__(self, config: Path, timeout_s: float = 300.0):
        simulator_cpus, poller_cpus = split_cpus()
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", str(config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                                     preexec_fn=lambda: _child_setup(simulator_cpus))
        os.sched_setaffinity(0, poller_cpus)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until READY or exit
        if READY not in line:
            self.stop()
            raise RuntimeError(f"simulator did not start (printed {line!r})")
        self.start_s = round(time.monotonic() - started, 1)
        self._cpu0 = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        """User + system CPU of the simulator process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_since_start(self) -> float:
        return self.cpu_seconds() - self._cpu0

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- measurements --------------------------------------------------------------------------------

async def measure(workers: list, seconds: float) -> dict:
    """Run each worker back to back for ``seconds``; points counted from their return values.

    Not bench/run.py's ``measure``: there ``points += await work()`` reads ``points`` BEFORE the await,
    so concurrent workers overwrite each other's counts and the total comes out far too low.
    """
    counts = [0] * len(workers)
    stop_at = time.monotonic() + seconds

    async def loop(index: int) -> None:
        while time.monotonic() < stop_at:
            got = await workers[index]()
            counts[index] += got

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(len(workers))))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    points = sum(counts)
    return {"points": points, "seconds": round(wall, 2), "cpu_s": round(cpu, 3),
            "points_per_s": round(points / wall, 1)}


async def throughput(tmp: Path, protocol: str, devices: int, seconds: float) -> dict:
    """Devices of one protocol polled back to back: points/s and points per collector CPU-second."""
    snmp, modbus = (devices, 0) if protocol == "snmp" else (0, devices)
    config, site = write_site(tmp, f"throughput-{protocol}", site_yaml(
        snmp, modbus, snmp_base=TP_SNMP_BASE, modbus_base=TP_MODBUS_BASE, per_gateway=1))
    simulator = SimulatorProcess(config)
    try:
        workers, close = await collector_workers(site, "ups" if protocol == "snmp" else "thsensor")
        await measure(workers, 3.0)  # warm-up: SNMPv3 engine discovery, TCP connects
        sim_cpu0 = simulator.cpu_seconds()
        result = await measure(workers, seconds)
        sim_cpu = simulator.cpu_seconds() - sim_cpu0
        await close()
    finally:
        simulator.stop()
    cpu = result["cpu_s"]
    return {"protocol": "snmp v3 authPriv SHA-256/AES, RFC 1628 UPS" if protocol == "snmp"
            else "modbus tcp, T/H transmitter", "devices": devices, "latency_ms": list(LATENCY_MS),
            "seconds": result["seconds"], "points": result["points"], "points_per_s": result["points_per_s"],
            "collector_cpu_pct": round(100 * cpu / result["seconds"], 1),
            "points_per_cpu_s": round(result["points"] / max(cpu, 1e-9)),
            "simulator_cpu_pct": round(100 * sim_cpu / result["seconds"], 1),
            "simulator_start_s": simulator.start_s}


async def ramp_step(site: Site, seconds: float) -> dict:
    """One Collector over ``site`` for ``seconds``: deadlines missed, failures, CPU."""
    run = await run_collector(site, seconds, STOP_TIMEOUT_S)
    status, wall = run.status, run.wall_s
    polls = sum(s.polls for s in status.values())
    missed = sum(s.overruns for s in status.values())
    failed = sorted(d for d, s in status.items() if s.reachable is not True)
    never = sum(1 for s in status.values() if s.polls == 0)
    return {"devices": len(site.devices), "seconds": round(wall, 1), "polls": polls, "points": run.delivered,
            "points_per_s": round(run.delivered / wall, 1), "missed_deadlines": missed,
            "not_answering": len(failed), "never_polled": never,
            "errors": sorted({str(status[d].last_error) for d in failed})[:5],
            "collector_cpu_pct": round(100 * run.cpu_s / wall, 1), "collector_rss_mb": run.rss_mb,
            "stop_s": round(run.stop_s, 1), "ok": missed == 0 and not failed and never == 0}


def split(devices: int, snmp_share: float) -> tuple[int, int]:
    """(SNMP, Modbus) devices of a ramp step."""
    snmp = round(devices * snmp_share)
    return snmp, devices - snmp


def ramp_step_process(config: Path, seconds: float) -> dict:
    """``ramp_step`` in a fresh collector process (``bench_scale.py step``), so no step inherits another's tasks."""
    proc = subprocess.run([sys.executable, __file__, "step", str(config), str(seconds)], capture_output=True,
                          text=True, cwd=REPO, timeout=seconds + 4 * STOP_TIMEOUT_S + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"ramp step failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


async def ramp(tmp: Path, steps: list[int], step_s: float, snmp_share: float = SNMP_SHARE) -> dict:
    """Grow one collector's site step by step against one simulator serving the largest step."""
    snmp, modbus = split(max(steps), snmp_share)
    config, _ = write_site(tmp, "ramp-all", site_yaml(snmp, modbus, snmp_base=RAMP_SNMP_BASE,
                                                       modbus_base=RAMP_MODBUS_BASE, per_gateway=SENSORS_PER_GATEWAY))
    simulator = SimulatorProcess(config)
    results = []
    try:
        for devices in sorted(steps):
            write_site(tmp, f"ramp-{devices}", site_yaml(
                *split(devices, snmp_share), snmp_base=RAMP_SNMP_BASE, modbus_base=RAMP_MODBUS_BASE,
                per_gateway=SENSORS_PER_GATEWAY))
            sim_cpu0 = simulator.cpu_seconds()
            step = await asyncio.to_thread(ramp_step_process, tmp / f"ramp-{devices}.yaml", step_s)
            step["simulator_cpu_pct"] = round(100 * (simulator.cpu_seconds() - sim_cpu0) / step["seconds"], 1)
            results.append(step)
            print(json.dumps(step), file=sys.stderr, flush=True)
            if not step["ok"]:
                break
        simulator_rss = simulator.rss_mb()
    finally:
        simulator.stop()
    passed = [r["devices"] for r in results if r["ok"]]
    return {"interval_s": INTERVAL_S, "latency_ms": list(LATENCY_MS), "step_s": step_s,
            "mix": f"{snmp_share:.1%} SNMPv3 UPSs (an agent each), the rest Modbus T/H transmitters "
                   f"({SENSORS_PER_GATEWAY} per gateway)",
            "max_devices_without_missed_deadline": max(passed) if passed else 0,
            "limited_by": _limit(results), "steps": results, "simulator_start_s": simulator.start_s,
            "simulator_rss_mb": simulator_rss}


def _limit(steps: list[dict]) -> str:
    """Why the ramp stopped: the first failing step, or that it never failed."""
    failing = next((s for s in steps if not s["ok"]), None)
    if failing is None:
        return "not reached: every step passed (raise --steps)"
    return (f"{failing['devices']} devices: {failing['missed_deadlines']} missed deadlines, "
            f"{failing['not_answering']} not answering (timeouts); CPU: collector {failing['collector_cpu_pct']} %, "
            f"simulator {failing['simulator_cpu_pct']} % of a core")


def catch_up(tmp: Path) -> dict:
    """bench/bench_influx.py's outbox catch-up against VictoriaMetrics."""
    from bench import bench_influx
    from tests.contract.conftest import VictoriaPeer

    vm = VictoriaPeer(tmp / "vm", bench_influx.VM_PORT)
    vm.start()
    try:
        return bench_influx._measure_catch_up(vm, tmp)
    finally:
        vm.stop()


async def run_all(args: argparse.Namespace, tmp: Path) -> dict:
    snmp = await throughput(tmp, "snmp", args.snmp_devices, args.seconds)
    modbus = await throughput(tmp, "modbus", args.modbus_devices, args.seconds)
    ramped = await ramp(tmp, args.steps, args.step_seconds, args.snmp_share)
    return {"throughput": {"snmp": snmp, "modbus": modbus}, "ramp": ramped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve", help="(internal) serve a site with latency until SIGTERM")
    serve_cmd.add_argument("config", type=Path)
    step_cmd = sub.add_parser("step", help="(internal) one ramp step: poll a site for SECONDS, print JSON")
    step_cmd.add_argument("config", type=Path)
    step_cmd.add_argument("seconds", type=float)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    parser.add_argument("--seconds", type=float, default=20.0, help="each throughput measurement")
    parser.add_argument("--snmp-devices", type=int, default=30)
    parser.add_argument("--modbus-devices", type=int, default=200)
    parser.add_argument("--steps", type=lambda t: [int(x) for x in t.split(",")], default=[1000, 1500, 2000, 3000],
                        help="device counts of the ramp, e.g. 400,800,1200")
    parser.add_argument("--step-seconds", type=float, default=30.0, help="per ramp step (≥ 3 intervals of 10 s)")
    parser.add_argument("--snmp-share", type=float, default=SNMP_SHARE, help="SNMP fraction of the ramp's devices")
    parser.add_argument("--no-catch-up", action="store_true")
    args = parser.parse_args()
    for name in ("pymodbus", "pysnmp"):  # as the CLI does: the collector reports failures once, not per frame
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.command == "serve":
        asyncio.run(serve(args.config))
        return 0
    if args.command == "step":
        os.sched_setaffinity(0, split_cpus()[1])
        print(json.dumps(asyncio.run(ramp_step(load_site(args.config), args.seconds))), flush=True)
        os._exit(0)  # a collector that did not stop in time must not hold the process (see stop_s)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "platform": platform.platform()},
                  **asyncio.run(run_all(args, tmp))}
        if not args.no_catch_up:
            result["catch_up_victoriametrics"] = catch_up(tmp)
    result["bench_seconds"] = round(time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
