"""Every profile, three ways at once: simulator on the wire, a real client, and the collector.

For each shipped profile a one-device site is simulated; net-snmp's ``snmpget`` (numeric OIDs,
``-m ""``) or ``mbpoll`` reads every point and must see exactly the raw values the profile encodes,
with the SMI types it declares; the collector polls the same simulator and must decode the same
readings. A table of facts copied from ``../shared/devices/REFERENCE.md`` (not from the profiles)
checks the scaling independently.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from collectors import codec
from collectors.model import Kind, Quality
from collectors.profile import load_profiles
from collectors.scheduler import make_poller
from config.load import load_site
from simulators.modbus_server import contiguous_runs, register_image
from simulators.site import SiteSimulator
from tests.conftest import ROOT
from tests.peers import require

pytestmark = pytest.mark.integration
PROFILES = load_profiles()
SECRETS = ROOT / "config" / "sites" / "demo-secrets"
SNMP_PORT, MODBUS_PORT = 28161, 28502
NET_SNMP_TYPES = {"integer": "INTEGER", "gauge32": "Gauge32", "unsigned32": "Gauge32", "counter32": "Counter32",
                  "counter64": "Counter64", "timeticks": "Timeticks", "octet_string": "STRING",
                  "object_identifier": "OID"}
MBPOLL_TABLE = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}

# REFERENCE.md facts, independent of the profile files: (point, where, raw from the engineering value)
REFERENCE_FACTS = {
    "ups/ietf_rfc1628": [("battery.voltage", "1.3.6.1.2.1.33.1.2.5.0", lambda v: v * 10),      # §1.1 0.1 V DC
                         ("output.frequency", "1.3.6.1.2.1.33.1.4.2.0", lambda v: v * 10),     # §1.1 0.1 Hz
                         ("battery.runtime", "1.3.6.1.2.1.33.1.2.3.0", lambda v: v)],          # minutes
    "ups/apc_powernet": [("battery.runtime", "1.3.6.1.4.1.318.1.1.1.2.2.3.0", lambda v: v * 6000),  # §2 TimeTicks
                         ("ups.load", "1.3.6.1.4.1.318.1.1.1.4.3.3.0", lambda v: v * 10)],          # HighPrec 0.1 %
    "crac/liebert_gp_env": [("supply_air.temperature", "1.3.6.1.4.1.476.1.42.3.4.1.3.3.1.50.2",
                             lambda v: v * 10)],                                                   # §4.1 tenths
    "genset/dse_gencomm": [("genset.frequency", "holding:1031", lambda v: v * 10),                  # §3.1 0.1 Hz
                           ("engine.speed", "holding:1030", lambda v: v),
                           ("fuel.level", "holding:1027", lambda v: v)],
    "thsensor/generic_xymd02": [("ambient.temperature", "input:1", lambda v: v * 10),               # §4.4 0.1 degC
                                ("ambient.humidity", "input:2", lambda v: v * 10)],
    "thsensor/apc_netbotz": [("ambient.temperature", "1.3.6.1.4.1.5528.100.4.1.1.1.2.{sensor}", lambda v: v * 10)],
}


def one_device_site(tmp_path: Path, profile_id: str):
    """A site with a single device of this profile, v3 for the collector and v2c public for snmpget."""
    profile = PROFILES[profile_id]
    snmp = profile.protocol == "snmp"
    device = (f"{{id: dut, class: {profile.device_class}, profile: {profile_id}, room: r, host: 127.0.0.1, "
              f"port: {SNMP_PORT if snmp else MODBUS_PORT}{', credential: v3' if snmp else ''}}}")
    (tmp_path / "site.yaml").write_text(f"""
site: {{id: t, name: T}}
rooms: [{{id: r, name: R}}]
credentials:
  v3: {{type: snmp_v3, user: facwatch, auth_protocol: sha256, priv_protocol: aes128,
        auth_key: {{file: {SECRETS / 'snmp-auth-key'}}}, priv_key: {{file: {SECRETS / 'snmp-priv-key'}}}}}
  public: {{type: snmp_community, community: {{file: {SECRETS / 'snmp-community'}}}, insecure: true}}
simulation: {{snmp_credentials: [v3, public], control: '127.0.0.1:28099'}}
devices:
  - {device}
""")
    return load_site(tmp_path / "site.yaml")


async def run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def snmpget_all(profile, port: int) -> dict[str, tuple[str, str]]:
    """Every point's OID read by net-snmp: oid → (type, value as printed with -Ot, numeric timeticks)."""
    oids = [spec.oid for spec in profile.points]
    seen: dict[str, tuple[str, str]] = {}
    for i in range(0, len(oids), 20):
        out = await run(require("snmpget"), "-v2c", "-c", "public", "-m", "", "-On", "-Ot", "-t", "2", "-r", "1",
                        f"127.0.0.1:{port}", *oids[i:i + 20])
        for line in out.splitlines():
            typed = re.match(r"^\.?([\d.]+) = ([\w-]+): ?(.*)$", line)
            bare = re.match(r"^\.?([\d.]+) = (\d+)$", line)  # -Ot prints TimeTicks as a bare number
            if typed:
                seen[typed.group(1)] = (typed.group(2), typed.group(3).strip())
            elif bare:
                seen[bare.group(1)] = ("Timeticks", bare.group(2))
    return seen


async def mbpoll_all(profile, port: int, raw: dict) -> dict[tuple[str, int], int]:
    """Every served register/bit read by mbpoll: (table, address) → unsigned 16-bit word (or bit)."""
    seen: dict[tuple[str, int], int] = {}
    for table, words in register_image(profile, raw).items():
        for start, count in contiguous_runs(words):
            for offset in range(0, count, 100):
                out = await run(require("mbpoll"), "-m", "tcp", "-p", str(port), "-a", "1", "-0", "-1",
                                "-t", MBPOLL_TABLE[table.value], "-r", str(start + offset),
                                "-c", str(min(100, count - offset)), "127.0.0.1")
                for address, value in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out, flags=re.M):
                    seen[(table.value, int(address))] = int(value) & 0xFFFF
    return seen


def snmp_raw_as_printed(datatype: str, raw) -> str:
    if datatype == "octet_string":
        return f'"{raw}"'
    if datatype == "object_identifier":
        return "." + str(raw).lstrip(".")
    return str(int(raw))


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
async def test_real_client_and_collector_agree_with_the_simulator(profile_id, tmp_path):
    site = one_device_site(tmp_path, profile_id)
    profile = site.profile(site.device("dut"))
    async with SiteSimulator(site, seed=3, tick_s=3600) as sim:  # no tick during the test: values hold still
        raw = sim.devices["dut"].raw_values()
        if profile.protocol == "snmp":
            wire = await snmpget_all(profile, SNMP_PORT)
            for spec in profile.points:
                got_type, got_value = wire[spec.oid]
                assert got_type in (NET_SNMP_TYPES[spec.datatype], "Hex-STRING"), spec.name
                if got_type != "Hex-STRING":
                    assert got_value == snmp_raw_as_printed(spec.datatype, raw[spec.name]), spec.name
        else:
            wire = await mbpoll_all(profile, MODBUS_PORT, raw)
            for table_address, word in register_image(profile, raw).items():
                for address, value in word.items():
                    assert wire[(table_address.value, address)] == int(value) & 0xFFFF, (table_address, address)
        poller = make_poller(site, site.device("dut"))
        try:
            result = await poller.poll()
        finally:
            await poller.close()
    assert result.error is None
    readings = {r.point: r for r in result.readings}
    for spec in profile.points:
        # a bit field's raw value is the field alone; on the wire it sits inside its register
        wire_raw = codec.insert_bits(spec, 0, raw[spec.name]) if spec.bits else raw[spec.name]
        want_value, want_quality, want_text = codec.decode(spec, wire_raw)
        got = readings[spec.name]
        assert (got.quality, got.text) == (want_quality, want_text), spec.name
        assert got.value == pytest.approx(want_value), spec.name
        if spec.kind is Kind.GAUGE and got.quality is Quality.GOOD and not spec.name.startswith("config."):
            assert spec.unit, f"{spec.name} is a gauge without a unit"


@pytest.mark.parametrize("profile_id", sorted(REFERENCE_FACTS))
async def test_wire_scaling_matches_the_reference(profile_id, tmp_path):
    site = one_device_site(tmp_path, profile_id)
    async with SiteSimulator(site, seed=5, tick_s=3600) as sim:
        device = sim.devices["dut"]
        values = device.model.values()
        raw = device.raw_values()
        profile = device.profile
        wire = (await snmpget_all(profile, SNMP_PORT) if profile.protocol == "snmp"
                else await mbpoll_all(profile, MODBUS_PORT, raw))
    indexes = getattr(profile, "indexes", {}) or {}
    for point, where, to_raw in REFERENCE_FACTS[profile_id]:
        expected = round(to_raw(values[point]))
        if ":" in where:
            table, address = where.split(":")
            got = wire[(table, int(address))]
            got = got - 0x10000 if got & 0x8000 and expected < 0 else got
        else:
            got = int(wire[where.format(**indexes)][1])
        assert abs(got - expected) <= 1, f"{profile_id} {point}: wire {got}, REFERENCE says {expected}"
