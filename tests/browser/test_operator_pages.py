"""The operator pages (Trends, Alerts, Device, Scenarios) in a real Chromium, served by waitress from a real
SqliteStore, with the real alert engine and command applier (run with --headless).

Set FACWATCH_SCREENSHOTS=1 to refresh docs/screenshots/{trends,alerts,device,scenarios}.png (1920 × 1080).
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from alerts.commands import ActionStore, CommandApplier
from alerts.engine import AlertEngine
from alerts.model import Alert, AlertState
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Event, Quality, Reading, Severity
from config.load import load_site
from dashboard.app import DashboardSources, create_app
from dashboard.serve import DashboardServer, make_server
from simulators.control import ControlServer
from storage.sqlite import SqliteStore
from tests.peers import require

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PORT_BASE = 30400  # this module owns 30400-30499
UPS, A01, A02 = "dh1-ups-a", "dh1-rack-a01-inlet", "dh1-rack-a02-inlet"
HOSTILE = "<img src=x onerror=alert(1)>"
WAIT_S = 30  # several 2 s refresh cycles on a busy shared machine


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def browser(request):
    """dash's Selenium wrapper (``dash_br``) at wall-screen size, once chromedriver is known to be there."""
    require("chromedriver")
    browser = request.getfixturevalue("dash_br")
    browser.wait_timeout = WAIT_S
    fit_viewport(browser.driver, 1920, 1080)
    return browser


def fit_viewport(driver, width: int, height: int) -> None:
    """Size the window so the page itself gets width × height CSS pixels."""
    driver.set_window_size(width, height)
    inner_width, inner_height = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    driver.set_window_size(2 * width - inner_width, 2 * height - inner_height)


@contextmanager
def serve(sources: DashboardSources, port: int) -> Iterator[DashboardServer]:
    """The real dashboard app on a waitress thread."""
    server = make_server(create_app(sources), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name=f"dashboard-{port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(10)
        assert not thread.is_alive(), "dashboard server thread did not stop"


def history(now: float) -> list[Reading]:
    """50 min of inlet temperature (with a 3 min outage) and UPS load, and current values of everything."""
    readings = []
    for age in range(3000, 0, -2):
        ts = now - age
        outage = 1500 >= age > 1320
        temperature = None if outage else round(21.4 + 0.8 * math.sin(age / 300), 2)
        readings.append(Reading(A01, "ambient.temperature", ts, temperature,
                                Quality.MISSING if outage else Quality.GOOD))
        readings.append(Reading(A01, REACHABLE_POINT, ts, 0 if outage else 1))
        readings.append(Reading(UPS, "ups.load", ts, round(44 + 3 * math.sin(age / 400))))
    current = {
        UPS: {"output.source": 5, "ups.load": 45, "battery.charge": 97, "battery.runtime": 21, "battery.status": 2,
              "input.voltage": 0, REACHABLE_POINT: 1, POLL_DURATION_POINT: 0.04},
        A01: {"ambient.temperature": 21.4, "ambient.humidity": 45.0, REACHABLE_POINT: 1, POLL_DURATION_POINT: 0.02},
        A02: {"ambient.temperature": 22.4, "ambient.humidity": 48.0, REACHABLE_POINT: 1},
    }
    readings += [Reading(device, point, now, value) for device, points in current.items()
                 for point, value in points.items()]
    return readings


@pytest.fixture
def plant(tmp_path):
    """A seeded store, the real alert engine over it (UPS on battery: firing), and the dashboard's sources."""
    db = tmp_path / "facwatch.db"
    site = load_site(SITE)
    now = time.time()
    with SqliteStore(db) as store:
        readings = history(now)
        store.write(readings)
        store.write_events([
            Event(now - 2400, None, "scenario", "mains_failure started", Severity.INFO,
                  {"scenario": "mains_failure", "state": "started"}, "mains_failure"),
            Event(now - 2100, None, "scenario", "mains_failure finished", Severity.INFO,
                  {"scenario": "mains_failure", "state": "finished"}, "mains_failure"),
            Event(now - 60, UPS, "trap", "upsTrapOnBattery", Severity.WARNING, {"oid": "1.3.6.1.2.1.33.2.1"})])
        state = AlertStateStore(db)
        engine = AlertEngine(site, load_rules(), state)
        engine.observe(r for r in readings if r.ts >= now)
        actions = ActionStore(db)
        sources = DashboardSources(site, store, alerts=AlertStateStore(db), actions=ActionStore(db))
        yield SimpleNamespace(site=site, store=store, engine=engine, actions=actions, sources=sources, db=db)
        for closable in (state, actions, sources.alerts, sources.actions):
            closable.close()


def open_page(browser, server: DashboardServer, path: str) -> None:
    browser.driver.get(server.url.rstrip("/") + path)


def screenshot(browser, name: str) -> None:
    """docs/screenshots/<name>.png at 1920 × 1080, when asked for."""
    if os.environ.get("FACWATCH_SCREENSHOTS") != "1":
        return
    browser.driver.execute_script("window.scrollTo(0, 0);")
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.driver.save_screenshot(str(path))
    with open(path, "rb") as png:
        assert struct.unpack(">II", png.read(24)[16:24]) == (1920, 1080)


def wait_for_content(browser, selector: str, text: str) -> None:
    """Until the element's textContent holds ``text`` (CSS may show it in capitals: innerText would differ)."""
    wait_until(browser, lambda d: text in (text_of(browser, selector) or ""), f"{text!r} not in {selector}")


def wait_until(browser, condition, message: str = ""):
    return WebDriverWait(browser.driver, WAIT_S).until(condition, message)


def text_of(browser, selector: str) -> str:
    return browser.driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", selector)


def assert_no_script_ran(browser) -> None:
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#page-content img, .op-page img") == []
    with pytest.raises(NoAlertPresentException):
        browser.driver.switch_to.alert.text  # noqa: B018 - raises when no alert() ran


PLOT = "document.querySelector('#trends-graph .js-plotly-plot')"


def mean_trace(browser) -> dict:
    return browser.driver.execute_script(
        f"const p = {PLOT}; if (!p || !p.data) return null;"
        "const t = p.data.find(d => d.meta === 'mean:0'); return t ? {x: t.x, y: t.y} : null;")


# --- Trends ---------------------------------------------------------------------------------------

def test_trends_draw_envelopes_marks_and_live_readings_and_download_what_is_shown(browser, plant):
    with serve(plant.sources, PORT_BASE) as server:
        open_page(browser, server, f"/trends?device={A01}")
        browser.wait_for_text_to_equal("#trends-title", "Rack A01 inlet — ambient.temperature (°C) — last 1 h")
        wait_until(browser, lambda d: (mean_trace(browser) or {}).get("y"), "no mean line drawn")
        # envelopes from config/rules/default.yaml, the drill as a period, both listed as text too
        wait_for_content(browser, "#trends-details", "inlet_temperature_out_of_envelope")
        wait_for_content(browser, "#trends-details", "mains_failure")
        shapes = browser.driver.execute_script(f"return {PLOT}.layout.shapes.map(s => [s.type, s.y0]);")
        assert ["line", 23] in shapes and ["line", 19] in shapes and ["line", 32] in shapes
        annotations = browser.driver.execute_script(f"return {PLOT}.layout.annotations.map(a => a.text);")
        assert "drill: mains_failure" in annotations
        screenshot(browser, "trends")

        # CSV of exactly what the graph shows (the window of the browser's figure, whatever came after)
        before = [y for y in mean_trace(browser)["y"] if y is not None]
        browser.find_element("#trends-csv").click()
        download = Path(browser.download_path)
        wait_until(browser, lambda d: any(p.suffix == ".csv" for p in download.iterdir()), "no CSV downloaded")
        after = [y for y in mean_trace(browser)["y"] if y is not None]
        (csv_file,) = [p for p in download.iterdir() if p.suffix == ".csv"]
        rows = list(csv.DictReader(csv_file.read_text(encoding="utf-8").splitlines()))
        assert {(r["device"], r["point"], r["unit"]) for r in rows} == {(A01, "ambient.temperature", "degC")}
        means = [float(r["mean"]) for r in rows if r["mean"]]
        # the line may end with live readings appended after the figure was built: not buckets, not in the CSV
        assert any(shown[:len(means)] == pytest.approx(means, abs=1e-6) for shown in (before, after))
        assert any(r["missing"] != "0" for r in rows)  # the outage is in the data, as a gap in the graph

        # new readings reach the line without reloading the page (appended by extendData, or in the next
        # recomputed figure: either way the line ends at the newest value once a whole bucket holds only it)
        last = max(r.ts for r in plant.store.latest([A01]))
        time.sleep(max(0.0, last + 14 - time.time()))  # 1 h range: 6 s buckets
        now = time.time()
        plant.store.write([Reading(A01, "ambient.temperature", ts, 23.75)
                           for ts in range(int(last) + 2, int(now) + 1, 2)])
        wait_until(browser, lambda d: mean_trace(browser)["y"][-1] == 23.75, "new reading not drawn")
        assert browser.get_logs() == []


def test_trends_compare_devices_on_two_axes_and_keep_the_zoom(browser, plant):
    with serve(plant.sources, PORT_BASE + 1) as server:
        open_page(browser, server, f"/trends?series={A01}|ambient.temperature,{UPS}|ups.load&range=3600")
        wait_for_content(browser, "#trends-title", "UPS A — ups.load (%) — last 1 h")
        wait_until(browser, lambda d: d.execute_script(
            f"const p = {PLOT}; return p && p.data && p.data.filter(t => t.meta).length === 2;"), "two series")
        assert browser.driver.execute_script(f"return {PLOT}.layout.yaxis2.title.text;") == "%"
        full = browser.driver.execute_script(f"return {PLOT}._fullLayout.xaxis.range;")
        drag = browser.driver.find_element(By.CSS_SELECTOR, "#trends-graph .nsewdrag")
        ActionChains(browser.driver).move_to_element(drag).click_and_hold().move_by_offset(250, 5).release().perform()
        wait_until(browser, lambda d: d.execute_script(f"return {PLOT}._fullLayout.xaxis.range;") != full, "no zoom")
        zoomed = browser.driver.execute_script(f"window.fwBefore = {PLOT}.data; return {PLOT}._fullLayout.xaxis.range;")
        wait_until(browser, lambda d: d.execute_script(f"return {PLOT}.data !== window.fwBefore;"), "no new figure")
        assert browser.driver.execute_script(f"return {PLOT}._fullLayout.xaxis.range;") == zoomed
        assert browser.get_logs() == []


# --- Alerts: acknowledge, silence, expire — through the command table and the real applier ------------

def type_into(browser, selector: str, text: str) -> None:
    element = browser.find_element(selector)
    element.clear()
    element.send_keys(text)


def test_acknowledge_silence_and_expire_round_trip(browser, plant):
    applier = CommandApplier(plant.actions, plant.engine)
    with serve(plant.sources, PORT_BASE + 2) as server:
        open_page(browser, server, f"/alerts?device={UPS}")
        wait_for_content(browser, "#alerts-active", "ups_on_battery")
        wait_for_content(browser, "#alerts-active", "open")

        type_into(browser, "#alerts-author", "j.smith")
        browser.find_element("#alerts-active button").click()  # "Select": fills both forms from the row
        browser.wait_for_text_to_equal("#alerts-ack-alert", "WARNING · ups_on_battery · UPS A")
        type_into(browser, "#alerts-ack-note", HOSTILE)
        browser.find_element("#alerts-ack-submit").click()
        wait_for_content(browser, "#alerts-ack-message", "acknowledgement #1 requested")
        (command,) = plant.actions.pending()
        assert (command.author, command.source, command.payload["note"]) == ("j.smith", "127.0.0.1", HOSTILE)
        wait_for_content(browser, "#alerts-actions", "pending")
        applier.apply_pending()
        wait_for_content(browser, "#alerts-active", "acknowledged by j.smith")
        wait_until(browser, lambda d: text_of(browser, "#alerts-active .op-note") == HOSTILE, "note not shown")
        wait_for_content(browser, "#alerts-actions", "acknowledged ups_on_battery on dh1-ups-a")

        # a silence needs a reason and an expiry: the store's message is shown, nothing is queued
        browser.find_element("#alerts-silence-submit").click()
        wait_for_content(browser, "#alerts-silence-message", "expiry is required")
        browser.select_dcc_dropdown("#alerts-silence-duration", value="4 h")
        browser.find_element("#alerts-silence-submit").click()
        wait_for_content(browser, "#alerts-silence-message", "not sent: reason is required")
        assert plant.actions.pending() == []
        type_into(browser, "#alerts-silence-reason", "battery swap, ticket 4711")
        browser.find_element("#alerts-silence-submit").click()
        wait_for_content(browser, "#alerts-silence-message", "silence #2 requested")
        applier.apply_pending()
        wait_for_content(browser, "#alerts-active", "silenced by #1")
        wait_for_content(browser, "#alerts-silences", "battery swap, ticket 4711")
        wait_for_content(browser, "#alerts-silences", f"alertname=ups_on_battery, device={UPS}")
        screenshot(browser, "alerts")

        browser.find_element("#alerts-silences button").click()
        wait_for_content(browser, "#alerts-expire-message", "expiry of silence #1 requested")
        applier.apply_pending()
        wait_until(browser, lambda d: "silenced by" not in text_of(browser, "#alerts-active"), "still silenced")
        wait_for_content(browser, "#alerts-silences", "ended")
        wait_for_content(browser, "#alerts-actions", "silence #1 expired")
        assert [c.outcome for c in plant.actions.history()] == ["applied"] * 3
        assert_no_script_ran(browser)
        assert browser.get_logs() == []


def test_read_only_dashboard_offers_no_actions(browser, plant):
    sources = DashboardSources(plant.site, plant.store, alerts=plant.sources.alerts)
    with serve(sources, PORT_BASE + 3) as server:
        open_page(browser, server, "/alerts")
        wait_for_content(browser, "#alerts-active", "ups_on_battery")
        wait_for_content(browser, "#alerts-page", "read-only dashboard")
        assert browser.find_element("#alerts-ack-submit").get_attribute("disabled") is not None


# --- Device -----------------------------------------------------------------------------------------

def test_device_page_shows_every_point_poll_health_and_errors(browser, plant):
    with serve(plant.sources, PORT_BASE + 4) as server:
        open_page(browser, server, f"/device?device={UPS}")
        browser.wait_for_text_to_equal("#device-points [data-point='output.source']", "battery")
        browser.wait_for_text_to_equal("#device-points [data-point='ups.load']", "45")
        wait_for_content(browser, "#device-poll-health", "reachable")
        wait_for_content(browser, "#device-alerts", "ups_on_battery")
        wait_for_content(browser, "#device-errors", "upsTrapOnBattery")
        plant.store.write([Reading(UPS, "ups.load", time.time(), 61)])
        browser.wait_for_text_to_equal("#device-points [data-point='ups.load']", "61")
        screenshot(browser, "device")

        browser.select_dcc_dropdown("#device-select", value=f"Rack A01 inlet ({A01})")
        browser.wait_for_text_to_equal("#device-points [data-point='ambient.temperature']", "21.4")
        wait_for_content(browser, "#device-errors", "ambient.temperature")  # the missing readings
        wait_until(browser, lambda d: "answered every poll" not in text_of(browser, "#device-errors"),
                   "the outage is not listed")
        browser.driver.find_element(By.XPATH, "//tr[td='ambient.temperature']//a[text()='trend']").click()
        browser.wait_for_text_to_equal("#trends-title", "Rack A01 inlet — ambient.temperature (°C) — last 1 h")
        assert browser.get_logs() == []


# --- hostile names ------------------------------------------------------------------------------------

def test_hostile_device_name_and_note_render_as_text(browser, tmp_path):
    config = {
        "site": {"id": "xss", "name": "xss"},
        "rooms": [{"id": "dh1", "name": HOSTILE}],
        "devices": [{"id": "evil-1", "name": HOSTILE, "class": "thsensor", "profile": "thsensor/generic_xymd02",
                     "room": "dh1", "host": "127.0.0.1", "port": 15020, "modbus": {"unit_id": 1}}],
    }
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(config), encoding="utf-8")
    site = load_site(site_file)
    db = tmp_path / "facwatch.db"
    now = time.time()
    with SqliteStore(db) as store:
        store.write([Reading("evil-1", "ambient.temperature", now - age, 21.4) for age in range(600, -1, -10)])
        store.write([Reading("evil-1", "ambient.humidity", now, 40.0)])
        state = AlertStateStore(db)
        labels = {"site": "xss", "device": "evil-1", "room": "dh1", "device_class": "thsensor",
                  "point": "ambient.temperature"}
        state.save(Alert("inlet_temperature_out_of_envelope", labels, Severity.WARNING, AlertState.FIRING, 24.0,
                         summary=f"{HOSTILE} inlet 24 °C", fired_at=now - 30, updated_at=now - 30,
                         acknowledged_by=HOSTILE, acknowledged_at=now, ack_note=HOSTILE), None)
        sources = DashboardSources(site, store, alerts=state, actions=ActionStore(db))
        try:
            with serve(sources, PORT_BASE + 5) as server:
                open_page(browser, server, "/device?device=evil-1")
                browser.wait_for_text_to_equal("#device-identity .op-section-title", HOSTILE)
                open_page(browser, server, "/trends?device=evil-1")
                browser.wait_for_text_to_equal("#trends-title", f"{HOSTILE} — ambient.temperature (°C) — last 1 h")
                open_page(browser, server, "/alerts")
                wait_until(browser, lambda d: text_of(browser, "#alerts-active .op-note") == HOSTILE, "note")
                wait_until(browser, lambda d: text_of(browser, "#alerts-active .op-link") == HOSTILE, "device link")
                href = browser.find_element("#alerts-active .op-link").get_attribute("href")
                assert href.endswith("/device?device=evil-1")
                wait_for_content(browser, "#alerts-active", f"acknowledged by {HOSTILE}")
                assert_no_script_ran(browser)
                assert browser.get_logs() == []
        finally:
            state.close()
            sources.actions.close()


# --- Scenarios: the real control endpoint over a stand-in runner ---------------------------------------

class StandInRunner:
    """What ControlServer needs of a ScenarioRunner, without simulating a plant."""

    def __init__(self):
        self.sim = SimpleNamespace(plant=SimpleNamespace(clock_s=42.0), time_scale=60)
        self.scenarios = {"mains_failure": SimpleNamespace(description="Mains fails. The generator starts."),
                          "crac_failure": SimpleNamespace(description="A CRAC unit trips. The room warms up.")}
        self.active = None

    def start(self, name: str) -> None:
        if self.active:
            raise ValueError(f"{self.active} is running")
        self.active = name

    async def stop(self) -> None:
        self.active = None


@contextmanager
def control_endpoint(port: int) -> Iterator[StandInRunner]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sim-loop", daemon=True)
    thread.start()
    runner = StandInRunner()
    control = ControlServer(runner, "127.0.0.1", port, loop)  # type: ignore[arg-type]
    control.start()
    try:
        yield runner
    finally:
        control.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_scenarios_start_and_stop_through_the_control_endpoint(browser, plant):
    with control_endpoint(PORT_BASE + 10) as runner:
        url = f"http://127.0.0.1:{PORT_BASE + 10}/scenarios"
        sources = DashboardSources(plant.site, plant.store, alerts=plant.sources.alerts,
                                   actions=plant.sources.actions, scenario_url=url)
        with serve(sources, PORT_BASE + 6) as server:
            open_page(browser, server, "/scenarios")
            wait_for_content(browser, "#scenarios-list", "A CRAC unit trips.")
            browser.wait_for_text_to_equal("#scenarios-active", "no scenario running")
            browser.find_element("#scenarios-list button").click()  # the first: crac_failure (sorted by the API)
            wait_for_content(browser, "#scenarios-message", "started")
            assert runner.active in runner.scenarios
            wait_until(browser, lambda d: text_of(browser, "#scenarios-active") == runner.active, "not running")
            screenshot(browser, "scenarios")
            browser.find_element("#scenarios-stop").click()
            wait_for_content(browser, "#scenarios-message", "scenario stopped")
            browser.wait_for_text_to_equal("#scenarios-active", "no scenario running")
            assert runner.active is None
            assert browser.get_logs() == []
