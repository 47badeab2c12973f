"""The web guard against a tiny Dash app built here: Flask's test client, no sockets, a fake clock."""

from __future__ import annotations

import json
import logging
import re

import dash
import pytest
from dash import Input, Output, dcc, html
from flask.testing import FlaskClient

from auth import web
from auth.service import AuthService
from tests.unit.auth.conftest import PASSWORD, FakeClock, RecordingSink

BASE = "https://facwatch.example"
HOST = "facwatch.example"


def build_app(service: AuthService, **options) -> dash.Dash:
    app = dash.Dash(__name__, serve_locally=True)
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="page"), dcc.Interval(id="tick"),
                           html.Div(id="wall-status"), html.Button(id="ack"), html.Div(id="ack-result")])

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def page(pathname):
        return f"page {pathname}"

    @app.callback(Output("wall-status", "children"), Input("tick", "n_intervals"))
    def wall(n):
        who = web.current_identity()
        return f"all normal (for {who.name})"

    @app.callback(Output("ack-result", "children"), Input("ack", "n_clicks"), prevent_initial_call=True)
    def ack(n):
        who = web.require_role("operator")
        return f"acknowledged by {who.name}"

    @app.server.route("/api/readings")
    def readings():
        return {"ups-a": {"battery.charge": 100}}

    web.install(app.server, service, **options)
    return app


@pytest.fixture
def app(users: AuthService) -> dash.Dash:
    return build_app(users, allow=("/healthz",))


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


def login(client: FlaskClient, name: str, password: str = PASSWORD, source: str = "10.0.0.5"):
    form = client.get("/login", base_url=BASE)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    return client.post("/login", base_url=BASE, data={"username": name, "password": password, "csrf_token": csrf,
                                                      "next": "/alerts"},
                       environ_base={"REMOTE_ADDR": source}, headers={"Origin": BASE})


def cookie(client: FlaskClient, name: str) -> str | None:
    found = client.get_cookie(name, domain=HOST)
    return found.value if found else None


def callback_body(output: str, prop: str, inputs: list[dict], changed: list[str]) -> dict:
    return {"output": f"{output}.{prop}", "outputs": {"id": output, "property": prop}, "inputs": inputs,
            "changedPropIds": changed, "state": []}


ACK = callback_body("ack-result", "children", [{"id": "ack", "property": "n_clicks", "value": 1}], ["ack.n_clicks"])
WALL = callback_body("wall-status", "children", [{"id": "tick", "property": "n_intervals", "value": 3}],
                     ["tick.n_intervals"])


def page_body(path: str) -> dict:
    return callback_body("page", "children", [{"id": "url", "property": "pathname", "value": path}],
                         ["url.pathname"])


def dash_post(client: FlaskClient, body: dict, csrf: str | None = "from-cookie", origin: str | None = BASE):
    headers = {}
    if csrf == "from-cookie":
        csrf = cookie(client, web.CSRF_COOKIE)
    if csrf:
        headers[web.CSRF_HEADER] = csrf
    if origin:
        headers["Origin"] = origin
    return client.post("/_dash-update-component", base_url=BASE, json=body, headers=headers)


# --- S1: nothing without credentials --------------------------------------------------------------------
def every_route(app: dash.Dash) -> list[str]:
    paths = set()
    for rule in app.server.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule)
        paths.add(path)
    suites = "/_dash-component-suites/dash/deps/react@18.3.1.min.js"
    return sorted(paths | {suites, "/wall", "/fire", "/alerts", "/assets/style.css", "/_dash-layout",
                           "/_dash-dependencies", "/_favicon.ico", "/api/readings"})


def test_every_route_returns_no_data_without_credentials(app: dash.Dash, client: FlaskClient) -> None:
    allowed = {"/login", "/logout", "/healthz"}
    leaked = []
    for path in every_route(app):
        if path in allowed:
            continue
        for method in ("GET", "POST"):
            response = client.open(path, method=method, base_url=BASE, json={} if method == "POST" else None)
            if response.status_code not in (303, 401):
                leaked.append((method, path, response.status_code))
            elif response.status_code == 303:
                assert response.headers["Location"].startswith("/login?next=")
            assert b"battery" not in response.data and b"react" not in response.data.lower()
    assert leaked == []


def test_html_navigation_is_sent_to_login_and_xhr_gets_401(client: FlaskClient) -> None:
    page = client.get("/alerts", base_url=BASE, headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["Location"] == "/login?next=%2Falerts"
    api = client.post("/_dash-update-component", base_url=BASE, json=WALL)
    assert api.status_code == 401 and api.get_json() == {"error": "authentication required"}


def test_login_page_is_self_contained(client: FlaskClient) -> None:
    page = client.get("/login", base_url=BASE)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<script" not in text and 'href="' not in text and 'src="' not in text


# --- login, cookies, CSRF -------------------------------------------------------------------------------
def test_login_sets_strict_secure_httponly_session_cookie(client: FlaskClient) -> None:
    response = login(client, "vera")
    assert response.status_code == 303 and response.headers["Location"] == "/alerts"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    session = cookies[web.SESSION_COOKIE]
    assert "Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session
    csrf = cookies[web.CSRF_COOKIE]
    assert "Secure" in csrf and "SameSite=Strict" in csrf and "HttpOnly" not in csrf  # the renderer reads it
    assert client.get("/alerts", base_url=BASE).status_code == 200


def test_dash_callbacks_work_with_the_renderers_csrf_header(client: FlaskClient) -> None:
    login(client, "vera")
    response = dash_post(client, WALL)
    assert response.status_code == 200, response.data
    assert "all normal (for vera)" in response.get_data(as_text=True)


@pytest.mark.parametrize(("csrf", "origin"), [(None, BASE), ("forged-token", BASE),
                                              ("from-cookie", "https://evil.example"), ("from-cookie", "null")])
def test_state_changing_post_without_the_right_csrf_or_origin_is_refused(
        client: FlaskClient, sink: RecordingSink, csrf: str | None, origin: str) -> None:
    login(client, "otto")
    response = dash_post(client, ACK, csrf=csrf, origin=origin)
    assert response.status_code == 403
    assert "acknowledged" not in response.get_data(as_text=True)
    assert sink.events[-1]["action"] == "authz.refused" and sink.events[-1]["actor"] == "otto"


def test_login_form_without_its_csrf_token_is_refused(client: FlaskClient, sink: RecordingSink) -> None:
    response = client.post("/login", base_url=BASE, data={"username": "vera", "password": PASSWORD})
    assert response.status_code == 403
    assert web.SESSION_COOKIE not in response.headers.get("Set-Cookie", "")
    assert "login" not in sink.actions()[4:]


def test_wrong_password_shows_the_form_again_with_a_generic_message(client: FlaskClient) -> None:
    response = login(client, "vera", "not the password")
    assert response.status_code == 401
    assert "wrong user name or password" in response.get_data(as_text=True)
    assert cookie(client, web.SESSION_COOKIE) is None


def test_login_next_never_leaves_the_site(client: FlaskClient) -> None:
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "/\t/evil.example", "javascript:x"):
        form = client.get("/login", base_url=BASE)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
        response = client.post("/login", base_url=BASE, headers={"Origin": BASE},
                               data={"username": "vera", "password": PASSWORD, "csrf_token": csrf, "next": target})
        assert response.headers["Location"] == "/"


def test_login_replaces_any_existing_session_id(client: FlaskClient, users: AuthService) -> None:
    login(client, "vera")
    first = cookie(client, web.SESSION_COOKIE)
    login(client, "vera")
    assert cookie(client, web.SESSION_COOKIE) != first
    assert users.session(first, "a") is None


# --- S2: roles are checked in the callback --------------------------------------------------------------
@pytest.mark.parametrize("name", ["vera", "aud"])
def test_viewer_and_auditor_replaying_an_ack_are_refused_and_audited(
        client: FlaskClient, sink: RecordingSink, caplog: pytest.LogCaptureFixture, name: str) -> None:
    login(client, name)
    with caplog.at_level(logging.WARNING, logger="auth"):
        response = dash_post(client, ACK)
    assert response.status_code == 403
    assert "acknowledged" not in response.get_data(as_text=True)
    refusal = sink.events[-1]
    assert (refusal["action"], refusal["actor"], refusal["source"]) == ("authz.refused", name, "127.0.0.1")
    assert refusal["subject"] == "callback ack-result.children"
    assert refusal["details"]["needed"] == "role operator"
    assert any("refused" in r.getMessage() and name in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["otto", "ada"])
def test_operator_and_admin_may_acknowledge(client: FlaskClient, name: str) -> None:
    login(client, name)
    response = dash_post(client, ACK)
    assert response.status_code == 200 and f"acknowledged by {name}" in response.get_data(as_text=True)


# --- S4: session replay ---------------------------------------------------------------------------------
def replay(app: dash.Dash, session: str, csrf: str):
    other = app.server.test_client()
    other.set_cookie(web.SESSION_COOKIE, session, domain=HOST)
    other.set_cookie(web.CSRF_COOKIE, csrf, domain=HOST)
    return dash_post(other, WALL)


def test_cookie_replayed_after_logout_is_refused(app: dash.Dash, client: FlaskClient) -> None:
    login(client, "otto")
    session, csrf = cookie(client, web.SESSION_COOKIE), cookie(client, web.CSRF_COOKIE)
    assert replay(app, session, csrf).status_code == 200
    page = client.get("/logout", base_url=BASE)
    assert page.status_code == 200 and csrf in page.get_data(as_text=True)
    out = client.post("/logout", base_url=BASE, data={"csrf_token": csrf}, headers={"Origin": BASE})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert replay(app, session, csrf).status_code == 401


def test_logout_needs_the_csrf_token(client: FlaskClient, users: AuthService) -> None:
    login(client, "otto")
    session = cookie(client, web.SESSION_COOKIE)
    assert client.post("/logout", base_url=BASE).status_code == 403
    assert users.session(session, "a") is not None


@pytest.mark.parametrize("change", ["password", "disable"])
def test_cookie_replayed_after_password_change_or_disable_is_refused(
        app: dash.Dash, client: FlaskClient, users: AuthService, change: str) -> None:
    login(client, "otto")
    session, csrf = cookie(client, web.SESSION_COOKIE), cookie(client, web.CSRF_COOKIE)
    if change == "password":
        users.set_password("otto", "another long passphrase", actor="ada", source="cli")
    else:
        users.disable("otto", actor="ada", source="cli")
    assert replay(app, session, csrf).status_code == 401


def test_idle_session_expires_even_with_a_page_polling(client: FlaskClient, users: AuthService,
                                                       clock: FakeClock) -> None:
    login(client, "vera")
    for _ in range(int(users.policy.idle_s // 60) - 1):
        clock.advance(60)
        assert dash_post(client, WALL).status_code == 200  # timer refreshes do not count as activity
    clock.advance(60)
    assert dash_post(client, WALL).status_code == 401
    assert cookie(client, web.SESSION_COOKIE) is None  # the stale cookie is cleared


def test_a_made_up_session_id_is_not_accepted(app: dash.Dash) -> None:
    assert replay(app, "attacker-chosen-session-id", "x").status_code == 401


# --- S3: kiosk tokens -----------------------------------------------------------------------------------
@pytest.fixture
def kiosk(users: AuthService) -> str:
    return users.create_kiosk_token("NOC-1", actor="ada", source="cli")


def open_wall(client: FlaskClient, token: str):
    return client.get(f"/wall?kiosk={token}&theme=dark", base_url=BASE, headers={"Accept": "text/html"})


def test_kiosk_token_is_swapped_for_a_cookie_and_shows_the_wall(client: FlaskClient, kiosk: str) -> None:
    response = open_wall(client, kiosk)
    assert response.status_code == 303 and response.headers["Location"] == "/wall?theme=dark"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert cookie(client, web.KIOSK_COOKIE) == kiosk
    assert client.get("/wall", base_url=BASE).status_code == 200
    assert client.get("/_dash-layout", base_url=BASE).status_code == 200
    wall = dash_post(client, WALL)
    assert wall.status_code == 200 and "kiosk:NOC-1" in wall.get_data(as_text=True)
    assert dash_post(client, page_body("/wall")).status_code == 200


def test_kiosk_cannot_leave_the_wall_views(client: FlaskClient, kiosk: str, sink: RecordingSink) -> None:
    open_wall(client, kiosk)
    page = client.get("/alerts", base_url=BASE, headers={"Accept": "text/html"})
    assert page.status_code == 403 and "not available on a wall screen" in page.get_data(as_text=True)
    assert "sign in" not in page.get_data(as_text=True)
    assert dash_post(client, page_body("/alerts")).status_code == 403  # the page callback asked for /alerts
    assert client.get("/api/readings", base_url=BASE).status_code == 403
    assert sink.events[-1]["action"] == "authz.refused" and sink.events[-1]["actor"] == "kiosk:NOC-1"


def test_kiosk_replaying_a_privileged_callback_is_refused_and_audited(client: FlaskClient, kiosk: str,
                                                                      sink: RecordingSink) -> None:
    open_wall(client, kiosk)
    response = dash_post(client, ACK)
    assert response.status_code == 403 and "acknowledged" not in response.get_data(as_text=True)
    assert sink.events[-1]["action"] == "authz.refused"
    assert sink.events[-1]["actor"] == "kiosk:NOC-1"


def test_kiosk_output_allow_list_refuses_other_callbacks(users: AuthService, kiosk: str) -> None:
    client = build_app(users, kiosk_outputs=("wall-status", "page")).server.test_client()
    open_wall(client, kiosk)
    assert dash_post(client, WALL).status_code == 200
    assert dash_post(client, ACK).status_code == 403  # refused by the guard, before the callback runs


def test_revoked_kiosk_token_stops_on_the_next_request_without_a_login_form(
        client: FlaskClient, users: AuthService, kiosk: str) -> None:
    open_wall(client, kiosk)
    assert dash_post(client, WALL).status_code == 200
    users.revoke_kiosk_token("NOC-1", actor="ada", source="cli")
    assert dash_post(client, WALL).status_code == 403
    page = client.get("/wall", base_url=BASE, headers={"Accept": "text/html"})
    text = page.get_data(as_text=True)
    assert page.status_code == 403 and "kiosk token revoked — ask an admin" in text
    assert "password" not in text and "/login" not in text


def test_kiosk_post_needs_its_csrf_value(client: FlaskClient, kiosk: str) -> None:
    open_wall(client, kiosk)
    assert dash_post(client, WALL, csrf=None).status_code == 403


# --- S5: proxy identity ---------------------------------------------------------------------------------
def test_proxy_header_from_an_untrusted_address_is_ignored(users: AuthService) -> None:
    client = build_app(users, trusted_proxies=("10.0.0.1",)).server.test_client()
    response = client.get("/alerts", base_url=BASE, headers={"X-Forwarded-User": "ada", "Accept": "text/html"},
                          environ_base={"REMOTE_ADDR": "10.0.0.66"})
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


def test_proxy_header_without_any_trusted_proxy_is_ignored(client: FlaskClient) -> None:
    response = client.get("/alerts", base_url=BASE, headers={"X-Forwarded-User": "ada"},
                          environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code in (303, 401)


def test_trusted_proxy_identity_gets_a_session_with_the_users_role(users: AuthService, sink: RecordingSink) -> None:
    client = build_app(users, trusted_proxies=("10.0.0.0/30",)).server.test_client()
    headers = {"X-Forwarded-User": "vera", "X-Forwarded-For": "198.51.100.7, 10.0.0.2"}
    response = client.get("/alerts", base_url=BASE, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.status_code == 200
    assert sink.events[-1]["action"] == "login" and sink.events[-1]["source"] == "198.51.100.7"
    refused = client.post("/_dash-update-component", base_url=BASE, json=ACK, environ_base={"REMOTE_ADDR": "10.0.0.1"},
                          headers={**headers, web.CSRF_HEADER: cookie(client, web.CSRF_COOKIE)})
    assert refused.status_code == 403  # a viewer, whoever the proxy says it is


def test_unknown_proxy_user_gets_nothing(users: AuthService) -> None:
    client = build_app(users, trusted_proxies=("10.0.0.1",)).server.test_client()
    response = client.get("/api/readings", base_url=BASE, headers={"X-Forwarded-User": "mallory"},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.status_code == 401


# --- allow-list and headers -----------------------------------------------------------------------------
def test_allow_listed_path_needs_no_credentials(app: dash.Dash, client: FlaskClient) -> None:
    app.server.add_url_rule("/healthz", "healthz", lambda: "ok")
    assert client.get("/healthz", base_url=BASE).status_code == 200


def test_responses_carry_protective_headers(client: FlaskClient) -> None:
    login(client, "vera")
    response = client.get("/alerts", base_url=BASE)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


# --- S6: canaries ---------------------------------------------------------------------------------------
def test_passwords_and_tokens_appear_in_no_log_response_or_audit(
        client: FlaskClient, users: AuthService, sink: RecordingSink, kiosk: str,
        caplog: pytest.LogCaptureFixture) -> None:
    canary = "CANARY-pw-7f3a9-long-enough"
    with caplog.at_level(logging.DEBUG):
        users.add_user("cana", "operator", canary, actor="ada", source="cli")
        wrong = login(client, "cana", canary + "x")
        right = login(client, "cana", canary)
        session = cookie(client, web.SESSION_COOKIE)
        users.revoke_kiosk_token("NOC-1", actor="ada", source="cli")
        revoked = open_wall(app_client := client.application.test_client(), kiosk)
        dash_post(app_client, WALL)
    texts = [r.getMessage() for r in caplog.records] + [json.dumps(e, default=str) for e in sink.events]
    texts += [wrong.get_data(as_text=True), right.get_data(as_text=True), revoked.get_data(as_text=True)]
    for secret in (canary, session, kiosk):
        assert not any(secret in text for text in texts), secret


def test_proxy_switching_user_ends_the_previous_session(users: AuthService) -> None:
    client = build_app(users, trusted_proxies=("10.0.0.1",)).server.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    client.get("/alerts", base_url=BASE, headers={"X-Forwarded-User": "vera"}, environ_base=proxy)
    vera = cookie(client, web.SESSION_COOKIE)
    client.get("/alerts", base_url=BASE, headers={"X-Forwarded-User": "otto"}, environ_base=proxy)
    assert users.session(vera, "a") is None
    assert users.session(cookie(client, web.SESSION_COOKIE), "a").identity.name == "otto"


def test_require_permission_refuses_a_role_without_it(users: AuthService, sink: RecordingSink) -> None:
    app = build_app(users)
    with app.server.test_request_context("/evidence/export", method="POST"):
        from flask import g

        g.facwatch_identity = users.login("otto", PASSWORD, "10.0.0.5").identity
        with pytest.raises(web.AuthorisationRefused):
            web.require_permission("export")
        g.facwatch_identity = users.login("aud", PASSWORD, "10.0.0.6").identity
        assert web.require_permission("export").name == "aud"
    assert sink.events[-2]["details"]["needed"] == "permission export"
    assert sink.events[-2]["subject"] == "POST /evidence/export"
