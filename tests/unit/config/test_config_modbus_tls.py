"""``modbus.tls`` in a site file: paths relative to the file, password by reference, 502 warned, errors located."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from collectors.modbus_certs import write_modbus_pki
from collectors.modbus_tls import ModbusTlsFiles
from collectors.profile import PROFILE_DIR, load_profile
from collectors.scheduler import make_poller
from config.load import load_site
from config.yamlfile import ConfigError

PROFILE_ID = "thsensor/generic_xymd02"
PROFILES = {PROFILE_ID: load_profile(PROFILE_DIR / f"{PROFILE_ID}.yaml", PROFILE_ID)}
PASSWORD = "canary-config-key-3c9e"
PASSWORD_ENV = "FACWATCH_TEST_MODBUS_TLS_PASSWORD"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch) -> Path:
    write_modbus_pki(tmp_path / "pki", client_key_password=PASSWORD)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return tmp_path


def tls(**changes) -> dict:
    options = {"ca_file": "pki/ca.pem", "cert_file": "pki/facwatch.pem", "key_file": "pki/facwatch.key",
               "key_password": {"env": PASSWORD_ENV}}
    return {key: value for key, value in {**options, **changes}.items() if value is not None}


def site_file(folder: Path, tls_options: dict, port: int = 802) -> Path:
    device = {"id": "inlet", "class": "thsensor", "profile": PROFILE_ID, "room": "r1", "host": "10.0.0.20",
              "port": port, "modbus": {"unit_id": 1, "tls": tls_options}}
    document = {"site": {"id": "t", "name": "T"}, "rooms": [{"id": "r1", "name": "R"}], "devices": [device]}
    path = folder / "site.yaml"
    path.write_text(json.dumps(document, indent=1))
    return path


def test_paths_are_relative_to_the_config_file_and_the_password_is_a_secret(folder):
    site = load_site(site_file(folder, tls()), PROFILES)
    files = site.modbus_tls["inlet"]
    assert files.ca_file == folder / "pki" / "ca.pem" and files.key_file == folder / "pki" / "facwatch.key"
    assert files.server_name == "10.0.0.20"  # default: the device host
    assert files.key_password.reveal() == PASSWORD and PASSWORD not in repr(site)
    assert site.credential_for(site.device("inlet")) is files
    assert site.warnings == ()


def test_server_name_overrides_the_host(folder):
    site = load_site(site_file(folder, tls(server_name="inlet.dc1.example")), PROFILES)
    assert site.modbus_tls["inlet"].server_name == "inlet.dc1.example"


def test_tls_on_port_502_is_a_warning_not_an_error(folder, caplog):
    caplog.set_level(logging.WARNING)
    site = load_site(site_file(folder, tls(), port=502), PROFILES)
    [warning] = site.warnings
    assert warning.path == "devices[0].port" and "Modbus/TCP Security uses port 802" in warning.message
    assert "Modbus/TCP Security uses port 802" in caplog.text


def test_a_plain_device_has_no_tls_files(folder):
    path = site_file(folder, tls())
    document = json.loads(path.read_text())
    del document["devices"][0]["modbus"]["tls"]
    path.write_text(json.dumps(document))
    site = load_site(path, PROFILES)
    assert site.modbus_tls == {} and site.credential_for(site.device("inlet")) is None


def test_collector_wiring_hands_the_tls_files_to_the_poller(folder):
    site = load_site(site_file(folder, tls()), PROFILES)
    poller = make_poller(site, site.device("inlet"))
    assert isinstance(poller._tls, ModbusTlsFiles) and poller._tls is site.modbus_tls["inlet"]


@pytest.mark.parametrize(("options", "expected"), [
    (tls(ca_file="pki/nope.pem"), "devices[0].modbus.tls.ca_file: cannot read pki/nope.pem"),
    (tls(key_file=None), "devices[0].modbus.tls: give cert_file and key_file together"),
    (tls(cert_file=None, key_file=None), "devices[0].modbus.tls: key_password needs key_file"),
    ({**tls(), "verify": False}, "verification cannot be turned off"),
    ({**tls(), "insecure": True}, "verification cannot be turned off"),
    (tls(key_password={"env": "FACWATCH_TEST_UNSET_PASSWORD"}),
     "devices[0].modbus.tls.key_password: environment variable FACWATCH_TEST_UNSET_PASSWORD is not set"),
    (tls(key_password=None), "devices[0].modbus.tls.key_file: pki/facwatch.key is encrypted; give key_password"),
    (tls(simulator={"cert_file": "pki/device.pem", "key_file": "pki/gone.key"}),
     "devices[0].modbus.tls.simulator.key_file: cannot read pki/gone.key"),
])
def test_bad_tls_options_are_located_errors(folder, monkeypatch, options, expected):
    monkeypatch.delenv("FACWATCH_TEST_UNSET_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_site(site_file(folder, options), PROFILES)
    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_wrong_password_error_never_quotes_it(folder, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "wrong-" + PASSWORD)
    with pytest.raises(ConfigError) as caught:
        load_site(site_file(folder, tls()), PROFILES)
    assert "key_password: key_password does not decrypt key_file" in str(caught.value)
    assert PASSWORD not in str(caught.value)
