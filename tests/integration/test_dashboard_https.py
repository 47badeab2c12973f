"""Direct HTTPS (``dashboard.tls``): the real cheroot server, a test CA, urllib/http.client as the browser.

Ports 31100–31199 on 127.0.0.1 only. Both ways facwatch starts the dashboard are covered: the runtime's
``start_dashboard`` (``run``/``demo``) in-process, and ``facwatch dashboard -c site.yaml`` as a subprocess
with a user made by ``facwatch users add``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from auth.service import AuthService
from config.load import load_site
from facwatch.runtime import DashboardThread, open_store, start_dashboard
from tests.conftest import ROOT
from tests.peers import PeerProcess, wait_for_tcp
from tests.tlscerts import Pki, make_pki

pytestmark = pytest.mark.integration

BASE_PORT = 31100
PASSWORD_CANARY = "canary-tls-key-password-7f3a"
USER, USER_PASSWORD = "alice", "correct-horse-battery-31"
FACWATCH = [sys.executable, "-m", "facwatch.cli"]
SKELETON = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"


def site_file(folder: Path, port: int, key_password: str = "env") -> Path:
    """The skeleton site with its secrets made absolute, its store in ``folder`` and the dashboard on HTTPS."""
    text = SKELETON.read_text(encoding="utf-8").replace("../../../config/", f"{ROOT}/config/")
    text = re.sub(r"\n(dashboard|storage):.*?(?=\n\S|\Z)", "", text, flags=re.S).rstrip() + "\n"
    text += "storage:\n  path: var/facwatch.db\n"
    secret = "{env: FACWATCH_TEST_TLS_KEY_PASSWORD}" if key_password == "env" else "{file: certs/key-password}"
    text += (f"dashboard:\n  host: 127.0.0.1\n  port: {port}\n  tls:\n    cert_file: certs/server.pem\n"
             f"    key_file: certs/server-key.pem\n    key_password: {secret}\n")
    path = folder / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    made = make_pki(tmp_path / "certs", password=PASSWORD_CANARY.encode())
    (tmp_path / "certs" / "key-password").write_text(PASSWORD_CANARY + "\n", encoding="utf-8")
    return made


def trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


@pytest.fixture
def served(tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture) -> Iterator[DashboardThread]:
    """``start_dashboard`` over HTTPS with one account in the store; the key password read from a file."""
    site = load_site(site_file(tmp_path, BASE_PORT, key_password="file"))
    store = open_store(site, tmp_path / "data")
    AuthService.open(store.path).add_user(USER, "operator", USER_PASSWORD, actor="test", source="test")
    caplog.set_level(logging.DEBUG)
    web = start_dashboard(site, store)
    try:
        yield web
    finally:
        web.stop()
        store.close()


def get(url: str, context: ssl.SSLContext) -> tuple[int, dict[str, str], str, list[str]]:
    """Status, headers, body and every Set-Cookie of a GET (4xx answers too)."""
    try:
        response = urllib.request.urlopen(url, context=context, timeout=10)
    except urllib.error.HTTPError as exc:
        response = exc
    cookies = response.headers.get_all("Set-Cookie") or []
    return response.status, dict(response.headers), response.read().decode(errors="replace"), cookies


def sign_in(port: int, context: ssl.SSLContext) -> tuple[int, list[str]]:
    """The login form's round trip as a browser makes it: GET /login, then POST with its CSRF token."""
    status, _, page, cookies = get(f"https://127.0.0.1:{port}/login", context)
    assert status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None, page[:500]
    jar = SimpleCookie()
    for header in cookies:
        jar.load(header)
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())
    body = urlencode({"username": USER, "password": USER_PASSWORD, "csrf_token": token.group(1), "next": "/"})
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status, response.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()


def session_cookie(cookies: list[str]) -> str:
    [header] = [c for c in cookies if c.startswith("facwatch_session=")]
    return header


def test_login_page_over_https_with_hsts_and_a_secure_session_cookie(served: DashboardThread, pki: Pki) -> None:
    assert served.url == f"https://127.0.0.1:{BASE_PORT}/"
    status, headers, page, _ = get(f"{served.url}login", trusting(pki))
    assert status == 200 and "password" in page.lower()
    assert headers["Strict-Transport-Security"] == "max-age=31536000"

    status, cookies = sign_in(BASE_PORT, trusting(pki))

    assert status == 303
    flags = {part.strip().lower() for part in session_cookie(cookies).split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict"} <= flags


def test_plain_http_to_the_tls_port_gets_no_page(served: DashboardThread) -> None:
    with socket.create_connection(("127.0.0.1", BASE_PORT), timeout=10) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # cheroot may answer 400 and reset, or just reset
            while chunk := sock.recv(65536):
                answer += chunk
    assert not answer.startswith(b"HTTP/1.1 200")
    assert b"password" not in answer.lower() and b"<html" not in answer.lower()


def test_a_client_that_does_not_trust_the_ca_fails_verification(served: DashboardThread) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(served.url, context=ssl.create_default_context(), timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused(served: DashboardThread, pki: Pki) -> None:
    old = trusting(pki)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", BASE_PORT), timeout=10) as raw, \
            pytest.raises(ssl.SSLError) as caught:
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    assert caught.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"  # the server's alert, not a client-side limit
    modern = trusting(pki)
    modern.minimum_version = modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", BASE_PORT), timeout=10) as raw, \
            modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.2"


def test_dash_callbacks_without_credentials_give_no_data(served: DashboardThread, pki: Pki) -> None:
    body = json.dumps({"output": "wall-tiles.children", "outputs": {"id": "wall-tiles", "property": "children"},
                       "inputs": [], "changedPropIds": []}).encode()
    request = urllib.request.Request(f"{served.url}_dash-update-component", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=trusting(pki), timeout=10)
    assert caught.value.code in (401, 403)
    assert b"response" not in caught.value.read()


def test_key_password_is_in_no_log(served: DashboardThread, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    get(f"{served.url}login", trusting(pki))
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(served.url, context=ssl.create_default_context(), timeout=10)
    deadline = time.monotonic() + 10  # cheroot logs the refused handshake from its worker thread
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.1)
    assert caplog.records  # something was logged (the refused handshake at least), and none of it is the password
    assert PASSWORD_CANARY not in caplog.text


def test_facwatch_dashboard_command_serves_https(tmp_path: Path, pki: Pki) -> None:
    port = BASE_PORT + 1
    config = site_file(tmp_path, port)
    env = {**os.environ, "FACWATCH_TEST_TLS_KEY_PASSWORD": PASSWORD_CANARY}
    check = subprocess.run([*FACWATCH, "check", "-c", str(config)], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=60)
    assert check.returncode == 0, check.stderr
    added = subprocess.run([*FACWATCH, "users", "-c", str(config), "add", USER, "--role", "operator",
                            "--password-stdin"], input=USER_PASSWORD + "\n", capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=60)
    assert added.returncode == 0, added.stderr
    server = PeerProcess([*FACWATCH, "dashboard", "-c", str(config)], tmp_path / "dashboard.log", env=env)
    try:
        wait_for_tcp(port, timeout=60)
        status, headers, page, _ = get(f"https://127.0.0.1:{port}/login", trusting(pki))
        assert status == 200 and "password" in page.lower()
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        status, cookies = sign_in(port, trusting(pki))
        assert status == 303 and "secure" in session_cookie(cookies).lower()
    finally:
        server.stop()
    output = server.output() + check.stdout + check.stderr + added.stdout + added.stderr
    assert f"dashboard on https://127.0.0.1:{port}/" in output
    assert PASSWORD_CANARY not in output


def test_wrong_key_password_stops_the_command_before_it_listens(tmp_path: Path, pki: Pki) -> None:
    config = site_file(tmp_path, BASE_PORT + 2)
    env = {**os.environ, "FACWATCH_TEST_TLS_KEY_PASSWORD": "not-" + PASSWORD_CANARY}
    done = subprocess.run([*FACWATCH, "dashboard", "-c", str(config)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "dashboard.tls.key_file" in done.stderr and "wrong key_password" in done.stderr
    assert PASSWORD_CANARY not in done.stdout + done.stderr
