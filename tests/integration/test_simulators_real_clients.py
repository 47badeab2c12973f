"""The site simulator answers real clients: net-snmp (snmpget/walk/bulk/set) and mbpoll, on loopback.

Ports 21100–21599 (this module's range). Clients run as asyncio subprocesses: the simulator lives in
the test's own event loop, so a blocking subprocess.run would stop it from answering.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from collectors.model import Kind, ModbusAddress, PointSpec, Table
from collectors.profile import DeviceProfile, ModbusOptions, load_profiles
from config.load import Site, load_site
from simulators.modbus_server import ModbusGateway
from simulators.site import SiteSimulator, serve_site
from tests.peers import require

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
SNMP_PORT = 21161
MODBUS_PORT = 21502
SPARE_MODBUS_PORT = 21503
AUTH_KEY = "sim-auth-key-21161"
PRIV_KEY = "sim-priv-key-21161"
COMMUNITY = "public"
# site-config name → net-snmp's -a / -x spelling
NET_SNMP_AUTH = {"sha": "SHA", "sha224": "SHA-224", "sha256": "SHA-256", "sha384": "SHA-384", "sha512": "SHA-512"}
NET_SNMP_PRIV = {"aes128": "AES", "aes192": "AES-192", "aes256": "AES-256"}
UPS_PROFILE = load_profiles()["ups/ietf_rfc1628"]
UPS_OIDS = [spec.oid for spec in UPS_PROFILE.points]
UPS = "ups-a"
POINT_OIDS = {spec.name: spec.oid for spec in UPS_PROFILE.points}  # the profile the collector decodes with
BATTERY_STATUS, SECONDS_ON_BATTERY, MINUTES_REMAINING, CHARGE, BATTERY_VOLTAGE, BATTERY_TEMPERATURE = (
    POINT_OIDS[p] for p in ("battery.status", "battery.time_on_battery", "battery.runtime", "battery.charge",
                            "battery.voltage", "battery.temperature"))
LINE_BADS, OUTPUT_SOURCE, OUTPUT_FREQUENCY, OUTPUT_VOLTAGE = (
    POINT_OIDS[p] for p in ("input.line_bads", "output.source", "output.frequency", "output.voltage"))
ALARMS_PRESENT, LOW_BATT_TIME, MFR = (POINT_OIDS[p] for p in ("ups.alarms", "battery.runtime.low", "ups.mfr"))
SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME = "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0"
VARBIND = re.compile(r"^(\.[0-9.]+) = (?:([A-Za-z0-9 -]+): )?(.*)$")
NO_DATA = ("No more variables", "No Such Object", "No Such Instance")
REGISTER = re.compile(r"^\[(\d+)\]:\s+(\S+)(?:\s+\((-?\d+)\))?")


ALL_PAIRS = [(auth, priv) for auth in NET_SNMP_AUTH for priv in NET_SNMP_PRIV]
DEFAULT_PAIRS = [("sha256", "aes128"), ("sha512", "aes256")]  # USM key localisation is slow: few users by default


def credential_yaml(secrets: Path, pairs: list[tuple[str, str]]) -> str:
    """One v3 user per auth × priv pair, plus the v2c community."""
    lines = []
    for auth, priv in pairs:
        lines += [f"  v3-{auth}-{priv}:", "    type: snmp_v3", f"    user: fw-{auth}-{priv}",
                      f"    auth_protocol: {auth}", f"    auth_key: {{file: {secrets / 'auth'}}}",
                  f"    priv_protocol: {priv}", f"    priv_key: {{file: {secrets / 'priv'}}}"]
        if auth == "sha":  # SHA-1 is in the interop matrix on purpose; facwatch needs it waived
            lines.append('    security_waiver: "interop test: net-snmp clients with SHA-1"')
    lines += ["  public:", "    type: snmp_community", f"    community: {{file: {secrets / 'community'}}}",
              "    insecure: true"]
    return "\n".join(lines)


def write_site(tmp_path: Path, pairs: list[tuple[str, str]] = DEFAULT_PAIRS) -> Path:
    """A UPS on SNMP and two T/H transmitters behind one Modbus gateway (unit ids 1 and 2)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in {"auth": AUTH_KEY, "priv": PRIV_KEY, "community": COMMUNITY}.items():
        (secrets / name).write_text(value + "\n")
    names = [f"v3-{auth}-{priv}" for auth, priv in pairs] + ["public"]
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site: {{id: simtest, name: simulator test}}
rooms: [{{id: r1, name: Room 1}}]
credentials:
{credential_yaml(secrets, pairs)}
devices:
  - {{id: {UPS}, class: ups, profile: ups/ietf_rfc1628, room: r1, host: {HOST}, port: {SNMP_PORT},
     credential: v3-sha256-aes128,
     simulation: {{rated_power_w: 40000, load_fraction: 0.5, runtime_full_load_min: 10, noise: 0}}}}
  - {{id: th-1, class: thsensor, profile: thsensor/generic_xymd02, room: r1, host: {HOST}, port: {MODBUS_PORT},
     modbus: {{unit_id: 1}}, simulation: {{temperature_c: 21.5, humidity_pct: 45, noise: 0}}}}
  - {{id: th-2, class: thsensor, profile: thsensor/generic_xymd02, room: r1, host: {HOST}, port: {MODBUS_PORT},
     modbus: {{unit_id: 2}}, simulation: {{temperature_c: 24.0, humidity_pct: 50, noise: 0}}}}
simulation:
  snmp_credentials: [{", ".join(names)}]
""")
    return path


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every SiteSimulator test must leave no asyncio task behind."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(5):
        await asyncio.sleep(0)
    leaked = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture(scope="module")
def peers() -> None:
    for binary in ("snmpget", "snmpgetnext", "snmpbulkget", "snmpwalk", "snmpbulkwalk", "snmpset", "mbpoll"):
        require(binary)


@pytest.fixture(scope="module")
def site(tmp_path_factory, peers) -> Site:
    return load_site(write_site(tmp_path_factory.mktemp("site")))


@pytest.fixture
async def sim(site) -> AsyncIterator[SiteSimulator]:
    # a long tick keeps real time out of the way; tests move time with sim.advance()
    async with SiteSimulator(site, seed=1, tick_s=3600) as running:
        yield running


# --- client helpers ------------------------------------------------------------------------------


async def run(*argv: str, timeout: float = 20.0) -> tuple[int, str, str]:
    """Run a client without blocking the loop the simulator answers from."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()  # type: ignore[return-value]


def v2c(community: str = COMMUNITY) -> list[str]:
    return ["-v2c", "-c", community]


def v3(auth: str = "sha256", priv: str = "aes128", auth_key: str = AUTH_KEY, priv_key: str = PRIV_KEY,
       user: str | None = None) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user or f"fw-{auth}-{priv}", "-a", NET_SNMP_AUTH[auth], "-A", auth_key,
            "-x", NET_SNMP_PRIV[priv], "-X", priv_key]


async def snmp(tool: str, security: list[str], *args: str, timeout_s: float = 1.0) -> tuple[int, str, str]:
    # -m "": Debian ships without the IETF MIBs, so numeric OIDs only (LIBRARIES.md §1)
    return await run(tool, *security, "-m", "", "-On", "-t", str(timeout_s), "-r", "0", f"{HOST}:{SNMP_PORT}", *args)


def varbinds(out: str) -> dict[str, tuple[str | None, str]]:
    """net-snmp -On output → {oid without leading dot: (type, value)}, data only (no noSuch*/endOfMibView)."""
    found = {}
    for line in out.splitlines():
        match = VARBIND.match(line)
        if match and not match.group(3).startswith(NO_DATA):
            found[match.group(1).lstrip(".")] = (match.group(2), match.group(3))
    return found


async def snmp_get(*oids: str, security: list[str] | None = None) -> dict[str, tuple[str | None, str]]:
    rc, out, err = await snmp("snmpget", security or v2c(), *oids)
    assert rc == 0, err
    return varbinds(out)


async def mbpoll(unit: int, ref: int, count: int, table: str, *extra: str,
                 port: int = MODBUS_PORT) -> tuple[int, list[tuple], str]:
    """Read with mbpoll: -0 = PDU (0-based) addresses, -1 = one poll; returns (rc, [(ref, shown, signed)], stderr)."""
    rc, out, err = await run("mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-r", str(ref),
                             "-c", str(count), "-t", table, "-1", "-o", "1", *extra, HOST)
    rows = [(int(m.group(1)), m.group(2), m.group(3)) for m in map(REGISTER.match, out.splitlines()) if m]
    return rc, rows, err


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(arc) for arc in oid.split("."))


# --- SNMP ----------------------------------------------------------------------------------------


async def test_v2c_get_serves_rfc1628_types_and_units(sim):
    ups = sim.model(UPS)
    got = await snmp_get(BATTERY_VOLTAGE, OUTPUT_SOURCE, MINUTES_REMAINING, CHARGE, OUTPUT_VOLTAGE,
                         OUTPUT_FREQUENCY, ALARMS_PRESENT, LINE_BADS, MFR)
    assert got[BATTERY_VOLTAGE] == ("INTEGER", str(round(ups.battery_voltage_v * 10)))  # 0.1 V DC
    assert got[OUTPUT_SOURCE] == ("INTEGER", "3")  # normal(3)
    assert got[MINUTES_REMAINING] == ("INTEGER", "23")  # 10 min × 2^1.2 at 50 % (Peukert)
    assert got[CHARGE] == ("INTEGER", "100")
    assert got[OUTPUT_VOLTAGE] == ("INTEGER", "230")  # whole RMS volts
    assert got[OUTPUT_FREQUENCY] == ("INTEGER", "500")  # 0.1 Hz
    assert got[ALARMS_PRESENT] == ("Gauge32", "0")
    assert got[LINE_BADS] == ("Counter32", "0")
    assert got[MFR] == ("STRING", '"facwatch-sim"')


async def test_system_group_names_the_device(sim):
    got = await snmp_get(SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME)
    assert got[SYS_OBJECT_ID] == ("OID", ".1.3.6.1.2.1.33")  # the profile's sysObjectID
    assert got[SYS_UPTIME][0] == "Timeticks"
    assert got[SYS_NAME] == ("STRING", f'"{UPS}"')


async def test_v3_authpriv_sha_aes_reads_the_same_values(sim):
    assert await snmp_get(OUTPUT_SOURCE, CHARGE, security=v3()) == await snmp_get(OUTPUT_SOURCE, CHARGE)


async def test_every_configurable_auth_and_priv_protocol_interoperates_with_net_snmp(tmp_path, peers):
    # aes192/aes256 need the Blumenthal key extension to match net-snmp's -x AES-192/AES-256 when the
    # auth hash is shorter than the AES key (SHA-1, SHA-224); see simulators/snmp_agent.PRIV_PROTOCOLS
    async with SiteSimulator(load_site(write_site(tmp_path, ALL_PAIRS)), seed=1, tick_s=3600):
        for auth, priv in ALL_PAIRS:
            rc, out, err = await snmp("snmpget", v3(auth, priv), SYS_NAME)
            assert rc == 0 and f'"{UPS}"' in out, f"{auth}/{priv}: {err}"


async def test_walk_returns_every_profile_oid_in_order(sim):
    rc, out, err = await snmp("snmpwalk", v2c(), "1.3.6.1.2.1.33")
    assert rc == 0, err
    walked = list(varbinds(out))
    assert walked == sorted(UPS_OIDS, key=oid_key)
    rc, out, _ = await snmp("snmpbulkwalk", v3(), "1.3.6.1.2.1.33")
    assert rc == 0 and list(varbinds(out)) == walked


async def test_getnext_and_getbulk_step_through_the_mib(sim):
    rc, out, _ = await snmp("snmpgetnext", v2c(), BATTERY_STATUS)
    assert rc == 0 and list(varbinds(out)) == [SECONDS_ON_BATTERY]
    rc, out, _ = await snmp("snmpbulkget", v2c(), "-Cn1", "-Cr4", "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.33.1.2")
    assert rc == 0
    assert list(varbinds(out)) == [SYS_NAME, BATTERY_STATUS, SECONDS_ON_BATTERY, MINUTES_REMAINING, CHARGE]


async def test_pysnmp_config_mibs_are_never_exposed(sim):
    for security in (v2c(), v3()):
        rc, out, _ = await snmp("snmpwalk", security, "1.3.6.1.6.3")
        assert rc == 0 and not varbinds(out)
        rc, out, err = await snmp("snmpwalk", security, ".1")
        assert rc == 0, err
        assert all(oid.startswith(("1.3.6.1.2.1.", "1.3.6.1.4.1.")) for oid in varbinds(out))
        assert set(UPS_OIDS) <= set(varbinds(out))
        for secret in (COMMUNITY, AUTH_KEY, PRIV_KEY):
            assert secret not in out
    # snmpCommunityName."public" (SNMP-COMMUNITY-MIB) and pysnmpUsmSecretAuthKey (PYSNMP-USM-MIB, under
    # enterprises!) hold the community and the v3 passphrases in pysnmp's own tables
    for subtree in ("1.3.6.1.6.3.18.1.1.1.2.112.117.98.108.105.99", "1.3.6.1.4.1.20408"):
        for security in (v2c(), v3()):
            _, out, _ = await snmp("snmpwalk", security, subtree)
            assert not varbinds(out)


async def test_snmpset_is_refused(sim):
    for security in (v2c(), v3()):
        rc, out, _ = await snmp("snmpset", security, LOW_BATT_TIME, "i", "10", timeout_s=0.5)
        assert rc != 0 and not varbinds(out)
    assert (await snmp_get(LOW_BATT_TIME))[LOW_BATT_TIME] == ("INTEGER", "5")


async def test_wrong_credentials_get_no_data(sim):
    attempts = {
        "wrong community": v2c("private"),
        "wrong auth key": v3(auth_key="not-the-auth-key"),
        "wrong priv key": v3(priv_key="not-the-priv-key"),
        "unknown user": v3(user="intruder"),
        "SNMPv1": ["-v1", "-c", COMMUNITY],  # only v2c communities are configured
    }
    for what, security in attempts.items():
        rc, out, _ = await snmp("snmpget", security, CHARGE, timeout_s=0.5)
        assert rc != 0 and not varbinds(out), f"{what} got data: {out}"


async def test_a_mains_failure_shows_on_the_wire(sim):
    sim.plant.power.set_utility(False)
    await sim.advance(300)
    got = await snmp_get(OUTPUT_SOURCE, SECONDS_ON_BATTERY, CHARGE, MINUTES_REMAINING, LINE_BADS, ALARMS_PRESENT,
                         BATTERY_STATUS)
    assert got[OUTPUT_SOURCE] == ("INTEGER", "5")  # battery(5)
    assert got[SECONDS_ON_BATTERY] == ("INTEGER", "300")
    assert got[CHARGE] == ("INTEGER", "78")  # 1 - 5 / 22.97
    assert got[MINUTES_REMAINING] == ("INTEGER", "18")
    assert got[LINE_BADS] == ("Counter32", "1")
    assert got[ALARMS_PRESENT] == ("Gauge32", "2")
    assert got[BATTERY_STATUS] == ("INTEGER", "2")
    await sim.advance(13 * 60)  # 22.97 - 18 = 4.97 min left ≤ upsConfigLowBattTime (5)
    assert (await snmp_get(BATTERY_STATUS))[BATTERY_STATUS] == ("INTEGER", "3")  # batteryLow(3)


async def test_override_pins_an_snmp_value(sim):
    sim.set_override(UPS, "output.source", "bypass")
    sim.set_override(UPS, "battery.temperature", -5)
    got = await snmp_get(OUTPUT_SOURCE, BATTERY_TEMPERATURE)
    assert got[OUTPUT_SOURCE] == ("INTEGER", "4")
    assert got[BATTERY_TEMPERATURE] == ("INTEGER", "-5")
    sim.clear_override(UPS)
    assert (await snmp_get(OUTPUT_SOURCE))[OUTPUT_SOURCE] == ("INTEGER", "3")


# --- Modbus --------------------------------------------------------------------------------------


async def test_mbpoll_reads_temperature_and_humidity_scaled(sim):
    rc, rows, err = await mbpoll(1, 1, 2, "3")
    assert rc == 0, err
    assert rows == [(1, "215", None), (2, "450", None)]  # 21.5 °C and 45.0 %RH in 0.1 units


async def test_negative_temperature_is_twos_complement(sim):
    sim.set_override("th-1", "ambient.temperature", -20.5)
    await sim.publish()
    rc, rows, err = await mbpoll(1, 1, 1, "3")
    assert rc == 0, err
    assert rows == [(1, "65331", "-205")]  # mbpoll shows the int16 reading in brackets
    rc, rows, _ = await mbpoll(1, 1, 1, "3:hex")
    assert rows[0][1] == "0xFF33"  # REFERENCE.md §4.4


async def test_raw_sentinel_goes_on_the_wire(sim):
    sim.set_override("th-2", "ambient.temperature", 0x7FFF, raw=True)
    await sim.publish()
    rc, rows, _ = await mbpoll(2, 1, 1, "3:hex")
    assert rc == 0 and rows == [(1, "0x7FFF", None)]


async def test_two_unit_ids_on_one_port_are_two_devices(sim):
    _, first, _ = await mbpoll(1, 1, 2, "3")
    _, second, _ = await mbpoll(2, 1, 2, "3")
    assert second == [(1, "240", None), (2, "500", None)]
    assert first != second
    rc, config, err = await mbpoll(2, 257, 4, "4")  # holding 0x0101..0x0104
    assert rc == 0, err
    assert config == [(257, "2", None), (258, "9600", None), (259, "0", None), (260, "0", None)]


async def test_undefined_addresses_answer_illegal_data_address(sim):
    for ref, count, table in ((0, 1, "3"), (1, 3, "3"), (1, 1, "4"), (0, 1, "0"), (0, 1, "1")):
        rc, rows, err = await mbpoll(1, ref, count, table)
        assert rc != 0 and not rows
        assert "Illegal data address" in err, (ref, count, table, err)


async def test_unknown_unit_id_answers_like_a_gateway(sim):
    rc, rows, err = await mbpoll(9, 1, 2, "3")
    assert rc != 0 and not rows
    assert "Target device failed to respond" in err  # exception 0x0B


async def test_modbus_writes_are_refused(sim):
    rc, _, err = await run("mbpoll", "-m", "tcp", "-p", str(MODBUS_PORT), "-a", "1", "-0", "-r", "257", "-t", "4",
                           "-1", "-o", "1", HOST, "7")
    assert rc != 0 and "Illegal function" in err
    _, rows, _ = await mbpoll(1, 257, 1, "4")
    assert rows == [(257, "1", None)]


def synthetic_profile() -> DeviceProfile:
    """Coils, a discrete input and a big-endian float32: what genset and fire-panel profiles use."""
    points = (PointSpec("a.coil", Kind.STATE, "bool", modbus=ModbusAddress(Table.COIL, 3)),
              PointSpec("b.coil", Kind.STATE, "bool", modbus=ModbusAddress(Table.COIL, 4)),
              PointSpec("a.input", Kind.STATE, "bool", modbus=ModbusAddress(Table.DISCRETE, 20)),
              PointSpec("a.float", Kind.GAUGE, "float32", modbus=ModbusAddress(Table.INPUT, 100)))
    return DeviceProfile("test/synthetic", "test", "modbus", "test", "synthetic", "", "", None, (), points,
                         ModbusOptions())


async def test_gateway_serves_bits_and_32_bit_floats(peers):
    gateway = ModbusGateway(HOST, SPARE_MODBUS_PORT, {5: synthetic_profile()})
    await gateway.start()
    try:
        await gateway.update(5, {"a.coil": 1, "b.coil": 0, "a.input": 1, "a.float": 25.37})
        reads = {("0", 3, 2): [(3, "1", None), (4, "0", None)], ("1", 20, 1): [(20, "1", None)],
                 ("3:float", 100, 1): [(100, "25.37", None)]}
        for (table, ref, count), expected in reads.items():
            _, rows, err = await mbpoll(5, ref, count, table, "-B", port=SPARE_MODBUS_PORT)  # -B: high word first
            assert rows == expected, err
        rc, _, err = await mbpoll(5, 0, 1, "0", port=SPARE_MODBUS_PORT)
        assert rc != 0 and "Illegal data address" in err
    finally:
        await gateway.stop()


# --- lifecycle -----------------------------------------------------------------------------------


async def test_the_tick_follows_real_time(site):
    async with SiteSimulator(site, seed=1, tick_s=0.05) as sim:
        sim.plant.power.set_utility(False)
        await asyncio.sleep(0.6)
        assert 0.3 < sim.model(UPS).elapsed_s < 3
        got = await snmp_get(SECONDS_ON_BATTERY)
        assert int(got[SECONDS_ON_BATTERY][1]) >= 0
        assert sim.model(UPS).seconds_on_battery > 0.3


class BrokenModel:
    """A physics model that fails on every call."""

    def step(self, dt_s: float) -> None:
        raise RuntimeError("model bug")

    def values(self) -> dict:
        raise RuntimeError("model bug")


async def test_one_failing_device_never_stops_the_others(site, caplog):
    async with SiteSimulator(site, seed=1, tick_s=0.05) as sim:
        sim.devices["th-1"].model = BrokenModel()
        await asyncio.sleep(0.3)
        assert sim.model(UPS).elapsed_s > 0.1
        rc, rows, _ = await mbpoll(2, 1, 2, "3")
        assert rc == 0 and rows == [(1, "240", None), (2, "500", None)]
    assert "publishing th-1 failed" in caplog.text


def assert_ports_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, SNMP_PORT))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server does
        tcp.bind((HOST, MODBUS_PORT))
        tcp.listen()


async def test_stop_frees_the_ports_for_an_immediate_restart(site):
    for _ in range(2):
        async with SiteSimulator(site, seed=1, tick_s=0.05) as sim:
            assert (await snmp_get(SYS_NAME))[SYS_NAME] == ("STRING", f'"{UPS}"')
            rc, rows, _ = await mbpoll(1, 1, 1, "3")
            assert rc == 0 and rows
            await sim.stop()
            await sim.stop()  # idempotent
        assert_ports_free()


async def test_a_busy_port_fails_start_and_releases_the_rest(site):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, MODBUS_PORT))
        squatter.listen()
        with pytest.raises(OSError, match=f"{MODBUS_PORT}"):
            await SiteSimulator(site, seed=1).start()
    assert_ports_free()


async def test_serve_site_runs_until_the_stop_event(site):
    stop = asyncio.Event()
    ready: list[list[dict]] = []
    task = asyncio.create_task(serve_site(site, stop, seed=1, on_ready=lambda sim: ready.append(sim.endpoints())))
    for _ in range(200):
        if ready:
            break
        await asyncio.sleep(0.01)
    assert [row["device"] for row in ready[0]] == [UPS, "th-1", "th-2"]
    assert (await snmp_get(SYS_NAME))[SYS_NAME] == ("STRING", f'"{UPS}"')
    stop.set()
    await asyncio.wait_for(task, 5)
    assert_ports_free()
