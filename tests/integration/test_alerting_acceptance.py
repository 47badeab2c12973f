"""Alerting end to end through the REAL runtime: facwatch processes, real receivers, a scripted mains failure.

Each test starts ``facwatch demo`` (or ``facwatch simulate`` + ``facwatch run``) as a subprocess with a
test site and a notify config pointing at real receivers on loopback — aiosmtpd with STARTTLS and login,
an HTTP webhook receiver that checks the HMAC signature, Debian's prometheus-alertmanager — triggers
the shipped ``mains_failure`` scenario and checks the timeline like Alertmanager's acceptance tests:
every notification arrives inside a window stated below, computed from the configured timings.

Times come from three independent clocks on one host: the simulator's log line for the moment the
utility changed on the wire, the alert_transition table for when the engine fired, and each receiver's
own receipt time (Alertmanager's ``updatedAt``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.load import load_site
from tests.conftest import ROOT
from tests.peers import PeerProcess, wait_for_tcp
from tests.receivers import (
    MailReceiver,
    WebhookReceiver,
    alertmanager_peer,
    am_alerts,
    am_received_total,
    smtp_receiver,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACWATCH = [sys.executable, "-m", "facwatch.cli"]
SITE = ROOT / "tests" / "data" / "sites" / "alerting.yaml"  # devices on 30001–30004, control 30009
STORM_SITE = ROOT / "tests" / "data" / "sites" / "storm.yaml"  # devices on 30021–30027, control 30029
CONTROL = {SITE: 30009, STORM_SITE: 30029}
DASHBOARD = {SITE: 30010, STORM_SITE: 30030}
SMTP_PORT, WEBHOOK_PORT, AM_PORT = 30100, 30101, 30102
KEY = "alerting-acceptance-webhook-key-0123"
SMTP_PASSWORD = "alerting-acceptance-smtp-password"
KEY_ENV = "FACWATCH_TEST_WEBHOOK_KEY"

# --- the timings facwatch runs with, and the windows they imply -------------------------------------------
POLL_S = 0.5            # every device of tests/data/sites/alerting.yaml
GROUP_WAIT_S = 1.0      # the test notify config: a new group waits this long for company ...
GROUP_INTERVAL_S = 1.0  # ... and an existing one (e.g. a resolve in a firing group) is flushed this often
PIPELINE_TICK_S = 1.0   # NotificationPipeline.run(tick=1.0): a due group is flushed at the next tick
SLACK_S = 2.0           # loopback HTTP/SMTP+STARTTLS, SQLite commits, a busy 2-core box
DETECT_WINDOW_S = POLL_S + SLACK_S                              # utility changes → alert fires
NOTIFY_WINDOW_S = GROUP_WAIT_S + PIPELINE_TICK_S + SLACK_S      # alert fires → a receiver has it
RESOLVE_WINDOW_S = GROUP_INTERVAL_S + PIPELINE_TICK_S + SLACK_S  # alert resolves → a receiver has it
STORM_POLL_S, STORM_GROUP_WAIT_S = 2.0, 5.0                     # CRACs of storm.yaml; gathers the storm
STORM_ALERTS, STORM_SPAN_S = 30, 5.0                            # "≥ 30 alerts within 5 s"
UTILITY_FAILS_AT_S, UTILITY_BACK_AT_S = 30.0, 1230.0            # simulators/scenarios/mains_failure.yaml


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Receivers and servers started by a test are gone after it (processes: see ``site_for``)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [t for t in set(threading.enumerate()) - before if t.is_alive()]:
        time.sleep(0.05)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


# --- receivers (tests/receivers.py) ----------------------------------------------------------------------

@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(KEY, WEBHOOK_PORT)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[MailReceiver, Path]]:
    """aiosmtpd that insists on STARTTLS and a login; facwatch verifies its certificate against the one yielded."""
    with smtp_receiver(tmp_path / "smtp-tls", SMTP_PORT, SMTP_PASSWORD) as (sink, cert):
        yield sink, cert


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    with alertmanager_peer(tmp_path, AM_PORT) as base:
        yield base


def rfc3339(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- facwatch as a subprocess ----------------------------------------------------------------------------

def notify_yaml(tmp_path: Path, *, receivers: dict[str, str], routes: list[str], group_wait: float = GROUP_WAIT_S,
                group_interval: float = GROUP_INTERVAL_S, inhibit: bool = True, failing_after_minutes: float = 60.0,
                meta_receivers: tuple[str, ...] = ("noc_webhook",)) -> Path:
    """A notify config: every alert to each of ``routes`` (continue: true), short timings, retries ≤ 1 s apart."""
    (tmp_path / "smtp-password").write_text(SMTP_PASSWORD)
    children = "\n".join(f"    - {{match: {{}}, receiver: {name}, continue: true}}" for name in routes)
    inhibit_rules = """inhibit:
  - source: {labels: {alertname: mains_failure}}
    target: {labels: {alertname: ups_on_battery}}
    equal: [site]
""" if inhibit else ""
    path = tmp_path / "notify.yaml"
    path.write_text(f"""receivers:
{chr(10).join(f'  {name}: {body}' for name, body in receivers.items())}
route:
  receiver: {routes[0]}
  group_by: [site]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 3600
  routes:
{children}
{inhibit_rules}delivery:
  initial_backoff: 0.5
  max_backoff: 1
  failing_after_minutes: {failing_after_minutes}
  meta_receivers: [{', '.join(meta_receivers)}]
""")
    return path


def receiver_configs(tmp_path: Path, cert: Path | None = None) -> dict[str, str]:
    configs = {
        "noc_webhook": f"{{type: webhook, url: 'http://127.0.0.1:{WEBHOOK_PORT}/facwatch', "
                       f"hmac_key: {{env: {KEY_ENV}}}, timeout: 5}}",
        "noc_alertmanager": f"{{type: alertmanager, url: 'http://127.0.0.1:{AM_PORT}', timeout: 5}}",
    }
    if cert is not None:
        configs["noc_email"] = (f"{{type: email, host: 127.0.0.1, port: {SMTP_PORT}, from: facwatch@example.org, "
                                f"to: [oncall@example.org], username: facwatch, password: {{file: smtp-password}}, "
                                f"ca_file: '{cert}', timeout: 5}}")
    return configs


class Site:
    """facwatch processes for one test: started by the test, stopped (by PID) at teardown."""

    def __init__(self, tmp_path: Path, config: Path):
        self.tmp_path = tmp_path
        self.config = config
        self.data = tmp_path / "data"
        self.db = self.data / "facwatch.db"
        self.processes: list[PeerProcess] = []

    def start(self, name: str, *args: str) -> PeerProcess:
        env = {**os.environ, KEY_ENV: KEY}
        proc = PeerProcess([*FACWATCH, *args], self.tmp_path / f"{name}-{len(self.processes)}.log", env=env)
        self.processes.append(proc)
        return proc

    def demo(self, notify: Path, time_scale: float) -> PeerProcess:
        """``facwatch demo``: simulators + collectors + alert engine + pipeline + dashboard in one process."""
        proc = self.start("demo", "demo", "-c", str(self.config), "--data-dir", str(self.data), "--notify",
                          str(notify), "--time-scale", str(time_scale), "--port", str(DASHBOARD[self.config]))
        self.wait_ready(proc)
        return proc

    def simulate(self, time_scale: float) -> PeerProcess:
        proc = self.start("simulate", "simulate", "-c", str(self.config), "--time-scale", str(time_scale))
        wait_for_tcp(CONTROL[self.config], timeout=30)
        return proc

    def run(self, notify: Path) -> PeerProcess:
        """``facwatch run``: collectors + alert engine + pipeline, no simulators, no dashboard."""
        proc = self.start("run", "run", "-c", str(self.config), "--no-dashboard", "--data-dir", str(self.data),
                          "--notify", str(notify))
        self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: PeerProcess) -> None:
        """Until the process has stored a reading of every device taken after it started."""
        started_ms = int(time.time() * 1000)
        wait_for(lambda: self._devices_read_since(started_ms) == self._device_count(), 40,
                 "every device polled", proc)

    def settle(self, group_wait: float = GROUP_WAIT_S) -> None:
        """Until no alert is active and none changed for a group_wait and a tick: start-up noise is out.

        A freshly started facwatch raises device_unreachable for every device for a moment (the engine's
        clock starts before the first poll), so the tests begin once that has passed.
        """
        def active() -> list[tuple]:
            return self.query("SELECT rule, labels, state FROM alert_state WHERE state IN ('pending', 'firing')")

        def quiet() -> bool:  # pending alerts are not paged; the pending ↔ inactive churn is ignored
            last = self.query("SELECT max(at) FROM alert_transition WHERE 'firing' IN (from_state, to_state)")
            firing = [a for a in active() if a[2] == "firing"]
            return bool(last) and not firing and time.time() - (last[0][0] or 0) > group_wait + 1.5
        wait_for(quiet, 30, "no active alert at start-up", self.processes[-1], lambda: f"(active: {active()})")

    def _device_count(self) -> int:
        return len(load_site(self.config).devices)

    def _devices_read_since(self, ms: int) -> int:
        rows = self.query("SELECT count(DISTINCT r.device) FROM latest l JOIN series r ON r.id = l.series_id "
                          "WHERE l.ts_ms >= ?", ms)
        return rows[0][0] if rows else 0

    def query(self, sql: str, *args: object) -> list[tuple]:
        """Read the site's SQLite file (empty result while it or the table does not exist yet)."""
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as conn:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                return []

    def fired(self, rule: str | None = None, since: float = 0.0) -> list[tuple[str, str, float]]:
        """(rule, fingerprint, at) of every transition to firing at or after ``since``, oldest first."""
        rows = self.query("SELECT rule, fingerprint, at FROM alert_transition WHERE to_state = 'firing' AND at >= ?"
                          " ORDER BY at", since)
        return [r for r in rows if rule is None or r[0] == rule]

    def resolved(self, rule: str) -> list[float]:
        return [r[0] for r in self.query("SELECT at FROM alert_transition WHERE to_state = 'resolved' AND rule = ?"
                                         " ORDER BY at", rule)]

    def outbox(self) -> list[tuple[int, str, str, int, str | None]]:
        """(id, receiver, state, attempts, last_error) of every outbox row."""
        return self.query("SELECT id, receiver, state, attempts, last_error FROM notify_outbox ORDER BY id")

    def scenario(self, action: str) -> dict:
        """POST to the simulator's control endpoint (``start`` of mains_failure, or ``stop``)."""
        path = "mains_failure/start" if action == "start" else "stop"
        request = urllib.request.Request(f"http://127.0.0.1:{CONTROL[self.config]}/scenarios/{path}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def sim_clock_s(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{CONTROL[self.config]}/scenarios", timeout=5) as response:
            return float(json.loads(response.read())["clock_s"])

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=10)


@pytest.fixture
def site_for(tmp_path: Path) -> Iterator[Callable[[Path], Site]]:
    sites: list[Site] = []

    def make(config: Path) -> Site:
        sites.append(Site(tmp_path, config))
        return sites[-1]

    yield make
    for site in sites:
        site.stop()
        for proc in site.processes:  # shown by pytest when the test failed
            print(f"--- {proc.log.name} (last 40 lines)\n" + "\n".join(proc.output().splitlines()[-40:]))
            assert proc.process.poll() is not None, f"{proc.argv} still running"


def wait_for(predicate: Callable[[], object], timeout: float, what: str, proc: PeerProcess | None = None,
             why: Callable[[], str] = str) -> None:
    """Poll until ``predicate`` is true; fail naming ``what`` (and the process's exit) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.process.poll() is not None:
            pytest.fail(f"facwatch exited ({proc.process.returncode}) waiting for {what}:\n{proc.output()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what} {why()}")


def utility_changed_at(proc: PeerProcess, available: bool) -> float:
    """When the simulator put the utility change on the wire: its own log line (the step runs, then publishes)."""
    needle = f"utility {{'available': {available}}}"
    for line in proc.output().splitlines():
        if "simulators.scenario" in line and needle in line:
            return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    pytest.fail(f"no scenario step {needle!r} in {proc.log}")


def bodies_with(webhook: WebhookReceiver, rule: str, status: str) -> list[tuple[float, dict]]:
    """Webhook notifications listing ``rule`` in ``status``."""
    return [(t, b) for t, b in webhook.received
            if any(a["labels"]["alertname"] == rule and a["status"] == status for a in b["alerts"])]


def notification_key(body: dict) -> tuple:
    """What makes two notifications the same page: the group, and each alert's identity and status."""
    return body["groupKey"], tuple(sorted((a["fingerprint"], a["status"]) for a in body["alerts"]))


# --- 1. the timeline: every receiver paged within the window, and told of the resolve -------------------

ACCEPT_SCALE = 60.0  # utility fails 0.5 s after the start, returns 20.5 s after; the generator starts in 4 s


def test_mains_failure_pages_webhook_email_and_alertmanager_within_the_window(
        site_for, webhook, smtp, alertmanager, tmp_path):
    mail, cert = smtp
    notify = notify_yaml(tmp_path, receivers=receiver_configs(tmp_path, cert),
                         routes=["noc_webhook", "noc_email", "noc_alertmanager"])
    site = site_for(SITE)
    demo = site.demo(notify, ACCEPT_SCALE)
    site.settle()
    webhook.reset(200)
    mail.reset()
    code = subprocess.run([*FACWATCH, "scenario", "start", "mains_failure", "-c", str(SITE)], timeout=30,
                          capture_output=True).returncode  # the documented way to start a drill
    assert code == 0

    wait_for(lambda: bodies_with(webhook, "mains_failure", "firing") and mail.received
             and am_alerts(alertmanager, "mains_failure"), DETECT_WINDOW_S + NOTIFY_WINDOW_S + 5, "the page", demo)
    failed = utility_changed_at(demo, available=False)
    [(_, _, fired)] = site.fired("mains_failure")
    hooked, body = bodies_with(webhook, "mains_failure", "firing")[0]
    mailed, message = mail.received[0]
    pushed = rfc3339(am_alerts(alertmanager, "mains_failure")[0]["updatedAt"])
    print(f"\nutility lost → fired {fired - failed:.2f} s; fired → webhook {hooked - fired:.2f} s, "
          f"e-mail {mailed - fired:.2f} s, alertmanager {pushed - fired:.2f} s")
    assert failed <= fired <= failed + DETECT_WINDOW_S
    for arrived in (hooked, mailed, pushed):
        assert fired + GROUP_WAIT_S - 0.05 <= arrived <= fired + NOTIFY_WINDOW_S  # group_wait honoured, no later

    assert webhook.bad_signatures == 0 and body["status"] == "firing" and body["groupLabels"] == {"site": "accept"}
    # the UPSs on battery are explained by the mains failure: inhibited, so the page names the cause only
    assert {a["labels"]["alertname"] for a in body["alerts"]} == {"mains_failure"}
    assert str(message["Subject"]).startswith("[FIRING] mains_failure")
    assert "accept: utility mains lost" in message.get_content()
    [am] = am_alerts(alertmanager, "mains_failure")
    assert am["status"]["state"] == "active" and am["labels"]["site"] == "accept"

    # the utility returns at 20 m 30 s simulated: every receiver hears the resolve within the same windows
    wait_for(lambda: bodies_with(webhook, "mains_failure", "resolved") and len(mail.received) >= 2
             and not am_alerts(alertmanager, "mains_failure"), UTILITY_BACK_AT_S / ACCEPT_SCALE + 15, "the resolve",
             demo)
    back = utility_changed_at(demo, available=True)
    [resolved] = site.resolved("mains_failure")
    hooked = bodies_with(webhook, "mains_failure", "resolved")[0][0]
    print(f"utility back → resolved {resolved - back:.2f} s; resolved → webhook {hooked - resolved:.2f} s, "
          f"e-mail {mail.received[1][0] - resolved:.2f} s")
    assert back <= resolved <= back + DETECT_WINDOW_S
    assert resolved <= hooked <= resolved + RESOLVE_WINDOW_S  # the group exists: its next flush, not group_wait
    assert resolved <= mail.received[1][0] <= resolved + RESOLVE_WINDOW_S
    assert str(mail.received[1][1]["Subject"]).startswith("[RESOLVED] mains_failure")


# --- 2. the storm: ≥ 30 alerts within 5 s, ONE notification per receiver --------------------------------

STORM_SCALE = 10.0  # utility fails 3 s after the start; the storm site's generator never starts in the test
STORM_QUIET_S = 4.0  # after the page, watch this long more for a second one


def test_a_storm_of_alerts_gives_one_grouped_notification_per_receiver(
        site_for, webhook, smtp, alertmanager, tmp_path):
    mail, cert = smtp
    notify = notify_yaml(tmp_path, receivers=receiver_configs(tmp_path, cert),
                         routes=["noc_webhook", "noc_email", "noc_alertmanager"],
                         group_wait=STORM_GROUP_WAIT_S, group_interval=600)
    site = site_for(STORM_SITE)
    demo = site.demo(notify, STORM_SCALE)
    site.settle(STORM_GROUP_WAIT_S)
    webhook.reset(200)
    mail.reset()
    am_before = am_received_total(alertmanager)
    started = time.time()
    site.scenario("start")
    window = UTILITY_FAILS_AT_S / STORM_SCALE + STORM_POLL_S + STORM_GROUP_WAIT_S + PIPELINE_TICK_S + SLACK_S + 2
    wait_for(lambda: webhook.received and mail.received, window, "the storm's page", demo)
    time.sleep(STORM_QUIET_S)  # a second notification for the group would arrive in here (group_interval is 600 s)

    fired = site.fired(since=started)
    first = fired[0][2]
    storm = [(rule, fp) for rule, fp, at in fired if at - first <= STORM_SPAN_S]
    print(f"\n{len(storm)} alerts fired within {STORM_SPAN_S:g} s, {len(fired)} in all; "
          f"page {webhook.received[0][0] - first:.2f} s after the first")
    assert len(storm) >= STORM_ALERTS

    # exactly one notification per receiver. It holds mains_failure and every CRAC's general and
    # power-failure alarm (2 × 16), plus whatever else fired before the flush; the four ups_on_battery
    # alerts are inhibited by mains_failure (same site), so they are in no notification at all.
    assert len(webhook.received) == 1 and len(mail.received) == 1 and webhook.bad_signatures == 0
    arrived, body = webhook.received[0]
    paged = {a["fingerprint"] for a in body["alerts"]}
    names = [a["labels"]["alertname"] for a in body["alerts"]]
    assert names.count("mains_failure") == 1 and "ups_on_battery" not in names
    assert names.count("crac_alarm") >= 32 and len(paged) >= STORM_ALERTS
    before_flush = {fp for rule, fp, at in fired if at <= arrived - STORM_GROUP_WAIT_S and rule != "ups_on_battery"}
    assert before_flush <= paged  # nothing that fired in time was left out of the page
    assert arrived - first <= STORM_GROUP_WAIT_S + PIPELINE_TICK_S + SLACK_S
    assert f"(+{len(paged) - 1} more)" in str(mail.received[0][1]["Subject"])
    assert am_received_total(alertmanager) - am_before == len(paged)  # one push of the group, not one per alert


# --- 3. SIGKILL while the outbox retries → restart → delivered once, resolve not lost -------------------

# utility fails 0.5 s after the start, returns 20.5 s after; the drill ends at 32 s. The restarted process must
# read the plant before the drill ends: alerts raised in a drill carry its name as a label, and readings
# taken after it ended (untagged) never resolve them.
RESTART_SCALE = 60.0


def test_sigkill_while_retrying_then_restart_delivers_once_and_keeps_the_resolve(site_for, webhook, tmp_path):
    notify = notify_yaml(tmp_path, receivers=receiver_configs(tmp_path), routes=["noc_webhook"], inhibit=False)
    site = site_for(SITE)
    site.simulate(RESTART_SCALE)  # the plant outlives the facwatch process that watches it
    engine = site.run(notify)
    site.settle()
    webhook.reset(503)
    before = max((r[0] for r in site.outbox()), default=0)  # rows of start-up noise, if any, are not ours
    drill_start = site.sim_clock_s()
    site.scenario("start")
    wait_for(lambda: len(webhook.refused) >= 3 and any(r[2] == "pending" and r[3] >= 2 for r in site.outbox()),
             15, "the outbox retrying against 503", engine)

    os.kill(engine.pid, signal.SIGKILL)
    assert engine.process.wait(10) == -signal.SIGKILL
    pending = [r for r in site.outbox() if r[2] == "pending"]
    assert pending and all((r[4] or "HTTP 503").endswith("HTTP 503") for r in pending)
    assert webhook.received == []
    # the utility returns while nothing watches: the mains_failure alert is stored as firing, unresolved
    wait_for(lambda: site.sim_clock_s() >= drill_start + UTILITY_BACK_AT_S + 30, 30, "the utility back (simulated)")
    assert site.resolved("mains_failure") == []

    webhook.status = 200
    restarted_at = time.time()
    engine = site.run(notify)
    wait_for(lambda: bodies_with(webhook, "mains_failure", "resolved"), 10, "the resolve after restart", engine)
    time.sleep(2 * PIPELINE_TICK_S)  # room for a duplicate to show up

    rows = [r for r in site.outbox() if r[0] > before]
    keys = [notification_key(b) for _, b in webhook.received]
    print(f"\n{len(rows)} outbox rows, attempts {[r[3] for r in rows]}; delivered "
          f"{[round(t - restarted_at, 2) for t, _ in webhook.received]} s after the restart")
    assert all(state == "delivered" for _, _, state, _, _ in rows)
    assert rows[0][3] >= 3  # tried before the kill, delivered after it
    assert len(webhook.received) == len(rows) and len(set(keys)) == len(keys)  # each page once
    assert bodies_with(webhook, "mains_failure", "firing")[0][0] > restarted_at
    # no resolve lost: every alert a page said was firing is later said to be resolved
    for i, (_, body) in enumerate(webhook.received):
        for alert in (a for a in body["alerts"] if a["status"] == "firing"):
            assert any((alert["fingerprint"], "resolved") in notification_key(b)[1] for _, b in webhook.received[i:])
    assert len(site.resolved("mains_failure")) == 1 and webhook.bad_signatures == 0


# --- 4. a receiver down for a long time: meta-alert through the other one, delivered after recovery ----

FAILING_AFTER_MIN = 0.1  # 6 s stands in for the shipped 5 min (tests/unit/alerts/test_outbox.py fakes 10 min)
OUTAGE_S = 10.0          # 503s, then connection refused, for at least this long: longer than failing_after
MAX_BACKOFF_S = 1.0


def test_receiver_down_raises_notification_failing_elsewhere_and_delivers_after_recovery(
        site_for, webhook, smtp, tmp_path):
    mail, cert = smtp
    notify = notify_yaml(tmp_path, receivers=receiver_configs(tmp_path, cert), routes=["noc_webhook"],
                         inhibit=False, failing_after_minutes=FAILING_AFTER_MIN,
                         meta_receivers=("noc_webhook", "noc_email"))
    site = site_for(SITE)
    demo = site.demo(notify, ACCEPT_SCALE)
    site.settle()
    webhook.reset(503)
    mail.reset()
    site.scenario("start")
    wait_for(lambda: webhook.refused, 10, "the first 503", demo)
    down_since = webhook.refused[0][0]

    failing_after = FAILING_AFTER_MIN * 60
    wait_for(lambda: mail.received, failing_after + PIPELINE_TICK_S + 5, "the notification_failing e-mail", demo)
    meta_at, meta = mail.received[0]
    print(f"\nnotification_failing mailed {meta_at - down_since:.2f} s after the first failure")
    assert str(meta["Subject"]).startswith("[FIRING] notification_failing")
    assert "notifications to receiver noc_webhook failing since" in meta.get_content()
    assert failing_after - 0.1 <= meta_at - down_since <= failing_after + PIPELINE_TICK_S + MAX_BACKOFF_S + SLACK_S

    webhook.stop()  # now the connection is refused
    wait_for(lambda: any("ConnectionRefusedError" in (r[4] or "") for r in site.outbox()), 5, "a refused attempt",
             demo)
    wait_for(lambda: time.time() - down_since >= OUTAGE_S, OUTAGE_S, "the outage to last")
    webhook.status = 200
    webhook.start()
    recovered = time.time()
    wait_for(lambda: bodies_with(webhook, "mains_failure", "firing") and len(mail.received) >= 2,
             MAX_BACKOFF_S + PIPELINE_TICK_S + SLACK_S + 2, "delivery after recovery", demo)
    delivered = bodies_with(webhook, "mains_failure", "firing")[0][0]
    print(f"delivered {delivered - recovered:.2f} s after recovery, outage {recovered - down_since:.1f} s")
    assert delivered - recovered <= MAX_BACKOFF_S + PIPELINE_TICK_S + SLACK_S
    assert str(mail.received[1][1]["Subject"]).startswith("[RESOLVED] notification_failing")
    keys = [notification_key(b) for _, b in webhook.received]
    assert len(set(keys)) == len(keys) and webhook.bad_signatures == 0
