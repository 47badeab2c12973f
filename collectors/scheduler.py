"""Per-device polling tasks: jittered, fixed-rate, never overlapping, bounded, backed off when down.

Modelled on Home Assistant's ``helpers/update_coordinator.py``: the framework owns the schedule and
the availability flag; pollers only fetch and decode. One asyncio task per device, so a dead device
only ever holds its own task. Deadlines run on the event loop's clock (``loop.time()``, which is
``time.monotonic()`` in asyncio), so wall-clock steps never change the cadence; readings are stamped
with ``clock()`` (wall time) at the start of the poll that acquired them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from collectors.codec import decode
from collectors.modbus_tls import ModbusTlsFiles
from collectors.model import HEALTH_POINTS, POLL_DURATION_POINT, REACHABLE_POINT, PollResult, Reading
from collectors.planner import plan_modbus, plan_snmp
from config.schema import ModbusOptions, SnmpOptions

if TYPE_CHECKING:
    from collectors.profile import DeviceProfile
    from config.load import ResolvedCredential, Site
    from config.schema import Device

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0  # an unreachable device is still tried at least every 5 minutes
POLL_MARGIN_S = 1.0  # slack on top of the protocol's own timeout × attempts before a poll is cut off

Sink = Callable[[list[Reading]], None]


class Poller(Protocol):
    """The protocol seam: fetch and decode one device's points; nothing about scheduling."""

    async def poll(self) -> PollResult:
        """Read every point of the device once."""
        ...

    async def close(self) -> None:
        """Release sockets and shared clients."""
        ...


PollerFactory = Callable[["Device", "DeviceProfile", "ResolvedCredential | ModbusTlsFiles | None"], Poller]


@dataclass(slots=True)
class DeviceStatus:
    """Availability and counters of one device, as the collector sees it."""

    reachable: bool | None = None  # None until the first poll finished
    last_ok_ts: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    polls: int = 0
    overruns: int = 0  # fixed-rate deadlines skipped because a poll ran past them
    requests: int = 0
    down_since: float | None = None


def backoff_delay(interval: float, failures: int) -> float:
    """Wait before the next attempt after ``failures`` consecutive failed polls: interval × 2^(n-1), capped."""
    if failures <= 0:
        return interval
    return max(interval, min(interval * 2 ** min(failures - 1, 32), MAX_BACKOFF_S))


def next_deadline(previous: float, interval: float, now: float) -> tuple[float, int]:
    """The next fixed-rate deadline after ``previous`` not yet passed at ``now``, and how many were skipped."""
    steps = max(1, math.floor((now - previous) / interval) + 1)
    return previous + steps * interval, steps - 1


def poll_budget(device: Device, profile: DeviceProfile) -> float:
    """Upper bound for one poll: every planned request may use timeout × (retries + 1), plus a margin."""
    options: SnmpOptions | ModbusOptions
    if profile.protocol == "snmp":
        options = device.snmp or SnmpOptions()
        requests = len(plan_snmp(profile.points, options.max_oids_per_request))
    else:
        options = device.modbus or ModbusOptions()
        requests = len(plan_modbus(profile.points, profile.modbus))  # type: ignore[arg-type]
    return requests * options.timeout_s * (options.retries + 1) + POLL_MARGIN_S


def health_readings(device_id: str, ts: float, reachable: bool, duration: float) -> list[Reading]:
    """The ``device.reachable`` and ``device.poll_duration`` readings of one poll."""
    reach_spec, duration_spec = HEALTH_POINTS
    return [Reading(device_id, REACHABLE_POINT, ts, *decode(reach_spec, 1 if reachable else 0)),
            Reading(device_id, POLL_DURATION_POINT, ts, *decode(duration_spec, duration))]


def build_poller(device: Device, profile: DeviceProfile, credential: ResolvedCredential | ModbusTlsFiles | None,
                 snmp_engine: Any = None) -> Poller:
    """The real poller for a device's protocol: SNMP ones share ONE engine, Modbus ones a client pool."""
    # Imported here so a Modbus-only site never loads pysnmp (and the reverse).
    if profile.protocol == "snmp":
        from collectors.snmp import SnmpPoller

        snmp_credential = None if isinstance(credential, ModbusTlsFiles) else credential
        return SnmpPoller(device, profile, snmp_credential, snmp_engine)
    from collectors.modbus import ModbusPoller

    # a Modbus device's "credential" is its Modbus/TCP Security identity, if it has one
    return ModbusPoller(device, profile, tls=credential if isinstance(credential, ModbusTlsFiles) else None)


def make_poller(site: Site, device: Device, *, snmp_engine: Any = None) -> Poller:
    """The poller the collector would build for one device of a site."""
    return build_poller(device, site.profile(device), site.credential_for(device), snmp_engine)


@dataclass(slots=True)
class _Slot:
    device: Device
    poller: Poller
    budget: float
    status: DeviceStatus = dataclasses.field(default_factory=DeviceStatus)
    point_error: str | None = None


class Collector:
    """Polls every device of a site on its own task and hands readings to ``sink``.

    Use ``async with Collector(site, sink) as collector:`` or ``await collector.run()`` / ``stop()``.
    """

    def __init__(self, site: Site, sink: Sink, *, clock: Callable[[], float] = time.time,
                 snmp_engine: Any = None, poller_factory: PollerFactory | None = None,
                 rng: random.Random | None = None):
        self._site = site
        self._sink = sink
        self._clock = clock
        self._factory = poller_factory or functools.partial(build_poller, snmp_engine=snmp_engine)
        self._rng = rng or random.Random()
        self._slots: dict[str, _Slot] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()

    def status(self) -> dict[str, DeviceStatus]:
        """A snapshot of every device's status, keyed by device id."""
        return {device_id: dataclasses.replace(slot.status) for device_id, slot in self._slots.items()}

    async def start(self) -> None:
        """Build every poller (refusing to start on a plan error) and start one task per device."""
        if self._tasks:
            return
        try:
            for device in self._site.devices:
                profile = self._site.profile(device)
                poller = self._factory(device, profile, self._site.credential_for(device))
                self._slots[device.id] = _Slot(device, poller, poll_budget(device, profile))
        except Exception:
            await self.stop()  # close what was built before the bad device
            raise
        self._tasks = [asyncio.create_task(self._device_loop(slot), name=f"poll {device_id}")
                       for device_id, slot in self._slots.items()]

    async def run(self) -> None:
        """Start polling and return only after ``stop()``."""
        await self.start()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Cancel every device task and close the pollers."""
        self._stopping = True
        pending = set(self._tasks)
        while pending:
            # Cancel again until each task has ended: on Python 3.11 asyncio.wait_for (inside pymodbus)
            # returns a reply that arrives together with the cancellation and drops the cancellation.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        self._tasks = []
        for slot in self._slots.values():
            with contextlib.suppress(Exception):
                await slot.poller.close()
        self._stopped.set()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _device_loop(self, slot: _Slot) -> None:
        """Jittered first poll, then fixed-rate while up and exponential backoff while down."""
        loop = asyncio.get_running_loop()
        interval = slot.device.poll_interval_s
        deadline = loop.time() + self._rng.uniform(0, interval)
        while not self._stopping:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if await self._poll_once(slot, loop):
                deadline, skipped = next_deadline(deadline, interval, loop.time())
                slot.status.overruns += skipped
            else:
                deadline = loop.time() + backoff_delay(interval, slot.status.consecutive_failures)

    async def _poll_once(self, slot: _Slot, loop: asyncio.AbstractEventLoop) -> bool:
        """Run one bounded poll, update the status, deliver readings; True if the device answered."""
        acquired = self._clock()
        started = loop.time()
        result = await self._bounded_poll(slot)
        duration = loop.time() - started
        slot.status.polls += 1
        slot.status.requests += result.requests
        if result.answered:
            self._mark_up(slot, acquired, result.error)
        else:
            self._mark_down(slot, acquired, result.error or "no answer")
        readings = [dataclasses.replace(r, ts=acquired) for r in result.readings]
        readings += health_readings(slot.device.id, acquired, result.answered, duration)
        self._deliver(slot, readings)
        return result.answered

    async def _bounded_poll(self, slot: _Slot) -> PollResult:
        """The poller's result, or an error result if it overran its budget or raised."""
        scope = asyncio.timeout(slot.budget)
        try:
            async with scope:
                return await slot.poller.poll()
        except Exception as exc:  # a poller bug or garbage it did not expect must not end the task
            if isinstance(exc, TimeoutError) and scope.expired():
                return PollResult([], f"no answer within the {slot.budget:.1f} s poll budget")
            log.debug("poller of %s raised", slot.device.id, exc_info=True)
            return PollResult([], f"poller error: {type(exc).__name__}: {exc}")

    def _mark_up(self, slot: _Slot, ts: float, point_error: str | None) -> None:
        status = slot.status
        if status.reachable is False and status.down_since is not None:
            log.info("%s is reachable again after %.1f s (%d failed polls)",
                     slot.device.id, ts - status.down_since, status.consecutive_failures)
        status.reachable, status.last_ok_ts, status.down_since = True, ts, None
        status.consecutive_failures = 0
        status.last_error = point_error
        self._note_point_error(slot, point_error)

    def _mark_down(self, slot: _Slot, ts: float, error: str) -> None:
        status = slot.status
        if status.reachable is not False:
            log.warning("%s is unreachable: %s", slot.device.id, error)
            status.down_since = ts
        status.reachable = False
        status.consecutive_failures += 1
        status.last_error = error

    def _note_point_error(self, slot: _Slot, error: str | None) -> None:
        """Log point-level errors (refused OIDs, Modbus exceptions) when they appear or change, not every poll."""
        if error != slot.point_error:
            if error is not None:
                log.warning("%s answered with errors: %s", slot.device.id, error)
            else:
                log.info("%s answers without errors again", slot.device.id)
        slot.point_error = error

    def _deliver(self, slot: _Slot, readings: list[Reading]) -> None:
        try:
            self._sink(readings)
        except Exception:  # the sink is another component's bug; polling must go on
            log.exception("sink rejected %d readings of %s", len(readings), slot.device.id)
