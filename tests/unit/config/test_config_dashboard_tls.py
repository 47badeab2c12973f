"""The dashboard's security keys in the site schema: proxies, cookie flag, proxy header and ``tls``."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.load import load_site
from config.schema import Dashboard
from config.yamlfile import ConfigError
from tests.conftest import ROOT
from tests.tlscerts import make_pki

CANARY = "canary-dashboard-key-password"
SKELETON = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"
PAIR = "  tls: {cert_file: certs/server.pem, key_file: certs/server-key.pem}\n"


def site_with_dashboard(folder: Path, dashboard: str) -> Path:
    """The skeleton site (secrets made absolute) with this ``dashboard:`` section."""
    text = SKELETON.read_text(encoding="utf-8").replace("../../../config/", f"{ROOT}/config/")
    text = re.sub(r"\n(dashboard|storage):.*?(?=\n\S|\Z)", "", text, flags=re.S).rstrip() + "\n"
    path = folder / "site.yaml"
    path.write_text(text + "dashboard:\n" + dashboard, encoding="utf-8")
    return path


def test_defaults_keep_the_old_behaviour() -> None:
    dashboard = Dashboard()
    assert (dashboard.trusted_proxies, dashboard.secure_cookies, dashboard.tls) == ([], None, None)
    assert dashboard.proxy_user_header == "X-Forwarded-User"


def test_proxies_take_addresses_and_networks_of_both_families() -> None:
    dashboard = Dashboard(trusted_proxies=["127.0.0.1", "10.1.0.0/24", "::1", "fd00::/8"])
    assert len(dashboard.trusted_proxies) == 4


@pytest.mark.parametrize("bad", ["proxy.example", "10.0.0.0/33", "", "10.0.0.1 "])
def test_a_proxy_that_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="must be an IP address or a CIDR network"):
        Dashboard(trusted_proxies=[bad])


def test_tls_and_insecure_cookies_contradict_each_other() -> None:
    with pytest.raises(ValidationError, match="always Secure"):
        Dashboard(tls={"cert_file": "a.pem", "key_file": "b.pem"}, secure_cookies=False)
    assert Dashboard(tls={"cert_file": "a.pem", "key_file": "b.pem"}, secure_cookies=True).secure_cookies


def test_tls_files_are_relative_to_the_config_file_and_the_password_comes_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pki(tmp_path / "certs", password=CANARY.encode())
    monkeypatch.setenv("FACWATCH_TEST_KEY_PASSWORD", CANARY)
    site = load_site(site_with_dashboard(tmp_path, "  tls:\n    cert_file: certs/server.pem\n"
                                         "    key_file: certs/server-key.pem\n"
                                         "    key_password: {env: FACWATCH_TEST_KEY_PASSWORD}\n"))
    tls = site.dashboard_tls
    assert tls is not None and tls.cert_file == tmp_path / "certs" / "server.pem"
    assert tls.key_password is not None and tls.key_password.reveal() == CANARY
    assert CANARY not in repr(site) + repr(tls) + str(site.config.model_dump())


def test_the_context_is_tls12_or_later_without_compression(tmp_path: Path) -> None:
    make_pki(tmp_path / "certs")
    site = load_site(site_with_dashboard(tmp_path, PAIR))
    assert site.dashboard_tls is not None
    context = site.dashboard_tls.context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_a_key_from_another_pair_is_refused_with_file_line_and_path(tmp_path: Path) -> None:
    make_pki(tmp_path / "certs")
    make_pki(tmp_path / "other")
    path = site_with_dashboard(tmp_path, "  tls: {cert_file: certs/server.pem, key_file: other/server-key.pem}\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert re.search(r"site\.yaml:\d+: dashboard\.tls\.key_file: other/server-key\.pem is not the key of the "
                     r"certificate in certs/server\.pem", str(caught.value))


def test_a_wrong_password_is_reported_without_showing_it(tmp_path: Path) -> None:
    make_pki(tmp_path / "certs", password=b"the-real-password")
    (tmp_path / "pw").write_text(CANARY, encoding="utf-8")
    path = site_with_dashboard(tmp_path, PAIR.replace("}", ", key_password: {file: pw}}"))
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert "wrong key_password" in str(caught.value)
    assert CANARY not in str(caught.value) and "the-real-password" not in str(caught.value)
