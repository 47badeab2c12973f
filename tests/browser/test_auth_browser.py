"""Accounts in a real Chromium: sign in, act as an operator, sign out; a wall screen whose kiosk token is
revoked; captured callbacks replayed with the wrong role (run with --headless).

The real app (every page) over a real SqliteStore, served by waitress on 127.0.0.1:30950-30999.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from flask import request
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from alerts.commands import ActionStore
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from auth import web
from auth.audit import chained_sink
from auth.db import Database
from auth.passwords import Hasher
from auth.service import AuthService
from collectors.model import REACHABLE_POINT, Reading, Severity
from config.load import load_site
from dashboard.app import DashboardSources, create_app
from dashboard.serve import DashboardServer, make_server
from evidence.auditlog import AuditLog
from storage.sqlite import SqliteStore
from tests.browser.test_operator_pages import SITE, UPS, fit_viewport, text_of
from tests.peers import require

pytestmark = pytest.mark.browser

PORT_BASE = 30950  # this module owns 30950-30999
WAIT_S = 30  # several 2 s refresh cycles on a busy shared machine
PASSWORD = "canary-Br0wser-pa55word-a9d2"  # canary: never in pages, logs or the audit log
CALLBACK = "/_dash-update-component"


@pytest.fixture
def browser(request):
    require("chromedriver")
    browser = request.getfixturevalue("dash_br")
    browser.wait_timeout = WAIT_S
    fit_viewport(browser.driver, 1600, 1000)
    return browser


@pytest.fixture
def plant(tmp_path):
    """A store with current readings and a firing alert; accounts (operator, viewer) and a kiosk token."""
    db = tmp_path / "facwatch.db"
    site = load_site(SITE)
    now = time.time()
    store = SqliteStore(db)
    store.write([Reading(UPS, "ups.load", now, 45), Reading(UPS, REACHABLE_POINT, now, 1)])
    state, actions, audit = AlertStateStore(db), ActionStore(db), AuditLog.open(db)
    firing = Alert("ups_on_battery", {"device": UPS, "point": "output.source"}, Severity.WARNING, AlertState.FIRING,
                   fired_at=now - 60)
    state.save(firing, None)
    auth = AuthService(Database(db), chained_sink(db), hasher=Hasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth.add_user("otto", "operator", PASSWORD, actor="test", source="test")
    auth.add_user("vera", "viewer", PASSWORD, actor="test", source="test")
    token = auth.create_kiosk_token("NOC-1", actor="test", source="test")
    sources = DashboardSources(site, store, alerts=state, actions=actions, auth=auth)
    yield SimpleNamespace(site=site, store=store, actions=actions, audit=audit, auth=auth, token=token,
                          sources=sources, firing=firing)
    for closable in (state, actions, audit, store):
        closable.close()


@contextmanager
def serve(sources: DashboardSources, port: int) -> Iterator[tuple[DashboardServer, list[dict]]]:
    """The real app with accounts on a waitress thread; every callback body it receives is captured."""
    app = create_app(sources, secure_cookies=False)  # plain HTTP on loopback, as `facwatch demo` with users
    captured: list[dict] = []

    @app.server.before_request
    def capture() -> None:
        if request.path == CALLBACK and request.method == "POST":
            captured.append(request.get_json(silent=True) or {})

    server = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name=f"dashboard-{port}", daemon=True)
    thread.start()
    try:
        yield server, captured
    finally:
        server.close()
        thread.join(10)
        assert not thread.is_alive(), "dashboard server thread did not stop"


def wait_until(browser, condition, message: str = ""):
    return WebDriverWait(browser.driver, WAIT_S, poll_frequency=0.2).until(condition, message)


def wait_for_content(browser, selector: str, text: str) -> None:
    wait_until(browser, lambda d: text in (text_of(browser, selector) or ""), f"{text!r} not in {selector}")


def sign_in(browser, server: DashboardServer, path: str, name: str) -> None:
    browser.driver.get(server.url.rstrip("/") + path)
    wait_until(browser, lambda d: d.find_elements(By.ID, "password"), "no login form")
    browser.driver.find_element(By.ID, "username").send_keys(name)
    browser.driver.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def replay(server: DashboardServer, body: dict, cookies: dict[str, str]) -> tuple[int, str]:
    """POST a captured callback body with someone else's cookies, as a script outside the browser would."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", web.CSRF_HEADER: cookies.get(web.CSRF_COOKIE, ""),
               "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    call = urllib.request.Request(server.url.rstrip("/") + CALLBACK, data=json.dumps(body).encode(),
                                  headers=headers, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_operator_signs_in_acknowledges_as_themself_and_a_replay_as_viewer_or_kiosk_is_refused(
        browser, plant, caplog):
    caplog.set_level(logging.INFO)
    with serve(plant.sources, PORT_BASE) as (server, captured):
        sign_in(browser, server, "/alerts", "otto")
        wait_for_content(browser, "#header-user", "otto (operator)")
        wait_for_content(browser, "#alerts-active", "ups_on_battery")
        assert not browser.driver.find_element(By.ID, "alerts-author").is_displayed()  # no "your name" field
        browser.driver.find_element(By.CSS_SELECTOR, "#alerts-active button").click()  # Select: fills the form
        wait_for_content(browser, "#alerts-ack-alert", "ups_on_battery")
        browser.driver.find_element(By.ID, "alerts-ack-submit").click()
        wait_for_content(browser, "#alerts-ack-message", "acknowledgement #1 requested")
        (command,) = plant.actions.history()
        assert (command.kind, command.author, command.source) == ("ack", "otto", "127.0.0.1")
        ack = next(b for b in captured if b.get("output") == "alerts-ack-message.children")
        session = browser.driver.get_cookie(web.SESSION_COOKIE)["value"]
        pages = [browser.driver.page_source]

        # the captured acknowledgement, replayed as a viewer (own session) and as a wall screen (own token)
        viewer = sign_in_client(server, "vera")
        status, text = replay(server, ack, viewer)
        assert status == 200 and "refused: your role does not allow acknowledge" in text
        wall = kiosk_cookies(server, plant.token)
        status, _ = replay(server, ack, wall)
        assert status == 403
        assert len(plant.actions.history()) == 1
        refused = [(e.actor, e.action) for e in plant.audit.entries() if e.action == "authz.refused"]
        assert refused == [("vera", "authz.refused"), ("kiosk:NOC-1", "authz.refused")]

        # sign out; the old session cookie then opens nothing
        browser.driver.find_element(By.ID, "header-logout").click()
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "form[action='/logout'] button"))
        browser.driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
        wait_until(browser, lambda d: d.find_elements(By.ID, "password"), "not back at the login form")
        browser.driver.add_cookie({"name": web.SESSION_COOKIE, "value": session, "path": "/"})
        browser.driver.get(server.url.rstrip("/") + "/alerts")
        wait_until(browser, lambda d: d.find_elements(By.ID, "password"), "a replayed session cookie still works")
        pages.append(browser.driver.page_source)
        status, _ = replay(server, ack, {web.SESSION_COOKIE: session, web.CSRF_COOKIE: "x"})
        assert status == 401 and len(plant.actions.history()) == 1

    audit = json.dumps([[e.actor, e.subject, e.details, e.source] for e in plant.audit.entries()])
    for canary in (PASSWORD, session, plant.token):
        assert canary not in caplog.text and canary not in audit
        assert not any(canary in page for page in pages)


def sign_in_client(server: DashboardServer, name: str) -> dict[str, str]:
    """Sign in over HTTP outside the browser; the session and CSRF cookies."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(server.url + "login", timeout=10).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": name, "password": PASSWORD, "csrf_token": csrf, "next": "/"}).encode()
    opener.open(urllib.request.Request(server.url + "login", data=data), timeout=10).read()
    found = {c.name: c.value for c in jar}
    assert web.SESSION_COOKIE in found, "sign-in failed"
    return {n: found[n] for n in (web.SESSION_COOKIE, web.CSRF_COOKIE)}


def kiosk_cookies(server: DashboardServer, token: str) -> dict[str, str]:
    """Open the wall with a kiosk token outside the browser; the kiosk and CSRF cookies it is given."""
    import http.cookiejar
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{server.url}wall?kiosk={token}", timeout=10).read()
    found = {c.name: c.value for c in jar}
    return {n: found[n] for n in (web.KIOSK_COOKIE, web.CSRF_COOKIE)}


def test_a_revoked_kiosk_token_stops_the_wall_within_one_refresh_and_never_shows_a_login_form(browser, plant):
    refresh_s = plant.site.config.dashboard.refresh_s
    with serve(plant.sources, PORT_BASE + 1) as (server, _):
        browser.driver.get(f"{server.url}wall?kiosk={plant.token}")
        wait_until(browser, lambda d: "/wall" in d.current_url and "kiosk=" not in d.current_url)
        wait_for_content(browser, "#wall-body", "Power")
        wait_for_content(browser, "#header-user", "wall screen NOC-1")
        assert browser.driver.find_elements(By.ID, "header-logout") == []
        time.sleep(refresh_s)  # the wall has refreshed at least once with the token
        assert plant.auth.revoke_kiosk_token("NOC-1", actor="test", source="test")
        revoked_at = time.monotonic()
        wait_until(browser, lambda d: "kiosk token revoked" in d.page_source, "the wall still shows data")
        took = time.monotonic() - revoked_at
        assert browser.driver.find_elements(By.ID, "password") == []  # never a login form on a wall
        assert browser.driver.find_elements(By.ID, "wall-body") == []  # and no stale data left on screen
        print(f"kiosk revocation took effect after {took:.1f} s (refresh {refresh_s:g} s)")
        # one refresh, plus a reload of the page, on a shared 2-core machine
        assert took <= refresh_s + 10


def test_start_dashboard_turns_accounts_on_when_the_store_has_users_and_audits_to_the_chained_log(tmp_path):
    """The runtime's wiring (no Chromium): open without users on loopback, guarded once a user exists."""
    import urllib.error
    import urllib.request

    from facwatch.runtime import start_dashboard

    site = load_site(SITE)
    store = SqliteStore(tmp_path / "facwatch.db")
    try:
        web_open = start_dashboard(site, store, host="127.0.0.1", port=PORT_BASE + 2)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT_BASE + 2}/_dash-layout", timeout=10) as r:
                assert r.status == 200  # the loopback demo without users: open
        finally:
            web_open.stop()
        admin = AuthService.open(store.path)
        admin.add_user("ada", "admin", PASSWORD, actor="test", source="test")
        web_guarded = start_dashboard(site, store, host="127.0.0.1", port=PORT_BASE + 3)
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT_BASE + 3}/_dash-layout", timeout=10)
            assert refused.value.code == 401
            server = SimpleNamespace(url=f"http://127.0.0.1:{PORT_BASE + 3}/")
            assert web.SESSION_COOKIE in sign_in_client(server, "ada")
        finally:
            web_guarded.stop()
        with AuditLog.open(store.path) as audit:
            assert [(e.actor, e.action) for e in audit.entries()][-1] == ("ada", "login")
    finally:
        store.close()
