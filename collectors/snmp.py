"""SNMP poller: batched GETs with pysnmp 7.1 (asyncio), decoded through the shared codec.

One of the two modules allowed to import pysnmp. Pattern and pitfalls: LIBRARIES.md §1 — one engine
shared by every poller, explicit timeout/retries on the transport (the defaults hold a dead device
for 6 s), ObjectType objects resolved once and reused, ``lookupMib=False`` on responses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyasn1.type import univ
from pysnmp.error import PySnmpError
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
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
)
from pysnmp.proto.rfc1902 import IpAddress

from collectors.codec import RawValue, decode
from collectors.model import Kind, PointSpec, PollResult, Quality, Reading
from collectors.planner import chunk, plan_snmp
from collectors.profile import DeviceProfile
from config.load import ResolvedCommunity, ResolvedCredential, ResolvedV3
from config.schema import WEAK_AUTH_PROTOCOLS, Device, SnmpOptions

log = logging.getLogger(__name__)
TOO_BIG = 1  # RFC 3416 error-status tooBig: the response would not fit in one message

AUTH_PROTOCOLS = {
    "sha": USM_AUTH_HMAC96_SHA,
    "sha224": USM_AUTH_HMAC128_SHA224,
    "sha256": USM_AUTH_HMAC192_SHA256,
    "sha384": USM_AUTH_HMAC256_SHA384,
    "sha512": USM_AUTH_HMAC384_SHA512,
}
# RFC 3826 AES-128. For AES-192/256 with a hash shorter than the key, the key extension differs by
# vendor: net-snmp (and our simulators) use Blumenthal's draft; pysnmp's plain CFB192/256 constants
# are Reeder's (Cisco) and interoperate with net-snmp only when the hash is at least as long as the key.
PRIV_PROTOCOLS = {
    "aes128": USM_PRIV_CFB128_AES,
    "aes192": USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256": USM_PRIV_CFB256_AES_BLUMENTHAL,
}


# Defence in depth against pysnmp's silent fallback: UsmUserData(authKey=...) without authProtocol is
# HMAC-MD5, and with privKey but no privProtocol it is DES. Every protocol is passed explicitly, and
# the built object is checked against these before it is used.
_STRONG_AUTH = frozenset(AUTH_PROTOCOLS.values())
_STRONG_PRIV = frozenset(PRIV_PROTOCOLS.values())


@dataclass(slots=True)
class _EngineUse:
    engine: SnmpEngine
    users: int = 0


class SharedEngine:
    """ONE SnmpEngine per process, shared by every poller that was not handed one; the last user closes it.

    Kept per event loop because pysnmp binds its UDP socket to the loop it first runs on.
    """

    def __init__(self) -> None:
        self._uses: dict[asyncio.AbstractEventLoop, _EngineUse] = {}

    def acquire(self) -> SnmpEngine:
        """The running loop's engine, created on first use."""
        loop = asyncio.get_running_loop()
        use = self._uses.get(loop)
        if use is None:
            use = self._uses[loop] = _EngineUse(SnmpEngine())
        use.users += 1
        return use.engine

    def release(self, engine: SnmpEngine) -> None:
        """Drop one user of ``engine``; close its dispatcher when none is left."""
        for loop, use in list(self._uses.items()):
            if use.engine is engine:
                use.users -= 1
                if use.users <= 0:
                    del self._uses[loop]
                    engine.close_dispatcher()
                return

    def users(self) -> int:
        """Pollers sharing the running loop's engine."""
        use = self._uses.get(asyncio.get_running_loop())
        return use.users if use else 0


SHARED_ENGINE = SharedEngine()


def auth_data(device: Device, credential: ResolvedCredential | None) -> CommunityData | UsmUserData:
    """The pysnmp auth object for a device: v3 authPriv only, or v2c; the only place keys are revealed."""
    version = device.snmp.version if device.snmp else "3"
    if version == "3" and isinstance(credential, ResolvedV3):
        auth, priv = AUTH_PROTOCOLS.get(credential.auth_protocol), PRIV_PROTOCOLS.get(credential.priv_protocol)
        if auth is None or priv is None:  # the schema refuses these; never let pysnmp pick a default
            raise ValueError(f"{device.id}: SNMPv3 needs a SHA auth and an AES priv protocol")
        data = UsmUserData(credential.user, authKey=credential.auth_key.reveal(),
                           privKey=credential.priv_key.reveal(), authProtocol=auth, privProtocol=priv)
        if data.authentication_protocol not in _STRONG_AUTH or data.privacy_protocol not in _STRONG_PRIV:
            raise ValueError(f"{device.id}: pysnmp did not take the configured SNMPv3 protocols")
        return data
    if version == "2c" and isinstance(credential, ResolvedCommunity):
        return CommunityData(credential.community.reveal(), mpModel=1)
    raise ValueError(f"{device.id}: SNMP version {version} needs a matching credential")


def security_notes(device: Device, credential: ResolvedCredential | None) -> list[str]:
    """What is weaker than facwatch's default about how this device is reached (logged at start)."""
    where = f"{device.id} ({device.host}:{device.port}, credential {device.credential})"
    if isinstance(credential, ResolvedCommunity):
        return [f"{where}: SNMP v2c, the community travels in clear text (allowed by insecure: true)"]
    if isinstance(credential, ResolvedV3) and credential.auth_protocol in WEAK_AUTH_PROTOCOLS:
        # the schema refuses SHA-1 without a waiver, so the reason is always there to log
        return [f"{where}: SHA-1 authentication, waived: {credential.security_waiver}"]
    return []


def to_raw(value: object) -> RawValue | None:
    """A pysnmp value as the codec's raw value; None for noSuchObject / noSuchInstance / endOfMibView."""
    if isinstance(value, univ.Null):  # the three exception values are Null subclasses
        return None
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    if isinstance(value, IpAddress):
        return value.prettyPrint()
    if isinstance(value, univ.OctetString):
        # Firmware pads identity strings with NULs and sometimes sends Latin-1: keep what decodes.
        return bytes(value).decode("utf-8", errors="replace").replace("\x00", "")
    if isinstance(value, univ.Integer):  # Integer32, Gauge32, Counter32/64, TimeTicks, Unsigned32
        return int(value)
    return None


@dataclass(slots=True)
class _Outcome:
    """Readings of one GET (and its tooBig splits), or why the agent did not answer."""

    readings: list[Reading] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    failure: str | None = None

    def add(self, other: _Outcome) -> None:
        self.readings += other.readings
        self.errors += other.errors
        self.requests += other.requests
        self.failure = self.failure or other.failure


class SnmpPoller:
    """Polls one SNMP device: every profile point, in as few GET PDUs as the agent accepts.

    ``engine=None`` takes the process's shared engine, so build the poller inside the event loop: the
    first poller creates the engine there (0.1-0.5 s of CPU), before polling starts rather than inside
    a poll where it would stall every other device's schedule.
    """

    def __init__(self, device: Device, profile: DeviceProfile, credential: ResolvedCredential | None,
                 engine: SnmpEngine | None = None, *, clock: Callable[[], float] = time.time):
        self._device = device
        self._options = device.snmp or SnmpOptions()
        self._auth = auth_data(device, credential)
        for note in security_notes(device, credential):
            log.warning("%s", note)
        self._context = ContextData()
        self._clock = clock
        self._points = list(profile.points)
        self._batch_size = self._options.max_oids_per_request
        self._batches = plan_snmp(self._points, self._batch_size)
        # Resolved against the MIB on first use, then reused: re-resolving costs ~2x CPU (LIBRARIES §1.11).
        self._objects = {spec.name: ObjectType(ObjectIdentity(spec.oid)) for spec in self._points}
        self._oids = {spec.name: tuple(int(arc) for arc in spec.oid.split(".")) for spec in self._points}
        self._target: UdpTransportTarget | None = None
        self._where = f"{device.host}:{device.port}"
        self._given_engine = engine
        self._engine = engine or SHARED_ENGINE.acquire()  # last: nothing above may fail after acquiring
        self._closed = False

    @property
    def batches(self) -> list[tuple[PointSpec, ...]]:
        """The current GET batches (shrunk after the agent answered tooBig)."""
        return list(self._batches)

    async def poll(self) -> PollResult:
        """GET every point; an agent that does not answer gives an error and no readings."""
        ts = self._clock()
        try:
            target = await self._transport()
        except (PySnmpError, OSError) as exc:
            return PollResult([], f"{self._where}: cannot open transport: {exc}", 0)
        total = _Outcome()
        batches = self._batches  # a tooBig during this poll re-plans later polls, not this one
        for index, batch in enumerate(batches):
            outcome = await self._get(target, batch, ts)
            total.add(outcome)
            if outcome.failure is not None:
                return self._cut_short(total, batches[index:], ts)
        return PollResult(total.readings, "; ".join(total.errors) or None, total.requests)

    async def close(self) -> None:
        """Give the shared engine back (an engine passed in belongs to the caller)."""
        if self._given_engine is None and not self._closed:
            SHARED_ENGINE.release(self._engine)
        self._closed = True
        self._target = None

    async def _transport(self) -> UdpTransportTarget:
        if self._target is None:
            self._target = await UdpTransportTarget.create(
                (self._device.host, self._device.port),
                timeout=self._options.timeout_s, retries=self._options.retries)
        return self._target

    def _cut_short(self, total: _Outcome, unread: Sequence[tuple[PointSpec, ...]], ts: float) -> PollResult:
        """The agent stopped answering mid-poll: unreachable if nothing came back, else the rest MISSING."""
        if not total.readings:
            return PollResult([], total.failure, total.requests)
        missing = [self._missing(spec, ts) for batch in unread for spec in batch]
        errors = [*total.errors, total.failure or ""]
        return PollResult(total.readings + missing, "; ".join(errors), total.requests)

    async def _get(self, target: UdpTransportTarget, batch: Sequence[PointSpec], ts: float) -> _Outcome:
        """One GET PDU; tooBig halves the batch and retries both halves."""
        objects = [self._objects[spec.name] for spec in batch]
        try:
            err_ind, err_stat, err_idx, var_binds = await get_cmd(
                self._engine, self._auth, target, self._context, *objects, lookupMib=False)
        except (PySnmpError, OSError) as exc:
            return _Outcome(requests=1, failure=f"{self._where}: {exc}")
        if err_ind:  # timeout, wrong digest, unknown user: the agent is not answering us
            return _Outcome(requests=1, failure=f"{self._where}: {err_ind}")
        if int(err_stat) == TOO_BIG and len(batch) > 1:
            return await self._split(target, batch, ts)
        if err_stat:
            where = batch[int(err_idx) - 1].oid if 0 < int(err_idx) <= len(batch) else "?"
            text = f"{err_stat.prettyPrint()} at {where}"
            return _Outcome([self._missing(spec, ts) for spec in batch], [text], 1)
        return self._decode_batch(batch, var_binds, ts)

    async def _split(self, target: UdpTransportTarget, batch: Sequence[PointSpec], ts: float) -> _Outcome:
        half = len(batch) // 2
        if half < self._batch_size:
            # Remember the smaller size so later polls do not pay for the tooBig round trip again.
            self._batch_size = half
            self._batches = chunk(self._points, half)
        outcome = _Outcome(requests=1)
        for part in (batch[:half], batch[half:]):
            outcome.add(await self._get(target, part, ts))
            if outcome.failure is not None:
                break
        return outcome

    def _decode_batch(self, batch: Sequence[PointSpec], var_binds: Sequence, ts: float) -> _Outcome:
        """Decode a response; a varbind whose OID is not the one asked for is never assigned to the point."""
        if len(var_binds) != len(batch):
            text = f"agent returned {len(var_binds)} varbinds for {len(batch)} OIDs"
            return _Outcome([self._missing(spec, ts) for spec in batch], [text], 1)
        outcome = _Outcome(requests=1)
        for spec, (oid, value) in zip(batch, var_binds, strict=True):
            if tuple(oid) != self._oids[spec.name]:
                outcome.readings.append(self._missing(spec, ts))
                outcome.errors.append(f"agent answered {oid} for {spec.oid}")
            else:
                outcome.readings.append(self._reading(spec, value, ts))
        return outcome

    def _reading(self, spec: PointSpec, value: object, ts: float) -> Reading:
        raw = to_raw(value)
        if isinstance(raw, str) and spec.kind is not Kind.TEXT:  # the agent's type is not what the MIB says
            return Reading(self._device.id, spec.name, ts, None, Quality.INVALID,
                           f"expected a number, got {type(value).__name__}")
        number, quality, text = decode(spec, raw)
        return Reading(self._device.id, spec.name, ts, number, quality, text)

    def _missing(self, spec: PointSpec, ts: float) -> Reading:
        return Reading(self._device.id, spec.name, ts, None, Quality.MISSING)
