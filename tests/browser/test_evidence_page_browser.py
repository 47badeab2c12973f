"""The Evidence page in a real Chromium, served by waitress from a SQLite file seeded through the evidence writers.

The export is checked end to end: the button's dcc.Download lands in Chromium's download folder (dash_br
sets it with the driver's download prefs and CDP ``Page.setDownloadBehavior``), and the zip that arrives
must pass ``evidence.verify.verify_pack``. Screenshot for the docs: ``FACWATCH_SCREENSHOTS=1`` (1920 × 1080).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from config.load import load_site
from dashboard.evidence_views import month_of
from dashboard.serve import DashboardServer
from evidence.auditlog import AuditAction, AuditLog
from evidence.verify import verify_pack
from tests.browser.test_dashboard_browser import fit_viewport
from tests.browser.test_wall_pages import (
    DEMO_CONFIG,
    Plant,
    no_script_ran,
    open_page,
    plant_for,
    screenshot,
    serve,
    wait_text,
)
from tests.peers import require
from tests.unit.dashboard.test_evidence_page import XSS, seed

pytestmark = pytest.mark.browser

PORT_BASE = 30900  # this module owns 30900-30949
WAIT_S = 60  # building a pack and verifying the audit log on a slow, shared machine
SENSOR = "dh1-rack-a01-inlet"
ROW = f"#evidence-compliance tr[data-device='{SENSOR}'][data-point='ambient.temperature']"


@pytest.fixture
def browser(request):
    require("chromedriver")
    browser = request.getfixturevalue("dash_br")
    browser.wait_timeout = WAIT_S
    fit_viewport(browser.driver, 1920, 1080)
    return browser


@pytest.fixture
def site_with_evidence(tmp_path) -> Iterator[tuple[Plant, DashboardServer]]:
    """The demo site, live readings, and this month's records: tests, an acked excursion, a drill, audit."""
    site = load_site(DEMO_CONFIG)
    now = time.time()
    base = max(month_of(now).start, now - 3 * 3600)  # inside the current month, so the default period shows it
    seed(tmp_path / "facwatch.db", site, base, sensor=SENSOR)
    with plant_for(site, tmp_path) as plant:
        plant.start()
        with serve(plant, PORT_BASE) as server:
            yield plant, server


def test_evidence_page_shows_the_months_records_with_drills_apart_and_notes_as_text(browser, site_with_evidence):
    _plant, server = site_with_evidence
    open_page(browser, server, "/evidence")
    wait_text(browser, "#evidence-generator", "test on load")
    generator = browser.find_element("#evidence-generator").text
    assert "PASS" in generator and "FAIL" in generator and "at ≥ 30 % load" in generator
    assert "run off load: the monthly test needs the generator on load" in generator
    assert "generator_short_test" not in generator  # the drill's run is not evidence of a real test
    wait_text(browser, "#evidence-ups", "ups-a")
    wait_text(browser, "#evidence-power", "mains failure")
    wait_text(browser, "#evidence-thresholds", "CHG-1042 envelopes")
    drills = browser.find_element("#evidence-drills").text
    assert "NOT EVIDENCE OF REAL EVENTS" in drills and "generator_short_test" in drills and "mains_failure" in drills
    wait_text(browser, ROW, "acknowledged by j.smith")
    note = browser.driver.find_element(By.CSS_SELECTOR, f"{ROW} .ev-note")
    assert note.text == XSS  # the ack note is text, not markup
    no_script_ran(browser)
    wait_text(browser, "#evidence-audit", "OK — audit log intact")
    wait_text(browser, "#evidence-audit", "last checkpoint")
    screenshot(browser, "evidence")
    assert browser.get_logs() == []


def test_export_needs_a_name_then_downloads_a_pack_that_verifies(browser, site_with_evidence, tmp_path):
    _plant, server = site_with_evidence
    open_page(browser, server, "/evidence")
    wait_text(browser, "#evidence-generator", "test on load")
    browser.find_element("#evidence-export").click()
    wait_text(browser, "#evidence-export-message", "enter your name")

    browser.find_element("#evidence-author").send_keys("A. Auditor")
    browser.find_element("#evidence-export").click()
    wait_text(browser, "#evidence-export-message", "signed by key")
    folder = Path(browser.download_path)
    WebDriverWait(browser.driver, WAIT_S).until(
        lambda d: [p for p in folder.iterdir() if p.suffix == ".zip"], message="no pack downloaded")
    (pack,) = [p for p in folder.iterdir() if p.suffix == ".zip"]
    assert pack.name.startswith("facwatch-demo-evidence-")
    report = verify_pack(pack)
    assert report.ok, report.text()
    exports = [e for e in AuditLog.open(tmp_path / "facwatch.db").entries() if e.action == AuditAction.EXPORT]
    assert [e.actor for e in exports] == ["A. Auditor"]
    assert browser.get_logs() == []
