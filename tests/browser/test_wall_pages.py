"""The NOC pages (wall, power, rooms, fire) in a real Chromium, served by waitress from a real SqliteStore.

A writer thread plays the collector and the alert engine: fresh readings and heartbeats every second
until a test stops it. Screenshots for the docs: ``FACWATCH_SCREENSHOTS=1`` (1920 × 1080).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from alerts.commands import ActionStore
from alerts.derived import ups_autonomy_full_load
from alerts.model import Alert, AlertState
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import Reading, Severity
from config.load import Site, load_site
from dashboard import ids
from dashboard.app import DashboardSources
from dashboard.serve import DashboardServer
from storage.sqlite import SqliteStore
from tests.browser.test_dashboard_browser import fit_viewport, save_screenshot
from tests.browser.test_operator_pages import serve as serve_sources
from tests.peers import require
from tests.unit.dashboard.plant_readings import healthy_readings

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "config" / "sites" / "demo.yaml"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PORT_BASE = 30300  # this module owns 30300-30319
WAIT_S = 30  # several 2 s refresh cycles on a slow, shared machine
HOSTILE = "<img src=x onerror=alert(1)>"


@dataclass
class Plant:
    """The store behind the dashboard and a thread writing what the collector and alert engine would."""

    site: Site
    store: SqliteStore
    alerts: AlertStateStore
    actions: ActionStore
    overrides: dict[tuple[str, str], float] = field(default_factory=dict)
    running: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def write_once(self) -> None:
        now = time.time()
        readings = healthy_readings(self.site, now)
        readings += [Reading(device, point, now, value) for (device, point), value in dict(self.overrides).items()]
        self.store.write(readings)
        self.actions.beat("collector", now)
        self.actions.beat("alerting", now)

    def start(self) -> None:
        self.write_once()
        self.running.set()
        self.thread = threading.Thread(target=self._run, name="fake-collector", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """The collector and the alert engine die: no more readings, no more heartbeats."""
        self.running.clear()
        if self.thread is not None:
            self.thread.join(10)

    def _run(self) -> None:
        while self.running.is_set():
            self.write_once()
            self.running.wait(0)  # yield
            time.sleep(1.0)

    def raise_alert(self, rule: str, device: str, severity: Severity, summary: str, *, fired_ago: float = 60,
                    by: str | None = None) -> Alert:
        now = time.time()
        alert = Alert(rule, {"device": device, "site": self.site.config.site.id}, severity, AlertState.FIRING,
                      summary=summary, active_since=now - fired_ago, fired_at=now - fired_ago, updated_at=now,
                      acknowledged_by=by, acknowledged_at=now if by else None)
        self.alerts.save(alert, None)
        return alert


@pytest.fixture
def browser(request):
    require("chromedriver")
    browser = request.getfixturevalue("dash_br")
    browser.wait_timeout = WAIT_S
    fit_viewport(browser.driver, 1920, 1080)
    return browser


def serve(plant: Plant, port: int) -> AbstractContextManager[DashboardServer]:
    """The real dashboard app over the plant, on a waitress thread."""
    return serve_sources(DashboardSources(plant.site, plant.store, alerts=plant.alerts, actions=plant.actions,
                                          rules=tuple(load_rules())), port)


@contextmanager
def plant_for(site: Site, directory: Path) -> Iterator[Plant]:
    path = directory / "facwatch.db"
    with SqliteStore(path) as store:
        plant = Plant(site, store, AlertStateStore(path), ActionStore(path))
        try:
            yield plant
        finally:
            plant.stop()
            plant.alerts.close()
            plant.actions.close()


@pytest.fixture
def demo(tmp_path) -> Iterator[tuple[Plant, DashboardServer]]:
    """The demo site's plant, written live, and its dashboard (each test frees the port for the next)."""
    with plant_for(load_site(DEMO_CONFIG), tmp_path) as plant:
        plant.start()
        with serve(plant, PORT_BASE) as server:
            yield plant, server


def open_page(browser, server: DashboardServer, path: str) -> None:
    browser.driver.get(server.url.rstrip("/") + path)


def text_of(browser, selector: str) -> str:
    """textContent of the first match, retried while the tick replaces the node."""
    return WebDriverWait(browser.driver, WAIT_S).until(
        lambda d: d.execute_script("const e = document.querySelector(arguments[0]); return e && e.textContent;",
                                   selector))


def wait_text(browser, selector: str, expected: str) -> None:
    WebDriverWait(browser.driver, WAIT_S).until(
        lambda d: expected in (d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", selector) or ""),
        message=f"{selector} never contained {expected!r}")


def wait_attribute(browser, selector: str, attribute: str, expected: str) -> None:
    WebDriverWait(browser.driver, WAIT_S).until(
        lambda d: expected in (d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : '';",
            selector, attribute) or ""),
        message=f"{selector} [{attribute}] never had {expected!r}")


def wait_path(browser, path: str, timeout: float = WAIT_S) -> None:
    WebDriverWait(browser.driver, timeout).until(
        lambda d: d.execute_script("return window.location.pathname;") == path, message=f"never at {path}")


def screenshot(browser, name: str) -> None:
    if os.environ.get("FACWATCH_SCREENSHOTS") == "1":
        time.sleep(0.5)  # let the last refresh paint
        save_screenshot(browser.driver, SCREENSHOTS / f"{name}.png")


def no_script_ran(browser) -> None:
    assert browser.driver.find_elements(By.CSS_SELECTOR, "img") == []
    with pytest.raises(NoAlertPresentException):
        browser.driver.switch_to.alert.text  # noqa: B018 - raises when no alert() ran


def test_wall_shows_the_site_and_active_alerts_with_age_and_owner(browser, demo):
    plant, server = demo
    plant.raise_alert("inlet_temperature_out_of_envelope", "dh2-rack-b05-inlet", Severity.WARNING,
                      "Rack B05 inlet (NetBotz) inlet 23.4 °C outside the warning envelope", fired_ago=720)
    plant.raise_alert("ups_on_bypass", "ups-b", Severity.CRITICAL, "UPS B (ring B) on bypass (critical)",
                      fired_ago=185, by="j.smith")
    open_page(browser, server, "/wall")
    wait_text(browser, ".fw-wall-power .fw-wall-summary", "Load on utility mains")
    wait_text(browser, ".fw-wall-power .fw-panel-head", "ON MAINS")
    wait_text(browser, ".fw-wall-cooling [data-row='dh1']", "22.9 °C at Rack A04 inlet")
    wait_text(browser, ".fw-wall-cooling [data-row='dh1']", "2 of 2 running")
    wait_text(browser, ".fw-wall-fire .fw-panel-head", "NORMAL")
    wait_text(browser, ".fw-wall-alerts .fw-panel-head", "2 FIRING")
    first, second = browser.driver.find_elements(By.CSS_SELECTOR, ".fw-wall-alerts tbody tr")[:2]
    assert "UPS B (ring B) on bypass" in first.text and "j.smith" in first.text and "3 min" in first.text
    assert "unowned" in second.text and "12 min" in second.text
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#status-banner .fw-banner-message") == []
    screenshot(browser, "wall")
    assert browser.get_logs() == []


def test_power_chain_lights_the_path_carrying_the_load(browser, demo):
    plant, server = demo
    open_page(browser, server, "/power")
    wait_attribute(browser, "[data-line='mains-ats']", "data-state", "live")
    wait_attribute(browser, "[data-line='gen-1-ats']", "data-state", "dead")
    wait_attribute(browser, "[data-line='bus-ups-a']", "data-state", "live")
    wait_attribute(browser, "[data-line='ups-a-load']", "data-state", "live")
    peukert = next(r for r in load_rules() if r.derived == "ups_autonomy_full_load").params["peukert_exponent"]
    expected = ups_autonomy_full_load(46.0, 52.0, peukert).value
    wait_text(browser, "[data-node='ups-a'] [data-fact='runtime at full load']", f"{expected:.1f}")
    wait_text(browser, "[data-node='gen-1'] [data-fact='fuel at full load']", "days")
    screenshot(browser, "power")
    # mains fails: the ATS goes to the generator, which runs; UPS B rides on its battery meanwhile
    plant.overrides.update({("ats-1", "ats.mains_available"): 0, ("ats-1", "ats.generator_available"): 1,
                            ("ats-1", "ats.position"): 2, ("gen-1", "engine.state"): 3,
                            ("ups-b", "output.status"): 3})
    wait_attribute(browser, "[data-line='gen-1-ats']", "data-state", "live")
    wait_attribute(browser, "[data-line='mains-ats']", "data-state", "dead")
    wait_attribute(browser, "[data-line='bus-ups-b']", "data-state", "dead")
    wait_attribute(browser, "[data-line='ups-b-load']", "data-state", "live")
    wait_text(browser, "[data-node='ups-b']", "ON BATTERY")
    wait_text(browser, ".fw-chain-summary", "Load on generator (1 UPS on battery)")
    assert browser.get_logs() == []


def test_rooms_colour_each_rack_by_the_rules_envelope(browser, demo):
    plant, server = demo
    open_page(browser, server, "/rooms")
    rack = "[data-device='dh1-rack-a01-inlet']"
    wait_text(browser, f"{rack} [data-fact='temperature']", "21.5")
    wait_attribute(browser, rack, "class", "fw-state--ok")
    wait_text(browser, f"{rack} [data-fact='dew point']", "9.1")  # Magnus at 21.5 °C, 45 %RH
    wait_text(browser, "[data-device='dh1-crac-1']", "ON")
    wait_text(browser, "[data-device='dh1-crac-1'] [data-fact='supply']", "18.1")
    wait_text(browser, "[data-room='dh1'] .fw-legend", "warning 19–23 °C")
    screenshot(browser, "rooms")
    plant.overrides[("dh1-rack-a01-inlet", "ambient.temperature")] = 24.5  # above the 23 °C warning level
    wait_attribute(browser, rack, "class", "fw-state--warning")
    wait_attribute(browser, f"{rack} [data-fact='temperature']", "class", "fw-fact--warning")
    assert browser.get_logs() == []


def test_fire_page_shows_zones_and_systems_and_offers_no_control(browser, demo):
    plant, server = demo
    open_page(browser, server, "/fire")
    wait_text(browser, "[data-device='fire-panel'] [data-zone='1']", "NORMAL")
    wait_text(browser, "[data-device='dh1-preaction'] [data-fact='armed']", "armed")
    wait_text(browser, "[data-device='dh2-gas'] [data-fact='released']", "normal")
    wait_text(browser, "[data-device='dh1-vesda'] .fw-smoke-text", "10 % of Fire 1")
    screenshot(browser, "fire")
    plant.overrides.update({("fire-panel", "zone.3.alarm"): 1, ("fire-panel", "zone.3.event"): 0x10})
    wait_text(browser, "[data-device='fire-panel'] [data-zone='3']", "ALARM")
    wait_text(browser, "[data-device='fire-panel'] [data-zone='3']", "fire alarm")
    wait_text(browser, ".fw-fire-summary", "FIRE / RELEASE ALARM")
    page_buttons = browser.driver.find_elements(By.CSS_SELECTOR, "#page-container button, #page-container input")
    assert page_buttons == []  # display only: nothing to press on a life-safety page
    assert browser.get_logs() == []


def test_banner_shouts_when_collector_and_alert_engine_stop_on_every_page(browser, demo):
    plant, server = demo
    open_page(browser, server, "/power")
    wait_attribute(browser, "[data-line='mains-ats']", "data-state", "live")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#status-banner .fw-banner-message") == []
    plant.stop()
    stopped = time.time()
    plant.actions.beat("collector", stopped - 25)  # its last beat: down 30 s after, without a 30 s test
    plant.actions.beat("alerting", stopped - 25)
    WebDriverWait(browser.driver, 60).until(
        lambda d: "DATA STALE since" in d.find_element(By.ID, "status-banner").text, message="no stale banner")
    banner = browser.driver.find_element(By.ID, "status-banner").text
    assert "COLLECTOR DOWN since" in banner and "ALERT ENGINE DOWN since" in banner
    for path in ("/wall", "/rooms", "/fire", "/"):
        open_page(browser, server, path)
        wait_text(browser, "#status-banner", "DATA STALE since")
        wait_text(browser, "#status-banner", "COLLECTOR DOWN since")
    wait_text(browser, "#header-updated", "DATA STALE")
    assert browser.get_logs() == []


def test_playlist_rotates_pauses_on_a_new_critical_alert_and_resumes(browser, demo):
    plant, server = demo
    plant.raise_alert("ups_on_bypass", "ups-b", Severity.CRITICAL, "an old critical alert", fired_ago=600)
    open_page(browser, server, "/wall?rotate=5")
    wait_text(browser, "#playlist-text", "PLAYLIST every 5 s")
    assert not browser.driver.find_element(By.ID, ids.NAV).is_displayed()  # kiosk: no navigation
    wait_path(browser, "/power")  # an alert that was there before does not stop the playlist
    assert browser.driver.execute_script("return window.location.search;") == "?rotate=5"
    wait_path(browser, "/rooms")
    alert = plant.raise_alert("gas_released", "dh2-gas", Severity.CRITICAL, "GAS RELEASED: DH2 clean-agent system",
                              fired_ago=1)
    wait_path(browser, "/wall")
    wait_text(browser, "#playlist-text", "PLAYLIST PAUSED — new critical alert: GAS RELEASED")
    wait_text(browser, ".fw-wall-alerts", "GAS RELEASED: DH2 clean-agent system")
    time.sleep(7)  # longer than the rotation period: paused means it stays
    assert browser.driver.execute_script("return window.location.pathname;") == "/wall"
    plant.alerts.acknowledge(alert.fingerprint, "j.smith", "on it", time.time())
    wait_text(browser, "#playlist-text", "PLAYLIST every 5 s")
    wait_path(browser, "/power")
    # a second new alert, resumed by a click this time
    plant.raise_alert("fire_zone_alarm", "fire-panel", Severity.CRITICAL, "FIRE: Fire alarm panel zone.2.alarm",
                      fired_ago=1)
    wait_path(browser, "/wall")
    wait_text(browser, "#playlist-text", "FIRE: Fire alarm panel")
    browser.driver.find_element(By.ID, "playlist-resume").click()
    wait_text(browser, "#playlist-text", "PLAYLIST every 5 s")
    wait_path(browser, "/power")
    assert browser.get_logs() == []


def test_hostile_names_render_as_text_on_every_wall_page(browser, tmp_path):
    config = json.loads(json.dumps({
        "site": {"id": "xss", "name": HOSTILE},
        "rooms": [{"id": "dh1", "name": HOSTILE}],
        "devices": [
            {"id": "evil-1", "name": HOSTILE, "class": "thsensor", "profile": "thsensor/generic_xymd02",
             "room": "dh1", "host": "127.0.0.1", "port": 15020, "modbus": {"unit_id": 1}},
            {"id": "evil-ats", "name": HOSTILE, "class": "ats", "profile": "ats/facwatch_ats", "room": "dh1",
             "host": "127.0.0.1", "port": 15031},
            {"id": "evil-gas", "name": HOSTILE, "class": "gas", "profile": "gas/clean_agent", "room": "dh1",
             "host": "127.0.0.1", "port": 15052},
        ],
    }))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(config), encoding="utf-8")
    with plant_for(load_site(site_file), tmp_path) as plant:
        plant.start()
        plant.raise_alert("gas_released", "evil-gas", Severity.CRITICAL, HOSTILE, by=HOSTILE)
        with serve(plant, PORT_BASE + 1) as server:
            open_page(browser, server, "/wall")
            wait_text(browser, ".fw-wall-alerts tbody", HOSTILE)
            row = text_of(browser, ".fw-wall-alerts tbody tr")
            assert row.count(HOSTILE) == 3  # summary, device, owner
            wait_text(browser, ".fw-wall-cooling", HOSTILE)
            wait_text(browser, "#site-name", HOSTILE)
            no_script_ran(browser)
            for path, selector in (("/power", "[data-node='evil-ats']"), ("/rooms", "[data-device='evil-1']"),
                                   ("/fire", "[data-device='evil-gas']")):
                open_page(browser, server, path)
                wait_text(browser, selector, HOSTILE)
                no_script_ran(browser)
            open_page(browser, server, f"/{HOSTILE}")
            wait_text(browser, ".fw-not-found", "Page not found")
            no_script_ran(browser)
            assert browser.get_logs() == []
