"""The site loader: the demo passes; everything else is refused with a clear, located, secret-free message."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.profile import DeviceProfile, load_profiles
from config.load import ResolvedCommunity, ResolvedV3, Site, load_site, site_from_document
from config.yamlfile import ConfigError, parse_yaml

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"  # a stable fixture: line numbers below refer to it
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
CANARY = "canary-3f9b1c-must-never-print"

# A one-device site whose credentials section is filled in per test (secrets relative to tmp_path).
SITE = """\
site: {{id: t, name: Test}}
rooms: [{{id: r1, name: Room 1}}]
credentials:
{credentials}
devices:
  - {{id: ups, class: ups, profile: ups/ietf_rfc1628, room: r1, host: 10.0.0.1, port: 161, credential: v3}}
"""
V3 = """\
  v3:
    type: snmp_v3
    user: facwatch
    auth_protocol: sha256
    auth_key: {auth}
    priv_protocol: aes256
    priv_key: {priv}
"""


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return load_profiles()


def load_demo_variant(profiles: dict[str, DeviceProfile], old: str, new: str) -> Site:
    """Load the demo with one edit (the first occurrence of ``old``), secrets resolved as for the demo."""
    assert old in DEMO_TEXT, old
    return site_from_document(parse_yaml(DEMO_TEXT.replace(old, new, 1), str(DEMO)), profiles)


def demo_variant_error(profiles: dict[str, DeviceProfile], old: str, new: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_demo_variant(profiles, old, new)
    return str(caught.value)


def write_site(tmp_path: Path, credentials: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(credentials=credentials), encoding="utf-8")
    return path


def error_chain_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` would print, causes and contexts included."""
    texts = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current)]
        texts += [repr(p) for p in getattr(current, "problems", [])]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def test_demo_config_loads(profiles: dict[str, DeviceProfile]) -> None:
    site = load_site(DEMO, profiles)

    assert [d.id for d in site.devices] == ["dh1-ups-a", "dh1-rack-a01-inlet", "dh1-rack-a02-inlet"]
    assert isinstance(site.credential("demo-v3"), ResolvedV3)
    assert isinstance(site.credential("demo-public"), ResolvedCommunity)
    assert set(site.profiles) == {"ups/ietf_rfc1628", "thsensor/generic_xymd02"}


def test_snmp_version_written_as_a_bare_number_is_accepted(profiles: dict[str, DeviceProfile]) -> None:
    site = load_demo_variant(profiles, 'version: "3"', "version: 3")

    assert site.device("dh1-ups-a").snmp.version == "3"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port: 16161", "port: true", ":34: devices[0].port: must be an integer 1–65535"),
        ("port: 16161", 'port: "16161"', ":34: devices[0].port: must be an integer 1–65535"),
        ("port: 16161", "port: 16161.0", ":34: devices[0].port: must be an integer 1–65535"),
        ("auth_protocol: sha256", "auth_protocol: MD5", ":15: credentials.demo-v3.auth_protocol: MD5 is broken"),
        ("auth_protocol: sha256", "auth_protocol: usmHMACMD5AuthProtocol", "MD5 is broken and never accepted"),
        ("auth_protocol: sha256", "auth_protocol: none", "SNMPv3 without authentication is not accepted"),
        ("auth_protocol: sha256", "auth_protocol: sha1", "auth_protocol: must be one of 'sha', 'sha224'"),
        ("priv_protocol: aes128", "priv_protocol: 3des", ":17: credentials.demo-v3.priv_protocol: DES is broken"),
        ("insecure: true", "insecure: 1", ":25: credentials.demo-public.insecure: must be true or false"),
        ("poll_interval_s: 2", "poll_interval_s: .inf", "devices[0].poll_interval_s: must be a number of seconds"),
        ("retention_days: 30", "retention_days: -1", "storage.retention_days: must be a number of days more than 0"),
        ("refresh_s: 2", "refresh_s: .nan", "dashboard.refresh_s: must be a number of seconds 0.5–300, not NaN"),
        ("  id: demo\n", "  id: demo\n  idd: x\n", ":4: site.idd: unknown key"),
        ("type: snmp_v3", "type: snmp_v1", ":13: credentials.demo-v3.type: unknown type; must be one of"),
        ("host: 127.0.0.1", "host: 'not a host'", ":33: devices[0].host: must be a host name or an IP address"),
        ("rooms:\n", "rooms:\n  - dh0\n", ":7: rooms[0]: must be a mapping (key: value lines)"),
    ],
)
def test_bad_value_gets_a_located_operator_message(
    profiles: dict[str, DeviceProfile], old: str, new: str, expected: str
) -> None:
    assert expected in demo_variant_error(profiles, old, new)


def test_broken_credential_is_not_also_reported_as_missing(profiles: dict[str, DeviceProfile]) -> None:
    message = demo_variant_error(profiles, "auth_protocol: sha256", "auth_protocol: md5")

    assert "MD5 is broken" in message
    assert "no credential" not in message
    assert len(message.splitlines()) == 1


def test_broken_device_still_gets_its_references_checked(profiles: dict[str, DeviceProfile]) -> None:
    old = "    room: dh1\n    host: 127.0.0.1\n    port: 16161"
    message = demo_variant_error(profiles, old, "    room: dh7\n    host: 127.0.0.1\n    port: 0")

    assert ":32: devices[0].room: no room 'dh7' (rooms: dh1)" in message
    assert ":34: devices[0].port: must be an integer 1–65535" in message


def test_secret_never_appears_in_repr_of_a_loaded_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       profiles: dict[str, DeviceProfile]) -> None:
    monkeypatch.setenv("FACWATCH_TEST_AUTH", CANARY)
    (tmp_path / "priv").write_text(CANARY + "-priv\n", encoding="utf-8")
    site = load_site(write_site(tmp_path, V3.format(auth="{env: FACWATCH_TEST_AUTH}", priv="{file: priv}")), profiles)

    assert site.credential("v3").auth_key.reveal() == CANARY
    assert site.credential("v3").priv_key.reveal() == CANARY + "-priv"
    for text in (repr(site), str(site), repr(site.credentials), repr(site.config), f"{site.credential('v3')}"):
        assert CANARY not in text


@pytest.mark.parametrize(
    ("auth", "priv"),
    [
        (CANARY, "{file: priv}"),  # written inline
        ("[" + CANARY + "]", "{file: priv}"),  # inline, and the wrong type
        ("{value: x}", "{env: FACWATCH_TEST_SHORT}"),  # a key in the environment too short for SNMPv3
        ("{env: FACWATCH_TEST_AUTH}\n    auth_key: " + CANARY, "{file: priv}"),  # a duplicate YAML key
        ("{env: FACWATCH_TEST_AUTH, file: " + CANARY + "x}", "{file: priv}"),  # both sources
        ("{env: FACWATCH_TEST_AUTH}", "{file: short}"),  # a key file too short for SNMPv3
    ],
)
def test_secret_never_appears_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        profiles: dict[str, DeviceProfile], auth: str, priv: str) -> None:
    short = CANARY[:7]
    monkeypatch.setenv("FACWATCH_TEST_AUTH", CANARY)
    monkeypatch.setenv("FACWATCH_TEST_SHORT", short)
    (tmp_path / "priv").write_text(CANARY, encoding="utf-8")
    (tmp_path / "short").write_text(short, encoding="utf-8")
    config = write_site(tmp_path, V3.format(auth=auth, priv=priv))

    with pytest.raises(ConfigError) as caught:
        load_site(config, profiles)

    text = error_chain_text(caught.value)
    assert CANARY not in text.replace(CANARY + "x", "")  # a file *name* may be echoed, never a value
    assert short not in text.replace(CANARY + "x", "")


@pytest.mark.parametrize(
    ("setup", "ref", "expected"),
    [
        (lambda d: (d / "key").mkdir(), "{file: key}", "cannot read secret file key ("),
        (lambda d: (d / "key").write_bytes(b"\xff\xfe" * 8), "{file: key}", "secret file key is not UTF-8 text"),
        (lambda d: (d / "key").write_bytes(b"k" * 10_000), "{file: key}", "secret file key is larger than 4096"),
        (lambda d: None, '{file: "a\\0b"}', "cannot read secret file a\x00b: "),
        (lambda d: None, "{file: ~no-such-user-facwatch/key}", "cannot read secret file ~no-such-user-facwatch/key"),
    ],
)
def test_unusable_secret_file_is_a_config_error(tmp_path: Path, profiles: dict[str, DeviceProfile],
                                                setup: object, ref: str, expected: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    (tmp_path / "priv").write_text("long-enough-priv-key", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_site(write_site(tmp_path, V3.format(auth=ref, priv="{file: priv}")), profiles)

    assert f":8: credentials.v3.auth_key: {expected}" in str(caught.value)
