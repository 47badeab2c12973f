"""The start-up policy with direct HTTPS: TLS counts like a trusted proxy, and cookies are always Secure."""

from __future__ import annotations

import pytest

from dashboard.serve import HSTS, PLAIN_HTTP, ServeRefused, WebSecurity, web_access, with_hsts

TLS = WebSecurity(tls=True)


def test_accounts_over_the_network_are_allowed_with_tls() -> None:
    access = web_access(3, "0.0.0.0", TLS)
    assert access.accounts and access.secure_cookies


def test_without_tls_the_same_set_up_is_refused_and_the_message_names_dashboard_tls() -> None:
    with pytest.raises(ServeRefused, match=r"dashboard\.tls"):
        web_access(3, "0.0.0.0")
    assert "dashboard.tls" in PLAIN_HTTP


def test_cookies_are_secure_with_tls_even_when_asked_otherwise() -> None:
    assert web_access(1, "10.0.0.5", WebSecurity(secure_cookies=False, tls=True)).secure_cookies
    assert web_access(1, "127.0.0.1", TLS).secure_cookies  # loopback over HTTPS: still Secure


def test_tls_keeps_the_trusted_proxies() -> None:
    access = web_access(1, "0.0.0.0", WebSecurity(trusted_proxies=("10.1.0.0/24",), tls=True))
    assert access.trusted_proxies == ("10.1.0.0/24",)


def test_tls_does_not_replace_accounts_on_the_network() -> None:
    with pytest.raises(ServeRefused, match="without accounts"):
        web_access(0, "0.0.0.0", TLS)
    assert web_access(0, "127.0.0.1", TLS).accounts is False


def test_every_response_gets_the_hsts_header() -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def app(environ, start_response):
        start_response("404 NOT FOUND", [("Content-Type", "text/plain")])
        return [b"gone"]

    body = with_hsts(app)({}, lambda status, headers, exc_info=None: seen.append((status, headers)))
    assert body == [b"gone"]
    assert seen == [("404 NOT FOUND", [("Content-Type", "text/plain"), HSTS])]
    assert HSTS == ("Strict-Transport-Security", "max-age=31536000")
