"""Dashboard cost: server time per wall refresh, and callback latency with 20 wall screens at once.

Two sites: the demo (24 devices) and a synthetic 500-device site (10 halls of 40 rack sensors and
4 CRACs, 16 UPS, 2 generators, an ATS, 41 fire systems), both in a real SqliteStore with active
alerts and heartbeats. Run as ``python bench/bench_dashboard.py --out bench/results/dashboard.json``.

- ``refresh``: one wall screen's tick (status + playlist + wall callbacks) through Flask's test client
  with the per-tick cache cold (a new tick each time: the snapshot is read and the wall rendered) and warm
  (another screen in the same tick: served from the cache).
- ``screens_20``: 20 threads, one per wall screen, each sending its tick's three callbacks to the real
  waitress server's ``/_dash-update-component`` at the same moment (a barrier), every refresh period.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerts.commands import ActionStore  # noqa: E402
from alerts.model import Alert, AlertState  # noqa: E402
from alerts.rules import load_rules  # noqa: E402
from alerts.state import AlertStateStore  # noqa: E402
from collectors.model import Severity  # noqa: E402
from config.load import Site, load_site  # noqa: E402
from dashboard import ids  # noqa: E402
from dashboard.app import DashboardSources, create_app  # noqa: E402
from dashboard.serve import make_server  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402
from tests.unit.dashboard.plant_readings import healthy_readings  # noqa: E402

DEMO = ROOT / "config" / "sites" / "demo.yaml"
PORT = 30390  # the dashboard's tests and benchmarks own 127.0.0.1:30300-30399
SCREENS, ROUNDS, REFRESH_ITERATIONS = 20, 10, 30
ALERTS = 30


def synthetic_site(directory: Path) -> Site:
    """500 devices: the demo's device classes at the size of a large site."""
    (directory / "community").write_text("public\n")
    devices: list[str] = []
    port = iter(range(20000, 30000))

    def add(device_id: str, cls: str, profile: str, room: str, extra: str = "modbus: {unit_id: 1}") -> None:
        devices.append(f"  - {{id: {device_id}, class: {cls}, profile: {profile}, room: {room}, host: 127.0.0.1, "
                       f"port: {next(port)}, poll_interval_s: 5, {extra}}}")

    rooms = [f"h{r:02d}" for r in range(1, 11)]
    add("ats-1", "ats", "ats/facwatch_ats", "plant")
    for g in range(1, 3):
        add(f"gen-{g}", "genset", "genset/dse_gencomm", "plant")
    for u in range(1, 17):
        add(f"ups-{u:02d}", "ups", "ups/ietf_rfc1628", "plant", "credential: lab, snmp: {version: '2c'}")
    for room in rooms:
        for r in range(1, 41):
            add(f"{room}-rack-{r:02d}", "thsensor", "thsensor/generic_xymd02", room)
        for c in range(1, 5):
            add(f"{room}-crac-{c}", "crac", "crac/uniflair_modbus", room)
    add("fire-panel", "firepanel", "firepanel/notifier_modbusgw", "plant")
    for room in rooms:
        add(f"{room}-preaction", "preaction", "preaction/double_interlock", room)
    for room in rooms[:5]:
        add(f"{room}-gas", "gas", "gas/clean_agent", room)
    for room in rooms:
        for v in range(1, 3):
            add(f"{room}-vesda-{v}", "vesda", "vesda/xtralis_hli", room)
    for v in range(1, 6):
        add(f"plant-vesda-{v}", "vesda", "vesda/xtralis_hli", "plant")
    text = "\n".join([
        "site: {id: big, name: Synthetic 500-device site}",
        "rooms: [" + ", ".join([f"{{id: {r}, name: Hall {r}}}" for r in rooms] + ["{id: plant, name: Plant}"]) + "]",
        "credentials: {lab: {type: snmp_community, community: {file: community}, insecure: true}}",
        "devices:", *devices, "dashboard: {refresh_s: 2}", ""])
    (directory / "site.yaml").write_text(text)
    site = load_site(directory / "site.yaml")
    assert len(site.devices) == 500, len(site.devices)
    return site


class Plant:
    """A store with the site's current readings, active alerts and heartbeats, refreshed on demand."""

    def __init__(self, site: Site, directory: Path):
        path = directory / f"{site.config.site.id}.db"
        self.site = site
        self.store = SqliteStore(path)
        self.alerts = AlertStateStore(path)
        self.actions = ActionStore(path)
        now = time.time()
        for i, device in enumerate(site.devices[:ALERTS]):
            self.alerts.save(Alert("bench_rule", {"device": device.id}, (Severity.WARNING, Severity.CRITICAL)[i % 2],
                                   AlertState.FIRING, summary=f"{device.label} bench alert", fired_at=now - 60 * i,
                                   acknowledged_by="bench" if i % 3 == 0 else None), None)
        self.write()

    def write(self) -> None:
        now = time.time()
        self.store.write(healthy_readings(self.site, now))
        self.actions.beat("collector", now)
        self.actions.beat("alerting", now)

    def sources(self, clock: Callable[[], float] = time.time) -> DashboardSources:
        return DashboardSources(self.site, self.store, clock, alerts=self.alerts, actions=self.actions,
                                rules=tuple(load_rules()))

    def close(self) -> None:
        self.alerts.close()
        self.actions.close()
        self.store.close()


def tick_requests(app) -> list[tuple[str, dict]]:
    """The three callbacks a wall screen sends every tick, as the browser sends them."""
    tick = [{"id": ids.TICK, "property": "n_intervals", "value": 1}]
    changed = [f"{ids.TICK}.n_intervals"]

    def key(fragment: str) -> str:
        return next(k for k in app.callback_map if fragment in k)

    status = {"output": key(ids.BANNER), "inputs": tick, "state": [], "changedPropIds": changed, "outputs": [
        {"id": ids.CLOCK, "property": "children"}, {"id": ids.UPDATED, "property": "children"},
        {"id": ids.UPDATED, "property": "className"}, {"id": ids.BANNER, "property": "children"},
        {"id": ids.BANNER, "property": "className"}]}
    playlist = {"output": key(ids.PLAYLIST_STATE), "changedPropIds": changed, "outputs": [
        {"id": ids.URL, "property": "pathname"}, {"id": ids.PLAYLIST_STATE, "property": "data"},
        {"id": ids.PLAYLIST_TEXT, "property": "children"}, {"id": ids.PLAYLIST, "property": "className"}],
        "inputs": [*tick, {"id": ids.PLAYLIST_RESUME, "property": "n_clicks", "value": 0}],
        "state": [{"id": ids.URL, "property": "pathname", "value": "/wall"},
                  {"id": ids.URL, "property": "search", "value": "?rotate=30"},
                  {"id": ids.PLAYLIST_STATE, "property": "data", "value": None}]}
    wall = {"output": f"{ids.WALL_BODY}.children", "outputs": {"id": ids.WALL_BODY, "property": "children"},
            "inputs": tick, "state": [], "changedPropIds": changed}
    return [("status", status), ("playlist", playlist), ("wall", wall)]


def summary(samples_s: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples_s)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[max(0, round(0.95 * len(ms)) - 1)], 2), "max_ms": round(ms[-1], 2)}


def refresh_cost(plant: Plant, iterations: int = REFRESH_ITERATIONS) -> dict:
    """Server time of one screen's tick, cold (new tick) and warm (same tick, another screen)."""
    # the fake clock ends where the readings were written, so every tick sees fresh data
    now = [time.time() - iterations * plant.site.config.dashboard.refresh_s]
    app = create_app(plant.sources(lambda: now[0]))
    client = app.server.test_client()
    requests = tick_requests(app)
    cold, warm, size = [], [], 0
    for _ in range(iterations):
        now[0] += plant.site.config.dashboard.refresh_s  # a new tick: nothing cached
        for samples in (cold, warm):
            start = time.perf_counter()
            for _, body in requests:
                response = client.post("/_dash-update-component", json=body)
                assert response.status_code == 200, response.get_data(as_text=True)[:500]
                size = max(size, len(response.data)) if samples is cold else size
            samples.append(time.perf_counter() - start)
    return {"devices": len(plant.site.devices), "cold_tick": summary(cold), "warm_tick": summary(warm),
            "wall_response_bytes": size}


def screens_at_once(plant: Plant, screens: int = SCREENS, rounds: int = ROUNDS) -> dict:
    """``screens`` threads post their tick's callbacks to waitress at the same moment, ``rounds`` ticks."""
    app = create_app(plant.sources())
    server = make_server(app, "127.0.0.1", PORT)
    serving = threading.Thread(target=server.run, name="bench-dashboard", daemon=True)
    serving.start()
    refresh_s = plant.site.config.dashboard.refresh_s
    latencies: dict[str, list[float]] = {name: [] for name, _ in tick_requests(app)}
    lock = threading.Lock()
    barrier = threading.Barrier(screens + 1)
    bodies = [(name, json.dumps(body).encode()) for name, body in tick_requests(app)]

    def screen() -> None:
        for _ in range(rounds):
            barrier.wait()
            for name, body in bodies:
                request = urllib.request.Request(f"{server.url}_dash-update-component", data=body,
                                                 headers={"Content-Type": "application/json"})
                start = time.perf_counter()
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                with lock:
                    latencies[name].append(time.perf_counter() - start)

    threads = [threading.Thread(target=screen, name=f"screen-{i}") for i in range(screens)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(rounds):
            plant.write()  # the collector's fresh readings for this tick
            barrier.wait()
            time.sleep(refresh_s)
        for thread in threads:
            thread.join(120)
    finally:
        server.close()
        serving.join(10)
    every = [s for samples in latencies.values() for s in samples]
    return {"devices": len(plant.site.devices), "screens": screens, "rounds": rounds, "server_threads": 8,
            "all_callbacks": summary(every), **{name: summary(samples) for name, samples in latencies.items()}}


def run() -> dict:
    """Both measurements on both sites."""
    results: dict = {"python": platform.python_version(), "machine": platform.machine(),
                     "cpus_note": "shared 2-vCPU box, other jobs running"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, site in (("demo", load_site(DEMO)), ("synthetic_500", synthetic_site(Path(tmp)))):
            plant = Plant(site, Path(tmp))
            try:
                results[name] = {"refresh": refresh_cost(plant), "screens_20": screens_at_once(plant)}
            finally:
                plant.close()
            print(name, json.dumps(results[name]), flush=True)
    return results


def main() -> None:
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # 20 screens at once queue up: that is the test
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard.json")
    args = parser.parse_args()
    results = run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
