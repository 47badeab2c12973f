"""Direct HTTPS in a real Chromium: sign in, see live data, acknowledge an alert (CSRF over Secure cookies).

Chromium trusts exactly the test server's key (``--ignore-certificate-errors-spki-list`` with its SPKI
hash), not every certificate; the server is ``start_dashboard`` with ``dashboard.tls`` on 127.0.0.1:31120.
Always headless.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from alerts.commands import ActionStore
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from auth.service import AuthService
from collectors.model import REACHABLE_POINT, Reading, Severity
from config.load import load_site
from facwatch.runtime import open_store, start_dashboard
from tests.integration.test_dashboard_https import site_file
from tests.peers import require
from tests.tlscerts import make_pki

pytestmark = pytest.mark.browser

PORT = 31120
WAIT_S = 30
UPS = "dh1-ups-a"
PASSWORD = "canary-https-browser-pass-5e1"


def spki_hash(cert_file: Path) -> str:
    """Chromium's pin format: base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def chromium(tmp_path: Path):
    def start(cert_file: Path) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = require("chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000",
                         f"--user-data-dir={tmp_path / 'chromium'}",
                         f"--ignore-certificate-errors-spki-list={spki_hash(cert_file)}"):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(require("chromedriver")))
        drivers.append(driver)
        return driver

    drivers: list[webdriver.Chrome] = []
    yield start
    for driver in drivers:
        driver.quit()


def text_of(driver, selector: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                                 selector) or ""


def test_operator_signs_in_and_acknowledges_over_https(tmp_path: Path, chromium) -> None:
    pki = make_pki(tmp_path / "certs", password=PASSWORD.encode())
    (tmp_path / "certs" / "key-password").write_text(PASSWORD, encoding="utf-8")
    site = load_site(site_file(tmp_path, PORT, key_password="file"))
    store = open_store(site, tmp_path / "data")
    store.write([Reading(UPS, "ups.load", time.time(), 45), Reading(UPS, REACHABLE_POINT, time.time(), 1)])
    alerts, actions = AlertStateStore(store.path), ActionStore(store.path)
    alerts.save(Alert("ups_on_battery", {"device": UPS, "point": "output.source"}, Severity.WARNING,
                      AlertState.FIRING, fired_at=time.time() - 60), None)
    AuthService.open(store.path).add_user("otto", "operator", PASSWORD, actor="test", source="test")
    web = start_dashboard(site, store)
    try:
        driver = chromium(pki.cert_file)
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.2)
        driver.get(f"{web.url}alerts")
        wait.until(lambda d: d.find_elements(By.ID, "password"), "no login form over HTTPS")
        driver.find_element(By.ID, "username").send_keys("otto")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "ups_on_battery" in text_of(d, "#alerts-active"), "no live alerts after sign-in")
        session = driver.get_cookie("facwatch_session")
        assert session is not None and session["secure"] and session["httpOnly"]
        assert session["sameSite"] == "Strict"
        assert driver.execute_script("return window.isSecureContext;") is True

        driver.find_element(By.CSS_SELECTOR, "#alerts-active button").click()
        wait.until(lambda d: "ups_on_battery" in text_of(d, "#alerts-ack-alert"))
        driver.find_element(By.ID, "alerts-ack-submit").click()
        wait.until(lambda d: "acknowledgement #1 requested" in text_of(d, "#alerts-ack-message"))
        (command,) = actions.history()
        assert (command.kind, command.author) == ("ack", "otto")
    finally:
        web.stop()
        for closable in (alerts, actions, store):
            closable.close()
