"""SNMP hardening (RELIABILITY S7): authPriv with SHA-2 + AES by default, SHA-1 only with a logged waiver,
MD5/DES/authNoPriv never, v2c only with insecure: true, and pysnmp's MD5/DES defaults unreachable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pysnmp.hlapi.v3arch.asyncio import UsmUserData
from pysnmp.proto.secmod.rfc3414.auth import hmacmd5
from pysnmp.proto.secmod.rfc3414.priv import des

import config.schema as schema
from collectors.profile import DeviceProfile, load_profiles
from collectors.snmp import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SnmpPoller, auth_data, security_notes
from config.load import ResolvedCommunity, ResolvedV3, load_site
from config.schema import Device
from config.secret import Secret
from config.yamlfile import ConfigError

ROOT = Path(__file__).resolve().parents[3]
AUTH_CANARY = "canary-auth-5d1e0a-never-print"
PRIV_CANARY = "canary-priv-77b2c4-never-print"
COMMUNITY_CANARY = "canary-community-0c9e"

SITE = """\
site: {{id: t, name: Test}}
rooms: [{{id: r1, name: Room 1}}]
credentials:
  v3:
    type: snmp_v3
    user: facwatch
    auth_protocol: {auth}
    auth_key: {{file: auth}}
    priv_protocol: aes128
    priv_key: {{file: priv}}
{waiver}devices:
  - {{id: ups, class: ups, profile: ups/ietf_rfc1628, room: r1, host: 10.0.0.1, port: 161, credential: v3}}
"""


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return load_profiles()


def site_file(tmp_path: Path, auth: str, waiver: str | None = None) -> Path:
    (tmp_path / "auth").write_text(AUTH_CANARY)
    (tmp_path / "priv").write_text(PRIV_CANARY)
    line = f'    security_waiver: "{waiver}"\n' if waiver is not None else ""
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(auth=auth, waiver=line), encoding="utf-8")
    return path


def device(version: str = "3") -> Device:
    return Device.model_validate({"id": "ups", "class": "ups", "profile": "ups/ietf_rfc1628", "room": "r1",
                                  "host": "10.0.0.1", "port": 161, "credential": "v3",
                                  "snmp": {"version": version}})


def test_sha2_and_aes_load_without_any_waiver(tmp_path: Path, profiles) -> None:
    site = load_site(site_file(tmp_path, "sha256"), profiles)
    assert site.credential("v3").security_waiver is None
    assert security_notes(site.device("ups"), site.credential("v3")) == []


def test_sha1_with_a_waiver_loads_and_is_logged_at_start(tmp_path: Path, profiles,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    site = load_site(site_file(tmp_path, "sha", "APC NMC2 firmware offers MD5 or SHA-1 only"), profiles)
    with caplog.at_level(logging.WARNING, logger="collectors.snmp"):
        SnmpPoller(site.device("ups"), site.profile(site.device("ups")), site.credential("v3"), engine=object())
    assert "ups (10.0.0.1:161, credential v3): SHA-1 authentication, waived: APC NMC2 firmware" in caplog.text
    assert AUTH_CANARY not in caplog.text and PRIV_CANARY not in caplog.text


def test_a_trap_credential_with_a_sha1_waiver_is_logged_when_the_listener_is_built(
        tmp_path: Path, profiles, caplog: pytest.LogCaptureFixture) -> None:
    from collectors.traps import TrapReceiver

    path = site_file(tmp_path, "sha", "APC NMC2 firmware offers MD5 or SHA-1 only")
    path.write_text(path.read_text() + "traps: {listen: '127.0.0.1:31399', credentials: [v3]}\n")
    site = load_site(path, profiles)
    with caplog.at_level(logging.WARNING, logger="collectors.traps"):
        TrapReceiver(site, lambda readings: None, lambda events: None, profiles={})
    assert "trap receiver: credential v3 uses SHA-1 authentication, waived: APC NMC2 firmware" in caplog.text
    assert AUTH_CANARY not in caplog.text and PRIV_CANARY not in caplog.text


def test_sha1_without_a_waiver_is_a_config_error_that_says_what_to_do(tmp_path: Path, profiles) -> None:
    path = site_file(tmp_path, "sha")
    with pytest.raises(ConfigError) as caught:
        load_site(path, profiles)
    [line] = str(caught.value).splitlines()
    assert line.startswith(f"{path}:4: credentials.v3.security_waiver: SHA-1 (sha) is below the SHA-2"), line
    assert 'use sha256 (SHA-2), or add security_waiver: "<why this device cannot>"' in line
    assert load_site(site_file(tmp_path, "sha", "UPS card offers SHA-1 at most"), profiles)


@pytest.mark.parametrize(("auth", "message"), [
    ("md5", "MD5 is broken and never accepted"),
    ("hmac-md5", "MD5 is broken and never accepted"),
    ("none", "SNMPv3 without authentication is not accepted"),
])
def test_weak_auth_is_refused_even_with_a_waiver(tmp_path: Path, profiles, auth: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site(site_file(tmp_path, auth, "old card that only offers this"), profiles)
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1  # the waiver is not blamed as well


def test_pysnmp_defaults_are_md5_and_des_which_is_why_protocols_are_always_explicit() -> None:
    default = UsmUserData("u", authKey="k" * 8, privKey="p" * 8)
    assert (default.authentication_protocol, default.privacy_protocol) == (hmacmd5.HmacMd5.SERVICE_ID,
                                                                          des.Des.SERVICE_ID)


@pytest.mark.parametrize("auth", sorted(AUTH_PROTOCOLS))
@pytest.mark.parametrize("priv", sorted(PRIV_PROTOCOLS))
def test_every_accepted_combination_is_explicit_sha_and_aes(auth: str, priv: str) -> None:
    credential = ResolvedV3("u", auth, Secret(AUTH_CANARY), priv, Secret(PRIV_CANARY))
    data = auth_data(device(), credential)
    assert data.authentication_protocol not in (hmacmd5.HmacMd5.SERVICE_ID,)
    assert data.privacy_protocol != des.Des.SERVICE_ID
    assert AUTH_CANARY not in repr(data) and PRIV_CANARY not in repr(data)


@pytest.mark.parametrize(("auth", "priv"), [("md5", "aes128"), ("sha256", "des"), ("", "aes128"), ("sha", "")])
def test_a_credential_that_bypassed_the_schema_never_reaches_pysnmp(auth: str, priv: str) -> None:
    credential = ResolvedV3("u", auth, Secret(AUTH_CANARY), priv, Secret(PRIV_CANARY))
    with pytest.raises(ValueError) as caught:
        auth_data(device(), credential)
    assert AUTH_CANARY not in str(caught.value)


def test_v2c_is_logged_as_clear_text_at_start() -> None:
    [note] = security_notes(device("2c"), ResolvedCommunity(Secret(COMMUNITY_CANARY)))
    assert "SNMP v2c, the community travels in clear text (allowed by insecure: true)" in note
    assert COMMUNITY_CANARY not in note


def test_shipped_demo_is_sha2_or_waived_and_v2c_only_where_insecure(profiles) -> None:
    site = load_site(ROOT / "config" / "sites" / "demo.yaml", profiles)
    for name, credential in site.config.credentials.items():
        if isinstance(credential, schema.SnmpV3Credential):
            assert credential.auth_protocol not in schema.WEAK_AUTH_PROTOCOLS or credential.security_waiver, name
        else:
            assert credential.insecure, name


def test_every_credential_slot_is_a_secret_reference_and_resolves_to_secret() -> None:
    secret_fields = {"auth_key", "priv_key", "community"}
    for model in (schema.SnmpV3Credential, schema.SnmpCommunityCredential):
        for name, info in model.model_fields.items():
            if name in secret_fields:
                assert info.annotation is schema.SecretRef, (model.__name__, name)
    for resolved in (ResolvedV3, ResolvedCommunity):
        for name, annotation in resolved.__annotations__.items():
            if name in secret_fields:
                assert annotation == "Secret", (resolved.__name__, name)


def test_keys_appear_in_no_poller_repr_log_or_site_dump(tmp_path: Path, profiles,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    site = load_site(site_file(tmp_path, "sha", "APC NMC2 firmware offers MD5 or SHA-1 only"), profiles)
    with caplog.at_level(logging.DEBUG):
        poller = SnmpPoller(site.device("ups"), site.profile(site.device("ups")), site.credential("v3"),
                            engine=object())
    text = caplog.text + repr(poller._auth) + repr(site) + repr(site.credentials) + str(site.config.model_dump())
    assert AUTH_CANARY not in text and PRIV_CANARY not in text
