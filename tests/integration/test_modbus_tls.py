"""Modbus/TCP Security end to end: facwatch's poller against pymodbus's own TLS server (the simulator).

Ports (fixed for this module, 31000-31099): 31002 the simulated site, 31010-31019 single gateways.
Certificates are made per module by ``collectors.modbus_certs``: CA "A" (trusted by both sides), CA
"B" (a stranger), a device certificate for 127.0.0.1 + device.test, an expired one, a client
certificate with an encrypted key whose password is a canary that must never be logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collectors.modbus import ModbusClientPool, ModbusPoller
from collectors.modbus_certs import issue, make_ca, write_pair
from collectors.modbus_tls import ModbusTlsFiles, server_context
from collectors.model import Quality
from collectors.profile import PROFILE_DIR, load_profile
from collectors.scheduler import make_poller
from config.load import Site, load_site
from config.secret import Secret
from simulators.modbus_server import ModbusGateway
from simulators.site import SiteSimulator

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
SITE_PORT = 31002
GATEWAY_PORT = 31010
PASSWORD = "canary-modbus-key-5e1d"  # must never appear in a log line or an error
PASSWORD_ENV = "FACWATCH_TEST_MODBUS_KEY_PASSWORD"
PROFILE_ID = "thsensor/generic_xymd02"
PROFILES = {PROFILE_ID: load_profile(PROFILE_DIR / f"{PROFILE_ID}.yaml", PROFILE_ID)}


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path  # CA A
    device: tuple[Path, Path]  # issued by A for 127.0.0.1 and device.test
    expired: tuple[Path, Path]  # issued by A, expired yesterday
    stranger: tuple[Path, Path]  # issued by CA B for 127.0.0.1
    client: tuple[Path, Path]  # issued by A, key encrypted with PASSWORD
    stranger_client: tuple[Path, Path]  # issued by B


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_a, ca_b = make_ca("facwatch test CA A"), make_ca("stranger CA B")
    write_pair(ca_a, folder / "ca.pem", folder / "ca.key")

    def pair(name: str, leaf, password: str | None = None) -> tuple[Path, Path]:
        files = (folder / f"{name}.pem", folder / f"{name}.key")
        write_pair(leaf, *files, password=password)
        return files

    return Pki(folder, folder / "ca.pem",
               device=pair("device", issue(ca_a, HOST, hosts=(HOST, "device.test"))),
               expired=pair("expired", issue(ca_a, HOST, hosts=(HOST,), expired=True)),
               stranger=pair("stranger", issue(ca_b, HOST, hosts=(HOST,))),
               client=pair("client", issue(ca_a, "facwatch", client=True, role="facwatch-reader"), PASSWORD),
               stranger_client=pair("stranger-client", issue(ca_b, "facwatch", client=True)))


@pytest.fixture(autouse=True)
def key_password(monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


@pytest.fixture(autouse=True)
def everything_logged(caplog) -> None:
    caplog.set_level(logging.DEBUG)


def tls_options(pki: Pki, **changes) -> dict:
    options = {"ca_file": str(pki.ca), "cert_file": str(pki.client[0]), "key_file": str(pki.client[1]),
               "key_password": {"env": PASSWORD_ENV},
               "simulator": {"cert_file": str(pki.device[0]), "key_file": str(pki.device[1])}}
    options.update(changes)
    return {key: value for key, value in options.items() if value is not None}


def write_site(folder: Path, port: int, tls: dict | None) -> Site:
    modbus = {"unit_id": 1, "timeout_s": 1.0, "retries": 0, **({"tls": tls} if tls is not None else {})}
    device = {"id": "inlet", "class": "thsensor", "profile": PROFILE_ID, "room": "r1", "host": HOST,
              "port": port, "poll_interval_s": 1.0, "modbus": modbus,
              "simulation": {"temperature_c": 22.0, "humidity_pct": 40, "noise": 0}}
    document = {"site": {"id": "tls", "name": "TLS"}, "rooms": [{"id": "r1", "name": "Room 1"}], "devices": [device]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "site.yaml"
    path.write_text(json.dumps(document, indent=1))  # JSON is YAML
    return load_site(path, profiles=PROFILES)


def server_files(pki: Pki, cert: tuple[Path, Path], ca: Path | None = None) -> ModbusTlsFiles:
    return ModbusTlsFiles(ca_file=ca or pki.ca, server_name=HOST, server_cert_file=cert[0], server_key_file=cert[1])


@contextlib.asynccontextmanager
async def gateway(sslctx: ssl.SSLContext | None, port: int = GATEWAY_PORT) -> AsyncIterator[ModbusGateway]:
    """One simulated inlet sensor (unit 1) with fixed values, over TLS with ``sslctx`` or plain TCP without."""
    server = ModbusGateway(HOST, port, {1: PROFILES[PROFILE_ID]}, sslctx=sslctx)
    await server.start()
    try:
        await server.update(1, {"ambient.temperature": 215, "ambient.humidity": 455})
        yield server
    finally:
        await server.stop()


async def poll_once(site: Site, tls: ModbusTlsFiles | None):
    device = site.devices[0]
    poller = ModbusPoller(device, site.profile(device), pool=ModbusClientPool(), tls=tls)
    try:
        return await poller.poll()
    finally:
        await poller.close()


def assert_no_canary(caplog, *texts: str | None) -> None:
    assert PASSWORD not in caplog.text
    for text in texts:
        assert text is None or PASSWORD not in text


# --- the same site file drives the simulator and the collector -----------------------------------

async def test_verified_connection_gives_real_readings(pki, tmp_path, caplog):
    site = write_site(tmp_path, SITE_PORT, tls_options(pki))
    async with SiteSimulator(site, seed=1):
        poller = make_poller(site, site.devices[0])  # the collector's own wiring: credential_for → tls
        try:
            result = await poller.poll()
        finally:
            await poller.close()
    assert result.error is None, result.error
    readings = {r.point: r for r in result.readings}
    assert readings["ambient.temperature"].quality is Quality.GOOD
    assert 15 < readings["ambient.temperature"].value < 30
    assert_no_canary(caplog)


async def test_simulator_endpoint_says_tls(pki, tmp_path):
    site = write_site(tmp_path, SITE_PORT, tls_options(pki))
    [row] = SiteSimulator(site).endpoints()
    assert row["tls"] is True


async def test_server_name_other_than_the_dialled_address_is_checked(pki, tmp_path):
    right = write_site(tmp_path, GATEWAY_PORT, tls_options(pki, server_name="device.test"))
    wrong = write_site(tmp_path / "wrong", GATEWAY_PORT, tls_options(pki, server_name="ups.example"))
    async with gateway(server_context(server_files(pki, pki.device))):
        good = await poll_once(right, right.modbus_tls["inlet"])
        bad = await poll_once(wrong, wrong.modbus_tls["inlet"])
    assert good.error is None and good.readings
    assert bad.readings == []
    assert "TLS: certificate verify failed: Hostname mismatch" in bad.error


async def test_server_certificate_from_another_ca_is_a_device_error(pki, tmp_path, caplog):
    site = write_site(tmp_path, GATEWAY_PORT, tls_options(pki))
    async with gateway(server_context(server_files(pki, pki.stranger))):
        result = await poll_once(site, site.modbus_tls["inlet"])
    assert result.readings == []
    assert result.error.startswith(f"{HOST}:{GATEWAY_PORT} (TLS) unit 1: TLS: certificate verify failed:")
    assert "unable to get local issuer certificate" in result.error
    assert_no_canary(caplog, result.error)


async def test_expired_server_certificate_is_a_device_error(pki, tmp_path):
    site = write_site(tmp_path, GATEWAY_PORT, tls_options(pki))
    async with gateway(server_context(server_files(pki, pki.expired))):
        result = await poll_once(site, site.modbus_tls["inlet"])
    assert result.readings == []
    assert "TLS: certificate verify failed: certificate has expired" in result.error


async def test_facwatch_without_a_client_certificate_is_refused_by_the_device(pki, tmp_path, caplog):
    site = write_site(tmp_path, GATEWAY_PORT, tls_options(pki, cert_file=None, key_file=None, key_password=None))
    async with gateway(server_context(server_files(pki, pki.device))):
        result = await poll_once(site, site.modbus_tls["inlet"])
    assert result.readings == []
    assert "TLS:" in result.error and "refuse facwatch's client certificate" in result.error
    assert_no_canary(caplog, result.error)


async def test_client_certificate_from_another_ca_is_refused_by_the_device(pki, tmp_path):
    stranger = {"cert_file": str(pki.stranger_client[0]), "key_file": str(pki.stranger_client[1]),
                "key_password": None}
    site = write_site(tmp_path, GATEWAY_PORT, tls_options(pki, **stranger))
    async with gateway(server_context(server_files(pki, pki.device))):
        result = await poll_once(site, site.modbus_tls["inlet"])
    assert result.readings == []
    assert "TLS:" in result.error and "refuse facwatch's client certificate" in result.error


async def test_simulator_refuses_a_plain_tls_client_without_certificate(pki):
    """A generic TLS client (not facwatch) that verifies the server but has no certificate gets nothing."""
    client = ssl.create_default_context(cafile=str(pki.ca))
    read_request = bytes.fromhex("0001 0000 0006 01 04 0001 0002".replace(" ", ""))
    async with gateway(server_context(server_files(pki, pki.device))):
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(HOST, GATEWAY_PORT, ssl=client, server_hostname=HOST)
            try:
                writer.write(read_request)
                await writer.drain()
                await asyncio.wait_for(reader.readexactly(9), timeout=3)
            finally:
                writer.close()


async def test_plain_tcp_server_on_the_port_is_an_error_not_a_fallback(pki, tmp_path, caplog):
    site = write_site(tmp_path, GATEWAY_PORT, tls_options(pki))
    async with gateway(None):  # plain Modbus TCP: would answer any plaintext request with real values
        result = await poll_once(site, site.modbus_tls["inlet"])
        plain = await poll_once(write_site(tmp_path / "plain", GATEWAY_PORT, None), None)
    assert plain.error is None and plain.readings  # the server does answer plaintext...
    assert result.readings == []  # ...but a TLS device never asks in plaintext
    assert "TLS:" in result.error
    assert_no_canary(caplog, result.error)


async def test_tls_device_with_nothing_listening_is_unreachable(pki, tmp_path):
    site = write_site(tmp_path, GATEWAY_PORT + 1, tls_options(pki))
    with socket.socket() as probe:
        assert probe.connect_ex((HOST, GATEWAY_PORT + 1)) != 0
    result = await poll_once(site, site.modbus_tls["inlet"])
    assert result.readings == [] and "cannot connect" in result.error


async def test_wrong_key_password_is_a_load_error_without_the_password(pki, tmp_path, monkeypatch, caplog):
    from config.yamlfile import ConfigError

    monkeypatch.setenv(PASSWORD_ENV, "not-" + PASSWORD)
    with pytest.raises(ConfigError) as caught:
        write_site(tmp_path, GATEWAY_PORT, tls_options(pki))
    assert "devices[0].modbus.tls.key_password: key_password does not decrypt key_file" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    # and the same at poll time, should the key change after `facwatch check`
    files = ModbusTlsFiles(ca_file=pki.ca, server_name=HOST, cert_file=pki.client[0], key_file=pki.client[1],
                           key_password=Secret("wrong-" + PASSWORD))
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    site = write_site(tmp_path / "ok", GATEWAY_PORT, tls_options(pki))
    result = await poll_once(site, files)
    assert result.readings == [] and "TLS: cannot load certificates" in result.error
    assert_no_canary(caplog, result.error)
