"""SnmpPoller against a fake agent at the get_cmd seam: batching, tooBig, errors, value conversion, auth."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES_BLUMENTHAL,
    USM_PRIV_CFB256_AES_BLUMENTHAL,
    CommunityData,
    SnmpEngine,
    UsmUserData,
)
from pysnmp.hlapi.varbinds import CommandGeneratorVarBinds
from pysnmp.proto import errind, rfc1902, rfc1905

from collectors import snmp
from collectors.model import Quality
from collectors.profile import PROFILE_DIR, load_profile
from collectors.snmp import SHARED_ENGINE, SnmpPoller, auth_data, to_raw
from config.load import ResolvedCommunity, ResolvedV3
from config.schema import Device, SnmpOptions
from config.secret import Secret

UPS = load_profile(PROFILE_DIR / "ups/ietf_rfc1628.yaml", "ups/ietf_rfc1628")
OID = {spec.name: spec.oid for spec in UPS.points}
VB = CommandGeneratorVarBinds()


class FakeTarget:
    """Stands in for UdpTransportTarget: records how it was created."""

    created: ClassVar[list[dict]] = []

    @classmethod
    async def create(cls, address, timeout, retries):
        cls.created.append({"address": address, "timeout": timeout, "retries": retries})
        return cls()


class FakeAgent:
    """Answers GETs from a dict of OID -> pysnmp value; hooks inject tooBig, errStat or errInd."""

    def __init__(self, values: dict[str, object], max_oids: int | None = None, hook=None):
        self.values = values
        self.max_oids = max_oids
        self.hook = hook
        self.calls: list[list[str]] = []
        self.object_ids: list[list[int]] = []
        self.options: list[dict] = []
        self.engines: list[object] = []

    async def get_cmd(self, engine, auth, target, context, *objects, **options):
        self.engines.append(engine)
        VB.make_varbinds(engine.cache, objects)  # what pysnmp does before sending
        oids = [str(obj[0].get_oid()) for obj in objects]
        self.calls.append(oids)
        self.object_ids.append([id(obj) for obj in objects])
        self.options.append(options)
        if self.hook is not None and (answer := self.hook(len(self.calls), oids)) is not None:
            return answer
        if self.max_oids is not None and len(oids) > self.max_oids:
            return None, rfc1905.errorStatus.clone(1), 0, ()
        return None, 0, 0, tuple((rfc1902.ObjectName(o), self.values.get(o, rfc1905.NoSuchObject())) for o in oids)


@pytest.fixture
def agent(monkeypatch):
    FakeTarget.created = []
    values = {
        OID["ups.mfr"]: rfc1902.OctetString(b"ACME\x00\x00"),
        OID["ups.model"]: rfc1902.OctetString(b"Power \xff 3000"),
        OID["battery.status"]: rfc1902.Integer32(2),
        OID["battery.voltage"]: rfc1902.Integer32(2301),
        OID["battery.charge"]: rfc1902.Integer32(100),
        OID["battery.temperature"]: rfc1902.Integer32(-5),
        OID["input.line_bads"]: rfc1902.Counter32(4294967295),
        OID["output.source"]: rfc1902.Integer32(5),
        OID["ups.alarms"]: rfc1902.Gauge32(3),
        OID["ups.load"]: rfc1902.Integer32(250),  # outside valid_range [0, 200]
        OID["battery.runtime"]: rfc1905.NoSuchInstance(),
        OID["output.voltage"]: rfc1905.EndOfMibView(),
    }
    fake = FakeAgent(values)
    monkeypatch.setattr(snmp, "get_cmd", fake.get_cmd)
    monkeypatch.setattr(snmp, "UdpTransportTarget", FakeTarget)
    return fake


def ups_device(max_oids: int = 24, version: str = "2c") -> Device:
    return Device(id="ups-a", device_class="ups", profile="ups/ietf_rfc1628", room="r1", host="127.0.0.1",
                  port=22161, snmp=SnmpOptions(version=version, timeout_s=0.4, retries=2,
                                               max_oids_per_request=max_oids))


def community() -> ResolvedCommunity:
    return ResolvedCommunity(Secret("canary-community"))


def poll(poller: SnmpPoller, times: int = 1):
    async def main():
        return [await poller.poll() for _ in range(times)]

    results = asyncio.run(main())
    return results if times > 1 else results[0]


def make_poller(max_oids: int = 24) -> SnmpPoller:
    return SnmpPoller(ups_device(max_oids), UPS, community(), SnmpEngine(), clock=lambda: 42.0)


def by_point(result):
    return {r.point: r for r in result.readings}


def test_values_are_decoded_with_scale_state_and_text(agent):
    result = poll(make_poller())
    readings = by_point(result)
    assert result.error is None
    assert readings["battery.voltage"].value == 230.1
    assert (readings["battery.status"].value, readings["battery.status"].text) == (2.0, "batteryNormal")
    assert (readings["output.source"].value, readings["output.source"].text) == (5.0, "battery")
    assert readings["battery.temperature"].value == -5.0
    assert readings["input.line_bads"].value == 4294967295.0
    assert readings["ups.alarms"].value == 3.0
    assert readings["ups.mfr"].text == "ACME"  # NUL padding stripped
    assert readings["ups.model"].text == "Power \ufffd 3000"  # undecodable byte replaced, not an error
    assert {r.ts for r in result.readings} == {42.0}


def test_out_of_range_value_is_invalid(agent):
    assert by_point(poll(make_poller()))["ups.load"].quality is Quality.INVALID


def test_no_such_object_instance_and_end_of_mib_are_missing_not_device_errors(agent):
    result = poll(make_poller())
    readings = by_point(result)
    assert result.error is None
    for name in ("battery.runtime", "output.voltage", "input.frequency"):
        assert (readings[name].quality, readings[name].value) == (Quality.MISSING, None)


def test_every_point_gets_exactly_one_reading(agent):
    result = poll(make_poller())
    assert [r.point for r in result.readings] == [p.name for p in UPS.points]


def test_gets_are_batched_into_as_few_pdus_as_fit(agent):
    result = poll(make_poller(max_oids=8))
    assert [len(c) for c in agent.calls] == [8, 8, 8, len(UPS.points) - 24]
    assert result.requests == 4


def test_object_types_are_resolved_once_and_reused_across_polls(agent):
    poll(make_poller(max_oids=100), times=3)
    assert agent.object_ids[0] == agent.object_ids[1] == agent.object_ids[2]


def test_responses_skip_mib_lookup(agent):
    poll(make_poller())
    assert agent.options[0] == {"lookupMib": False}


def test_transport_uses_the_device_timeout_and_retries_and_is_created_once(agent):
    poll(make_poller(), times=2)
    assert FakeTarget.created == [{"address": ("127.0.0.1", 22161), "timeout": 0.4, "retries": 2}]


def test_too_big_halves_the_batch_and_later_polls_keep_the_smaller_size(agent):
    agent.max_oids = 10
    poller = make_poller(max_oids=32)
    first, second = poll(poller, times=2)
    assert first.error is None and len(first.readings) == len(UPS.points)
    # poll 1: 29 (tooBig), 14 (tooBig), 7, 7, 15 (tooBig), 7, 8 -> 7 requests; poll 2 reuses batches of 7
    assert first.requests == 7
    assert [len(c) for c in agent.calls[:7]] == [29, 14, 7, 7, 15, 7, 8]
    assert [len(c) for c in agent.calls[7:]] == [7, 7, 7, 7, 1]
    assert second.requests == 5
    assert by_point(second)["battery.voltage"].value == 230.1


def test_pdu_error_makes_that_pdus_points_missing_and_is_reported(agent):
    def gen_err_on_second(call, oids):
        return (None, rfc1905.errorStatus.clone(5), 2, ()) if call == 2 else None

    agent.hook = gen_err_on_second
    result = poll(make_poller(max_oids=8))
    readings = by_point(result)
    second_batch = [p.name for p in UPS.points[8:16]]
    assert all(readings[n].quality is Quality.MISSING for n in second_batch)
    assert readings["battery.status"].text == "batteryNormal"  # first PDU unaffected
    assert result.error == f"genErr at {UPS.points[9].oid}"
    assert result.answered


def test_timeout_on_first_pdu_means_unreachable_with_no_readings(agent):
    agent.hook = lambda call, oids: (errind.requestTimedOut, 0, 0, ())
    result = poll(make_poller(max_oids=8))
    assert result.readings == []
    assert result.error == "127.0.0.1:22161: No SNMP response received before timeout"
    assert result.requests == 1  # the remaining PDUs are not sent to a silent agent
    assert not result.answered


def test_wrong_digest_means_unreachable(agent):
    agent.hook = lambda call, oids: (errind.wrongDigest, 0, 0, ())
    result = poll(make_poller())
    assert (result.readings, result.error) == ([], "127.0.0.1:22161: Wrong SNMP PDU digest")


def test_agent_going_silent_mid_poll_keeps_what_answered_and_marks_the_rest_missing(agent):
    agent.hook = lambda call, oids: (errind.requestTimedOut, 0, 0, ()) if call == 2 else None
    result = poll(make_poller(max_oids=8))
    assert len(result.readings) == len(UPS.points)
    assert by_point(result)["battery.status"].text == "batteryNormal"
    assert all(r.quality is Quality.MISSING for r in result.readings[8:])
    assert "No SNMP response" in result.error and result.requests == 2


def test_varbind_for_another_oid_is_never_assigned(agent):
    def swapped(call, oids):
        values = [rfc1902.Integer32(i) for i in range(len(oids))]
        names = [rfc1902.ObjectName(o) for o in oids]
        names[0], names[1] = names[1], names[0]
        return None, 0, 0, tuple(zip(names, values, strict=True))

    agent.hook = swapped
    result = poll(make_poller(max_oids=100))
    first, second = result.readings[:2]
    assert (first.quality, second.quality) == (Quality.MISSING, Quality.MISSING)
    assert "agent answered" in result.error


def test_short_response_marks_the_batch_missing(agent):
    agent.hook = lambda call, oids: (None, 0, 0, ((rfc1902.ObjectName(oids[0]), rfc1902.Integer32(1)),))
    result = poll(make_poller(max_oids=100))
    assert all(r.quality is Quality.MISSING for r in result.readings)
    assert "returned 1 varbinds" in result.error


def test_string_where_a_number_is_expected_is_invalid(agent):
    agent.values[OID["battery.voltage"]] = rfc1902.OctetString(b"230.1")
    reading = by_point(poll(make_poller()))["battery.voltage"]
    assert (reading.quality, reading.value) == (Quality.INVALID, None)


@pytest.mark.parametrize(("value", "raw"), [
    (rfc1902.TimeTicks(12345), 12345),
    (rfc1902.Counter64(2**64 - 1), 2**64 - 1),
    (rfc1902.Unsigned32(7), 7),
    (rfc1902.Gauge32(9), 9),
    (rfc1902.Integer32(-3), -3),
    (rfc1902.ObjectIdentifier("1.3.6.1.4.1.318"), "1.3.6.1.4.1.318"),
    (rfc1902.IpAddress("10.1.2.3"), "10.1.2.3"),
    (rfc1902.OctetString(b"a\x00b"), "ab"),
    (rfc1905.NoSuchObject(), None),
    (rfc1905.NoSuchInstance(), None),
    (rfc1905.EndOfMibView(), None),
])
def test_to_raw_converts_snmp_types(value, raw):
    assert to_raw(value) == raw


@pytest.mark.parametrize(("auth", "priv", "auth_const", "priv_const"), [
    ("sha", "aes128", USM_AUTH_HMAC96_SHA, USM_PRIV_CFB128_AES),
    ("sha224", "aes192", USM_AUTH_HMAC128_SHA224, USM_PRIV_CFB192_AES_BLUMENTHAL),
    ("sha256", "aes256", USM_AUTH_HMAC192_SHA256, USM_PRIV_CFB256_AES_BLUMENTHAL),
    ("sha384", "aes128", USM_AUTH_HMAC256_SHA384, USM_PRIV_CFB128_AES),
    ("sha512", "aes256", USM_AUTH_HMAC384_SHA512, USM_PRIV_CFB256_AES_BLUMENTHAL),
])
def test_v3_credentials_map_to_authpriv_protocols(auth, priv, auth_const, priv_const):
    credential = ResolvedV3("dcuser", auth, Secret("canary-auth-1"), priv, Secret("canary-priv-1"))
    data = auth_data(ups_device(version="3"), credential)
    assert isinstance(data, UsmUserData)
    assert (data.authentication_protocol, data.privacy_protocol) == (auth_const, priv_const)
    assert "canary" not in repr(data)


def test_v2c_uses_community_data_with_mp_model_1():
    data = auth_data(ups_device(version="2c"), community())
    assert isinstance(data, CommunityData) and data.message_processing_model == 1
    assert "canary" not in repr(data)


def test_version_and_credential_must_match():
    with pytest.raises(ValueError, match="matching credential"):
        auth_data(ups_device(version="3"), community())


def test_pollers_without_an_engine_share_one_and_the_last_close_releases_it(agent):
    async def main() -> tuple[int, int]:
        pollers = [SnmpPoller(ups_device(), UPS, community()) for _ in range(3)]
        for poller in pollers:
            await poller.poll()
        users = SHARED_ENGINE.users()
        for poller in pollers:
            await poller.close()
        return users, SHARED_ENGINE.users()

    assert asyncio.run(main()) == (3, 0)
    assert len({id(engine) for engine in agent.engines}) == 1
