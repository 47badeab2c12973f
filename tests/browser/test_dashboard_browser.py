"""The dashboard in a real Chromium, served by waitress from a real SqliteStore (run with --headless)."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from collectors.model import REACHABLE_POINT, Quality, Reading
from config.load import Site, load_site
from dashboard.app import DashboardSources, create_app
from dashboard.serve import DashboardServer, make_server
from storage.sqlite import SqliteStore
from tests.peers import require

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"  # the skeleton site: a stable fixture
SCREENSHOT = ROOT / "docs" / "screenshot-dashboard.png"
PORT_BASE = 30320  # this module owns 30320-30329
UPS, A01, A02 = "dh1-ups-a", "dh1-rack-a01-inlet", "dh1-rack-a02-inlet"
HOSTILE = "<img src=x onerror=alert(1)>"
WAIT_S = 20  # several 2 s refresh cycles, plus a slow CI machine


def demo_readings(now: float) -> list[Reading]:
    """Current values of the demo site's devices and 50 min of history for the trend."""
    readings = []
    for age in range(3000, 0, -2):  # every 2 s, the demo's poll interval
        ts = now - age
        outage = 1500 >= age > 1320  # three minutes the sensor did not answer: the trend shows a gap
        temperature = None if outage else round(21.4 + 0.5 * math.sin(age / 300) + 0.1 * math.sin(age / 17), 1)
        readings.append(Reading(A01, "ambient.temperature", ts, temperature,
                                Quality.MISSING if outage else Quality.GOOD))
        readings.append(Reading(UPS, "ups.load", ts, round(44 + 3 * math.sin(age / 400))))
    current = {
        UPS: {"output.source": 3, "ups.load": 45, "battery.charge": 100, "battery.runtime": 25, "battery.status": 2,
              "input.voltage": 230, REACHABLE_POINT: 1},
        A01: {"ambient.temperature": 21.4, "ambient.humidity": 45.0, REACHABLE_POINT: 1},
        A02: {"ambient.temperature": 22.4, "ambient.humidity": 48.0, REACHABLE_POINT: 1},
    }
    readings += [Reading(device, point, now, value) for device, points in current.items()
                 for point, value in points.items()]
    return readings


@pytest.fixture
def browser(request):
    """dash's Selenium wrapper (``dash_br``), once chromedriver is known to be there."""
    require("chromedriver")
    browser = request.getfixturevalue("dash_br")
    browser.wait_timeout = WAIT_S
    fit_viewport(browser.driver, 1920, 1080)  # the size of a wall screen, and of the README screenshot
    return browser


@contextmanager
def serve_site(site: Site, store: SqliteStore, port: int) -> Iterator[DashboardServer]:
    """Serve the dashboard of ``site`` on a thread until the generator is closed."""
    server = make_server(create_app(DashboardSources(site, store)), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name=f"dashboard-{port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(10)
        assert not thread.is_alive(), "dashboard server thread did not stop"


@pytest.fixture
def demo(tmp_path):
    """The demo site served from a fresh SqliteStore seeded with readings."""
    with SqliteStore(tmp_path / "facwatch.db") as store:
        store.write(demo_readings(time.time()))
        with serve_site(load_site(DEMO_CONFIG), store, PORT_BASE) as server:
            yield server, store


def value_selector(device: str, point: str, part: str = "fw-number") -> str:
    return f"article[data-device='{device}'] dd[data-point='{point}'] .{part}"


def tile_selector(device: str) -> str:
    return f"article[data-device='{device}']"


def test_tiles_show_values_with_units_and_follow_new_readings(browser, demo):
    server, store = demo
    browser.server_url = server.url
    # Tiles are re-rendered every tick, so every read is a wait (it retries a node replaced under it).
    expect = browser.wait_for_text_to_equal
    expect(value_selector(A01, "ambient.temperature"), "21.4")
    expect(value_selector(A01, "ambient.temperature", "fw-unit"), "°C")
    expect(value_selector(A01, "ambient.humidity"), "45.0")
    expect(value_selector(A01, "ambient.humidity", "fw-unit"), "%RH")
    expect(value_selector(UPS, "output.source"), "normal")
    expect(value_selector(UPS, "input.voltage"), "230")
    expect(value_selector(UPS, "input.voltage", "fw-unit"), "V")
    expect(f"{tile_selector(UPS)} .fw-badge", "OK")
    browser.wait_for_contains_class(tile_selector(UPS), "fw-tile--ok")
    expect("#site-name", "facwatch demo data centre")

    store.write([Reading(A01, "ambient.temperature", time.time(), 24.9)])
    expect(value_selector(A01, "ambient.temperature"), "24.9")
    browser.wait_for_contains_text("#header-updated", "updated")

    store.write([Reading(UPS, "output.source", time.time(), 5)])  # mains failed: on battery
    browser.wait_for_contains_class(tile_selector(UPS), "fw-tile--warning")
    expect(f"{tile_selector(UPS)} .fw-badge", "WARNING")
    expect(value_selector(UPS, "output.source"), "battery")
    store.write([Reading(UPS, "output.source", time.time(), 3)])
    browser.wait_for_contains_class(tile_selector(UPS), "fw-tile--ok")
    assert browser.get_logs() == []


def test_trend_follows_the_device_picker(browser, demo):
    server, _ = demo
    browser.server_url = server.url
    browser.wait_for_text_to_equal("#trend-title", "UPS A — ups.load (%), last 1 h")
    browser.select_dcc_dropdown("#trend-device", value=f"Rack A01 inlet ({A01})")
    browser.wait_for_text_to_equal("#trend-title", "Rack A01 inlet — ambient.temperature (°C), last 1 h")
    wait_for_trend_traces(browser)
    if os.environ.get("FACWATCH_SCREENSHOTS") == "1":
        browser.wait_for_text_to_equal(value_selector(A01, "ambient.temperature"), "21.4")
        save_screenshot(browser.driver, SCREENSHOT)
    assert_zoom_survives_refresh(browser.driver)
    assert browser.get_logs() == []


def assert_zoom_survives_refresh(driver) -> None:
    """Drag a zoom box like an operator, wait for the next figure from the server, check the zoom is kept."""
    plot = "document.querySelector('#trend-graph .js-plotly-plot')"
    full_range = driver.execute_script(f"return {plot}._fullLayout.xaxis.range;")
    drag_area = driver.find_element(By.CSS_SELECTOR, "#trend-graph .nsewdrag")
    ActionChains(driver).move_to_element(drag_area).click_and_hold().move_by_offset(200, 5).release().perform()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(f"return {plot}._fullLayout.xaxis.range;") != full_range)
    zoomed = driver.execute_script(f"window.fwDataBefore = {plot}.data; return {plot}._fullLayout.xaxis.range;")
    WebDriverWait(driver, WAIT_S).until(  # a refresh replaces the data arrays
        lambda d: d.execute_script(f"return {plot}.data !== window.fwDataBefore;"))
    assert driver.execute_script(f"return {plot}._fullLayout.xaxis.range;") == zoomed


def wait_for_trend_traces(browser) -> None:
    """Until plotly has drawn the mean line (band + line traces)."""
    WebDriverWait(browser.driver, WAIT_S).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#trend-graph .scatterlayer .trace")) >= 2)


def fit_viewport(driver, width: int, height: int) -> None:
    """Size the window so the page itself gets width × height CSS pixels (the window chrome is extra)."""
    driver.set_window_size(width, height)
    inner_width, inner_height = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    driver.set_window_size(2 * width - inner_width, 2 * height - inner_height)


def save_screenshot(driver, path: Path) -> None:
    """A PNG of the top of the page, checked to be the viewport size (1920 × 1080)."""
    driver.execute_script("window.scrollTo(0, 0);")
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    with open(path, "rb") as png:
        size = struct.unpack(">II", png.read(24)[16:24])
    assert size == (1920, 1080)


def test_hostile_device_name_renders_as_literal_text(browser, tmp_path):
    config = {
        "site": {"id": "xss", "name": HOSTILE},
        "rooms": [{"id": "dh1", "name": HOSTILE}],
        "devices": [{"id": "evil-1", "name": HOSTILE, "class": "thsensor", "profile": "thsensor/generic_xymd02",
                     "room": "dh1", "host": "127.0.0.1", "port": 15020, "modbus": {"unit_id": 1}}],
    }
    site_file = tmp_path / "site.yaml"
    site_file.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    with SqliteStore(tmp_path / "facwatch.db") as store:
        store.write([Reading("evil-1", "ambient.temperature", time.time(), 21.4)])
        with serve_site(load_site(site_file), store, PORT_BASE + 1) as server:
            browser.server_url = server.url
            expect = browser.wait_for_text_to_equal
            expect(value_selector("evil-1", "ambient.temperature"), "21.4")
            expect(f"{tile_selector('evil-1')} .fw-tile-label", HOSTILE)
            expect("#site-name", HOSTILE)
            room = browser.driver.execute_script("return document.querySelector('.fw-room-name').textContent;")
            assert room == HOSTILE  # textContent: the CSS shows room names in capitals
            expect("#trend-title", f"{HOSTILE} — ambient.temperature (°C), last 1 h")
            assert browser.driver.title == f"facwatch — {HOSTILE}"
            assert browser.driver.find_elements(By.CSS_SELECTOR, "img") == []
            with pytest.raises(NoAlertPresentException):
                browser.driver.switch_to.alert.text  # noqa: B018 - raises when no alert() ran
            assert browser.get_logs() == []


def test_server_stops_and_frees_its_port(tmp_path):
    with SqliteStore(tmp_path / "facwatch.db") as store:
        site = load_site(DEMO_CONFIG)
        for _ in range(2):  # the second start proves the first one released the port
            with serve_site(site, store, PORT_BASE + 2) as server, \
                    urllib.request.urlopen(server.url, timeout=5) as response:
                assert response.status == 200
                assert response.headers["Server"] == "facwatch"
