"""The REAL dashboard (every page, the real stores) behind the auth guard: Flask's test client, no sockets.

S1 every route and Dash endpoint without credentials; S2 privileged callbacks replayed as a viewer and
a kiosk; S4 session replay after logout and password change; S6 canary secrets; the start-up policy.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from alerts.commands import ActionStore
from alerts.state import AlertStateStore
from auth import web
from auth.audit import chained_sink
from auth.db import Database
from auth.passwords import Hasher
from auth.service import AuthService
from dashboard import ids, shell
from dashboard.app import AUTH_RELOAD_SCRIPT, DashboardSources, create_app, discover_pages
from dashboard.pages import alerts as alerts_page
from dashboard.pages import scenarios as scenarios_page
from dashboard.serve import ServeRefused, WebSecurity, count_users, is_loopback, web_access
from evidence.auditlog import AuditLog
from facwatch import cli
from tests.unit.auth.test_auth_web import BASE, HOST, cookie, dash_post
from tests.unit.dashboard.conftest import FakeStore, write_site
from tests.unit.dashboard.test_alerts_page import UPS, alert

PASSWORD = "canary-Pa55word-7f3e91 horse"  # canary: never in logs, pages or the audit log
NEW_PASSWORD = "canary-N3w-pa55word-c41d2"
SIM_URL = "http://127.0.0.1:9/scenarios"  # nothing listens: a refused request never gets that far
PAGES = ["/", "/wall", "/power", "/rooms", "/fire", "/trends", "/alerts", "/device", "/scenarios"]


class Plant:
    """The real app over a temporary store with users, a kiosk token and a firing alert."""

    def __init__(self, db: Path, site):
        self.db = db
        self.state, self.actions = AlertStateStore(db), ActionStore(db)
        self.firing = alert("ups_on_battery", UPS)
        self.state.save(self.firing, None)
        self.audit = AuditLog.open(db)
        self.auth = AuthService(Database(db), chained_sink(db),
                                hasher=Hasher(time_cost=1, memory_cost=1024, parallelism=1))
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            self.auth.add_user(name, role, PASSWORD, actor="test", source="test")
        self.kiosk_token = self.auth.create_kiosk_token("NOC-1", actor="ada", source="test")
        self.sources = DashboardSources(site, FakeStore(), alerts=self.state, actions=self.actions,
                                        scenario_url=SIM_URL, auth=self.auth)
        self.app = create_app(self.sources)

    def client(self) -> FlaskClient:
        return self.app.server.test_client()

    def refusals(self) -> list:
        return [e for e in self.audit.entries() if e.action == "authz.refused"]

    def close(self) -> None:
        self.state.close()
        self.actions.close()
        self.audit.close()


@pytest.fixture
def plant(tmp_path, demo_site):
    plant = Plant(tmp_path / "facwatch.db", demo_site)
    yield plant
    plant.close()


def login(client: FlaskClient, name: str, password: str = PASSWORD):
    form = client.get("/login", base_url=BASE)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    return client.post("/login", base_url=BASE, headers={"Origin": BASE}, environ_base={"REMOTE_ADDR": "10.0.0.5"},
                       data={"username": name, "password": password, "csrf_token": csrf, "next": "/alerts"})


def kiosk(plant: Plant) -> FlaskClient:
    client = plant.client()
    assert client.get(f"/wall?kiosk={plant.kiosk_token}", base_url=BASE).status_code == 303
    return client


def callback(output: str, inputs: list, state: list, changed: str) -> dict:
    return {"output": f"{output}.children", "outputs": {"id": output, "property": "children"}, "inputs": inputs,
            "state": state, "changedPropIds": [changed]}


def ack_body(fingerprint: str) -> dict:
    return callback(alerts_page.ACK_MESSAGE, [{"id": alerts_page.ACK_SUBMIT, "property": "n_clicks", "value": 1}],
                    [{"id": alerts_page.AUTHOR, "property": "value", "value": "typed-name"},
                     {"id": alerts_page.ACK_ALERT, "property": "value", "value": fingerprint},
                     {"id": alerts_page.ACK_NOTE, "property": "value", "value": "on it"}],
                    f"{alerts_page.ACK_SUBMIT}.n_clicks")


def silence_body(kind: str) -> dict:
    values = {alerts_page.AUTHOR: "typed-name", alerts_page.SIL_DEVICE: UPS, alerts_page.SIL_RULE: None,
              alerts_page.SIL_KIND: kind, alerts_page.SIL_DURATION: 3600, alerts_page.SIL_REASON: "battery swap",
              alerts_page.SIL_START: 0}
    return callback(alerts_page.SIL_MESSAGE, [{"id": alerts_page.SIL_SUBMIT, "property": "n_clicks", "value": 1}],
                    [{"id": k, "property": "value", "value": v} for k, v in values.items()],
                    f"{alerts_page.SIL_SUBMIT}.n_clicks")


def expire_body(silence_id: int = 1) -> dict:
    button = {"type": alerts_page.EXPIRE, "silence": silence_id}
    return callback(alerts_page.EXPIRE_MESSAGE, [[{"id": button, "property": "n_clicks", "value": 1}]],
                    [{"id": alerts_page.AUTHOR, "property": "value", "value": "typed-name"}],
                    json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks")


def stop_body() -> dict:
    return callback(scenarios_page.MESSAGE, [[], {"id": scenarios_page.STOP, "property": "n_clicks", "value": 1}],
                    [], f"{scenarios_page.STOP}.n_clicks")


def privileged(plant: Plant) -> dict[str, dict]:
    return {"acknowledge": ack_body(plant.firing.fingerprint), "silence": silence_body("silence"),
            "maintenance": silence_body("maintenance"), "expire": expire_body(), "scenario": stop_body()}


def route_body(path: str) -> dict:
    """The shell's routing callback as the renderer sends it on navigation."""
    links = [ids.nav_link(page.name) for page in discover_pages(demo=True)]
    nav = json.dumps({"page": ["ALL"], "type": ids.NAV_LINK}, separators=(",", ":"))
    return {"output": f"..{ids.PAGE_CONTAINER}.children...{nav}.className...{ids.PAGE}.className..",
            "outputs": [{"id": ids.PAGE_CONTAINER, "property": "children"},
                        [{"id": link, "property": "className"} for link in links],
                        {"id": ids.PAGE, "property": "className"}],
            "inputs": [{"id": ids.URL, "property": "pathname", "value": path},
                       {"id": ids.URL, "property": "search", "value": ""}],
            "state": [[{"id": link, "property": "id", "value": link} for link in links]],
            "changedPropIds": [f"{ids.URL}.pathname"]}


# --- S1: nothing without credentials --------------------------------------------------------------------

def real_urls(plant: Plant) -> set[str]:
    """Every route of the real app, with the real script and style URLs an open twin of it serves."""
    twin = create_app(DashboardSources(plant.sources.site, FakeStore(), alerts=plant.state, actions=plant.actions,
                                       scenario_url=SIM_URL))
    index = twin.server.test_client().get("/").get_data(as_text=True)
    urls = set(re.findall(r'(?:src|href)="(/[^"]+)"', index))
    assert any(u.startswith("/_dash-component-suites/") for u in urls)
    assert any(u.startswith("/assets/") for u in urls)
    for rule in plant.app.server.url_map.iter_rules():
        urls.add(re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule))
    return urls | set(PAGES) | {"/_dash-layout", "/_dash-dependencies", "/_dash-update-component",
                                "/_favicon.ico", "/_reload-hash", "/static/x", "/assets/facwatch.css"}


def test_every_route_and_dash_endpoint_of_the_real_app_returns_no_data_without_credentials(plant):
    client = plant.client()
    allowed = {"/login", "/logout"}
    leaked = []
    for url in sorted(real_urls(plant)):
        if url.split("?")[0] in allowed:
            continue
        for method in ("GET", "POST"):
            body = route_body("/alerts") if url == "/_dash-update-component" else {}
            response = client.open(url, method=method, base_url=BASE, json=body if method == "POST" else None)
            if response.status_code == 303:
                assert response.headers["Location"].startswith("/login?next=")
            elif response.status_code != 401:
                leaked.append((method, url, response.status_code))
            text = response.get_data(as_text=True)
            assert plant.sources.site.config.site.name not in text and UPS not in text and "react" not in text
    assert leaked == []
    assert plant.actions.history() == []


def test_the_allow_list_serves_only_forms_without_data(plant):
    client = plant.client()
    for url in ("/login", "/logout"):
        text = client.get(url, base_url=BASE, follow_redirects=True).get_data(as_text=True)
        assert "sign in" in text and plant.sources.site.config.site.name not in text and "<script" not in text


# --- S2: privileged callbacks replayed with the wrong role ----------------------------------------------

@pytest.mark.parametrize("action", ["acknowledge", "silence", "maintenance", "expire", "scenario"])
def test_a_viewer_replaying_a_privileged_callback_is_refused_and_audited(plant, action):
    client = plant.client()
    login(client, "vera")
    response = dash_post(client, privileged(plant)[action])
    assert response.status_code == 200, response.data  # the callback ran and answered with its refusal
    assert "refused: your role does not allow" in response.get_data(as_text=True)
    assert plant.actions.history() == []
    (refusal,) = plant.refusals()
    assert refusal.actor == "vera" and refusal.source == "127.0.0.1" and "viewer" in refusal.details


@pytest.mark.parametrize("action", ["acknowledge", "silence", "maintenance", "expire", "scenario"])
def test_a_kiosk_replaying_a_privileged_callback_is_refused_by_the_guard_and_audited(plant, action):
    client = kiosk(plant)
    response = dash_post(client, privileged(plant)[action])
    assert response.status_code == 403
    assert plant.actions.history() == []
    (refusal,) = plant.refusals()
    assert refusal.actor == "kiosk:NOC-1" and "kiosk" in refusal.details


def test_an_operator_may_not_start_or_stop_scenarios_only_an_admin(plant):
    client = plant.client()
    login(client, "otto")
    assert "refused: your role does not allow configure" in dash_post(client, stop_body()).get_data(as_text=True)
    admin = plant.client()
    login(admin, "ada")
    text = dash_post(admin, stop_body()).get_data(as_text=True)
    assert "does not allow" not in text and "no simulator answering" in text  # authorised; no simulator here


def test_an_operator_acknowledges_signed_with_the_account_not_the_typed_name(plant):
    client = plant.client()
    login(client, "otto")
    text = dash_post(client, ack_body(plant.firing.fingerprint)).get_data(as_text=True)
    assert "acknowledgement #1 requested" in text
    (command,) = plant.actions.history()
    assert (command.kind, command.author, command.source) == ("ack", "otto", "127.0.0.1")


def test_a_kiosk_sees_the_wall_views_and_nothing_else(plant):
    client = kiosk(plant)
    for path in ("/wall", "/power", "/rooms", "/fire"):
        assert client.get(path, base_url=BASE).status_code == 200
        assert dash_post(client, route_body(path)).status_code == 200, path
    wall = dash_post(client, route_body("/wall"))
    assert "fw-screen--wall" in wall.get_data(as_text=True)
    tick = {"output": f"{ids.WALL_BODY}.children", "outputs": {"id": ids.WALL_BODY, "property": "children"},
            "inputs": [{"id": ids.TICK, "property": "n_intervals", "value": 5}], "state": [],
            "changedPropIds": [f"{ids.TICK}.n_intervals"]}
    assert dash_post(client, tick).status_code == 200  # the wall's own refresh
    assert dash_post(client, route_body("/alerts")).status_code == 403
    page = client.get("/alerts", base_url=BASE, headers={"Accept": "text/html"})
    assert page.status_code == 403 and "not available on a wall screen" in page.get_data(as_text=True)


def test_a_revoked_kiosk_token_gets_the_revoked_page_never_a_login_form(plant):
    client = kiosk(plant)
    plant.auth.revoke_kiosk_token("NOC-1", actor="ada", source="test")
    refresh = dash_post(client, route_body("/wall"))
    assert refresh.status_code == 403 and refresh.mimetype == "text/html"  # the page reloads on this (see app.py)
    page = client.get("/wall", base_url=BASE, headers={"Accept": "text/html"})
    text = page.get_data(as_text=True)
    assert page.status_code == 403 and "kiosk token revoked" in text and "password" not in text.lower()


# --- S4: session replay ---------------------------------------------------------------------------------

def stolen(plant: Plant, name: str) -> tuple[FlaskClient, dict[str, str]]:
    client = plant.client()
    login(client, name)
    return client, {n: cookie(client, n) for n in (web.SESSION_COOKIE, web.CSRF_COOKIE)}


def replay(plant: Plant, cookies: dict[str, str], post: bool = True):
    client = plant.client()
    for name, value in cookies.items():
        client.set_cookie(name, value, domain=HOST)
    page = client.get("/alerts", base_url=BASE, headers={"Accept": "text/html"})
    if not post:
        return page, None
    post = client.post("/_dash-update-component", base_url=BASE, json=ack_body(plant.firing.fingerprint),
                       headers={web.CSRF_HEADER: cookies[web.CSRF_COOKIE], "Origin": BASE})
    return page, post


def test_a_session_cookie_replayed_after_logout_is_refused(plant):
    client, cookies = stolen(plant, "otto")
    assert replay(plant, cookies, post=False)[0].status_code == 200  # the copy works while the session lives
    logout = client.post("/logout", base_url=BASE, data={"csrf_token": cookies[web.CSRF_COOKIE]},
                         headers={"Origin": BASE})
    assert logout.status_code == 303
    page, post = replay(plant, cookies)
    assert page.status_code == 303 and page.headers["Location"].startswith("/login")
    assert post.status_code == 401 and plant.actions.history() == []


def test_a_session_cookie_replayed_after_a_password_change_is_refused(plant):
    _, cookies = stolen(plant, "otto")
    plant.auth.set_password("otto", NEW_PASSWORD, actor="ada", source="test")
    page, post = replay(plant, cookies)
    assert page.status_code == 303 and post.status_code == 401
    assert plant.actions.history() == []


# --- the header and the page ----------------------------------------------------------------------------

def test_the_header_names_the_user_and_offers_sign_out(plant):
    client = plant.client()
    login(client, "otto")
    layout = json.dumps(client.get("/_dash-layout", base_url=BASE).get_json())
    assert "otto (operator)" in layout and '"href": "/logout"' in layout
    assert AUTH_RELOAD_SCRIPT in client.get("/", base_url=BASE).get_data(as_text=True)


def test_a_wall_screen_header_names_the_screen_without_sign_out(plant):
    layout = json.dumps(kiosk(plant).get("/_dash-layout", base_url=BASE).get_json())
    assert "wall screen NOC-1" in layout and shell.LOGOUT not in layout


def test_with_accounts_the_alerts_page_has_no_name_field_and_says_who_signs(plant):
    client = plant.client()
    login(client, "otto")
    text = dash_post(client, route_body("/alerts")).get_data(as_text=True)
    assert "They are signed as otto (operator)" in text and "Your name" not in text


def test_a_viewer_is_told_the_forms_are_not_for_their_role(plant):
    client = plant.client()
    login(client, "vera")
    page = dash_post(client, route_body("/alerts")).get_json()
    text = json.dumps(page)
    assert "signed in as vera (viewer): this role may look, not act" in text
    assert _disabled(page, alerts_page.ACK_SUBMIT) and _disabled(page, alerts_page.SIL_SUBMIT)


def _disabled(tree, component_id: str) -> bool:
    """True if the component with that id in a Dash JSON tree is disabled."""
    if isinstance(tree, dict):
        props = tree.get("props")
        if isinstance(props, dict) and props.get("id") == component_id:
            return props.get("disabled") is True
        return any(_disabled(v, component_id) for v in tree.values())
    if isinstance(tree, list):
        return any(_disabled(v, component_id) for v in tree)
    return False


def test_without_accounts_nothing_changes(demo_site, tmp_path):
    app = create_app(DashboardSources(demo_site, FakeStore()))
    client = app.server.test_client()
    assert client.get("/alerts").status_code == 200
    assert AUTH_RELOAD_SCRIPT not in client.get("/").get_data(as_text=True)
    assert shell.USER not in client.get("/_dash-layout").get_data(as_text=True)


# --- S6: canary secrets ---------------------------------------------------------------------------------

def test_canary_secrets_appear_in_no_log_page_or_audit_record(plant, caplog):
    caplog.set_level(logging.DEBUG)
    pages = []
    client = plant.client()
    pages.append(login(client, "otto", "canary-wrong-" + PASSWORD))  # a failed login, logged and audited
    pages.append(login(client, "otto"))
    session = cookie(client, web.SESSION_COOKIE)
    pages += [client.get(url, base_url=BASE) for url in ("/", "/_dash-layout", "/_dash-dependencies")]
    pages += [dash_post(client, body) for body in (*privileged(plant).values(), route_body("/alerts"))]
    pages.append(login(plant.client(), "vera", "x"))
    wall = plant.client()
    pages.append(wall.get(f"/wall?kiosk={plant.kiosk_token}", base_url=BASE))
    pages += [wall.get("/wall", base_url=BASE), dash_post(wall, ack_body(plant.firing.fingerprint))]
    plant.auth.revoke_kiosk_token("NOC-1", actor="ada", source="test")
    pages.append(wall.get("/wall", base_url=BASE))
    plant.auth.set_password("otto", NEW_PASSWORD, actor="ada", source="test")
    pages.append(client.get("/alerts", base_url=BASE))
    canaries = [PASSWORD, NEW_PASSWORD, plant.kiosk_token, session]
    bodies = [p.get_data(as_text=True) for p in pages]
    locations = [p.headers.get("Location", "") for p in pages]
    audit = [json.dumps([e.actor, e.action, e.subject, e.details, e.source]) for e in plant.audit.entries()]
    assert len(audit) > 8
    for canary in canaries:
        assert canary not in caplog.text
        assert not any(canary in text for text in [*bodies, *locations, *audit])


# --- the start-up policy --------------------------------------------------------------------------------

def test_loopback_without_users_is_open_and_the_network_without_users_is_refused():
    assert web_access(0, "127.0.0.1").accounts is False
    assert web_access(0, "::1").accounts is False and is_loopback("localhost")
    for host in ("0.0.0.0", "10.0.0.2", "::", "noc.example"):
        with pytest.raises(ServeRefused, match="facwatch users add NAME --role admin"):
            web_access(0, host)


def test_users_turn_accounts_on_and_https_decides_the_cookie_flag():
    assert web_access(1, "127.0.0.1") == web_access(1, "127.0.0.1", WebSecurity())
    local = web_access(1, "127.0.0.1")
    assert local.accounts and not local.secure_cookies  # plain HTTP on loopback: the demo with accounts
    proxied = web_access(2, "127.0.0.1", WebSecurity(trusted_proxies=("127.0.0.1",)))
    assert proxied.accounts and proxied.secure_cookies and proxied.trusted_proxies == ("127.0.0.1",)
    with pytest.raises(ServeRefused, match="plain HTTP"):
        web_access(1, "0.0.0.0")
    assert web_access(1, "0.0.0.0", WebSecurity(("10.1.0.0/24",))).secure_cookies
    assert not web_access(1, "0.0.0.0", WebSecurity(secure_cookies=False)).secure_cookies  # explicit waiver
    with pytest.raises(ValueError):
        WebSecurity(trusted_proxies=("not-an-address",))


def test_the_cli_refuses_a_network_dashboard_without_accounts(tmp_path, capsys):
    path = write_site(tmp_path, [{"id": "a01"}])
    config = json.loads(path.read_text())
    config["dashboard"]["host"] = "0.0.0.0"
    path.write_text(json.dumps(config))
    assert cli.main(["dashboard", "-c", str(path), "--data-dir", str(tmp_path / "data")]) == 2
    assert "create an admin first: facwatch users add name --role admin" in capsys.readouterr().err.lower()
    assert count_users(tmp_path / "data" / "facwatch.db") == 0
