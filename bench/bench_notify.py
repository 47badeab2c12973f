"""Paging latency: a value changes at the device (simulator) → the webhook receiver has the page.

The real runtime does the work: ``facwatch run`` (collectors + alert engine + notification pipeline +
outbox) runs as a subprocess against a UPS served by the simulator in THIS process, so the moment the
value changes on the wire is known exactly; a real HTTP receiver here checks the HMAC and notes when
the page arrives. Each trial pins the UPS's ``output.source`` to ``battery`` (ups_on_battery fires),
waits for the page, unpins it and waits for the resolve; a random pause between trials spreads the
change over the phases of the poll and of the pipeline's tick.

The latency is dominated by configured waits, reported beside it: the poll interval (the change waits
for the next poll) and group_wait (the pipeline waits for company before paging). Components per
trial, from the receiver's clock, the alert_transition table (``at`` is the time the poll that saw
the change started) and the outbox (``created_at`` is the flush):

    total_s      change → webhook has the page
    poll_wait_s  change → start of the poll that saw it (0 … poll interval)
    flush_s      poll start → outbox row (SNMP round trip, rule evaluation, group_wait, and the wait for
                 the pipeline's next 1-s loop tick: a due group is flushed at the next tick)
    deliver_s    outbox row → webhook has it (outbox read, HMAC, HTTP POST on loopback)
    internal_s   total − poll_wait − group_wait: what facwatch itself adds (the tick wait dominates it)

Run: ``python bench/bench_notify.py --out bench/results/notify.json`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.load import load_site  # noqa: E402
from simulators.site import SiteSimulator  # noqa: E402

SECRETS = ROOT / "config" / "sites" / "demo-secrets"
UPS_PORT, CONTROL_PORT, WEBHOOK_PORT = 30151, 30159, 30160  # the alerting tests' range, apart from theirs
POLL_S, GROUP_WAIT_S, GROUP_INTERVAL_S, PIPELINE_TICK_S = 0.5, 1.0, 1.0, 1.0
KEY, KEY_ENV = "bench-notify-webhook-key-0123456789", "FACWATCH_BENCH_WEBHOOK_KEY"
TRIALS, TRIAL_TIMEOUT_S = 20, 15.0
COMPONENTS = ("total_s", "poll_wait_s", "flush_s", "deliver_s", "internal_s")


def site_yaml() -> str:
    """One RFC 1628 UPS over SNMPv3 authPriv, polled every POLL_S."""
    return f"""site: {{id: bench, name: notify benchmark}}
rooms: [{{id: plant, name: Plant}}]
credentials:
  v3: {{type: snmp_v3, user: facwatch, auth_protocol: sha256, priv_protocol: aes128,
        auth_key: {{file: {SECRETS / 'snmp-auth-key'}}}, priv_key: {{file: {SECRETS / 'snmp-priv-key'}}}}}
simulation: {{snmp_credentials: [v3], control: '127.0.0.1:{CONTROL_PORT}'}}
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: plant, host: 127.0.0.1, port: {UPS_PORT},
      credential: v3, poll_interval_s: {POLL_S},
      simulation: {{rated_power_w: 80000, load_fraction: 0.4, runtime_full_load_min: 24}}}}
"""


def notify_yaml() -> str:
    """Every alert to the webhook, one group per rule, the timings stated in the results."""
    return f"""receivers:
  bench_webhook: {{type: webhook, url: 'http://127.0.0.1:{WEBHOOK_PORT}/page', hmac_key: {{env: {KEY_ENV}}}}}
route:
  receiver: bench_webhook
  group_by: [alertname]
  group_wait: {GROUP_WAIT_S}
  group_interval: {GROUP_INTERVAL_S}
  repeat_interval: 3600
delivery:
  meta_receivers: [bench_webhook]
"""


class WebhookReceiver:
    """Notes (arrival time, body) of every correctly signed POST."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.time()
                expected = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(self.headers.get("X-Facwatch-Signature", ""), expected)
                if ok:
                    sink.received.append((arrived, json.loads(body)))
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def first(self, status: str, after: float) -> float | None:
        """Arrival of the first ups_on_battery page in ``status`` received after ``after``."""
        return next((t for t, body in self.received if t > after and any(
            a["labels"]["alertname"] == "ups_on_battery" and a["status"] == status for a in body["alerts"])), None)


@contextlib.contextmanager
def facwatch_run(tmp: Path) -> Iterator[subprocess.Popen]:
    """``facwatch run`` as a subprocess (its own session), stopped by PID."""
    log = (tmp / "facwatch.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "facwatch.cli", "run", "-c", str(tmp / "site.yaml"),
                             "--no-dashboard", "--data-dir", str(tmp / "data"), "--notify", str(tmp / "notify.yaml")],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, KEY_ENV: KEY},
                            start_new_session=True, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout} s")
        await asyncio.sleep(0.01)


async def trial(sim: SiteSimulator, hook: WebhookReceiver, db: Path) -> dict:
    """One page and its resolve; the components of the page's latency."""
    changed = time.time()
    sim.set_override("ups-a", "output.source", "battery")
    await sim.publish()
    await wait_until(lambda: hook.first("firing", changed), TRIAL_TIMEOUT_S, "page")
    paged = hook.first("firing", changed) or 0.0
    # a poll already under way when the value changed may still read the new value: its start is then
    # just before the change (poll_wait_s slightly negative); the previous trial's firing is seconds earlier
    fired = query(db, "SELECT min(at) FROM alert_transition WHERE rule = 'ups_on_battery' AND to_state = 'firing' "
                      "AND at >= ?", changed - POLL_S)[0][0]
    queued = query(db, "SELECT min(created_at) FROM notify_outbox WHERE created_at >= ?", fired)[0][0]
    cleared = time.time()
    sim.clear_override("ups-a", "output.source")
    await sim.publish()
    await wait_until(lambda: hook.first("resolved", cleared), TRIAL_TIMEOUT_S, "resolve")
    return {"total_s": paged - changed, "poll_wait_s": fired - changed, "flush_s": queued - fired,
            "deliver_s": paged - queued, "internal_s": paged - fired - GROUP_WAIT_S}


def summary(values: list[float]) -> dict:
    """p50, p99 (nearest rank), min, max in seconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"p50": round(statistics.median(ordered), 3), "p99": round(p99, 3), "min": round(ordered[0], 3),
            "max": round(ordered[-1], 3)}


async def run(trials: int = TRIALS, seed: int = 1) -> dict:
    """Start the simulator, the receiver and ``facwatch run``; ``trials`` pages; the figures."""
    rng = random.Random(seed)
    load_before = os.getloadavg()[0]
    hook = WebhookReceiver()
    hook.thread.start()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "site.yaml").write_text(site_yaml())
        (tmp / "notify.yaml").write_text(notify_yaml())
        db = tmp / "data" / "facwatch.db"
        async with SiteSimulator(load_site(tmp / "site.yaml"), seed=seed) as sim:
            with facwatch_run(tmp) as proc:
                await wait_until(lambda: query(db, "SELECT 1 FROM latest") or proc.poll() is not None, 60, "poll")
                if proc.poll() is not None:
                    raise RuntimeError((tmp / "facwatch.log").read_text()[-3000:])
                await asyncio.sleep(5)  # start-up noise (device_unreachable until the first polls) passes
                rows = []
                for _ in range(trials):
                    await asyncio.sleep(rng.uniform(0, POLL_S + PIPELINE_TICK_S))  # de-phase poll and tick
                    rows.append(await trial(sim, hook, db))
    hook.server.shutdown()
    hook.server.server_close()
    result: dict = {"trials": trials, "poll_interval_s": POLL_S, "group_wait_s": GROUP_WAIT_S,
                    "group_interval_s": GROUP_INTERVAL_S, "pipeline_tick_s": PIPELINE_TICK_S,
                    "path": "simulator SNMPv3 agent -> facwatch run (collector, engine, pipeline, outbox) -> webhook",
                    "cpus": os.cpu_count(), "load_avg_1m_before": round(load_before, 2)}
    for key in COMPONENTS:
        result[key] = summary([r[key] for r in rows])
    result["python"] = platform.python_version()
    return result


def table(result: dict) -> str:
    """The figures as a fixed-width table."""
    lines = [f"{'component':<12}{'p50 s':>8}{'p99 s':>8}{'min s':>8}{'max s':>8}"]
    for key in COMPONENTS:
        s = result[key]
        lines.append(f"{key[:-2]:<12}{s['p50']:>8.3f}{s['p99']:>8.3f}{s['min']:>8.3f}{s['max']:>8.3f}")
    return "\n".join(lines)


def main() -> int:
    """Run and print the figures; write JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--trials", type=int, default=TRIALS)
    args = parser.parse_args()
    result = asyncio.run(run(args.trials))
    print(f"{result['trials']} pages, poll every {POLL_S:g} s, group_wait {GROUP_WAIT_S:g} s, "
          f"pipeline tick {PIPELINE_TICK_S:g} s")
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
