"""Host a whole site: every configured device served over its real protocol on its configured address.

::

    async with SiteSimulator(load_site("config/sites/demo.yaml"), seed=1) as sim:
        print(sim.endpoints())
        sim.plant.power.set_utility(False)                # a utility outage
        sim.set_override("dh1-rack-a01-inlet", "ambient.temperature", -20.5)
        await sim.publish()                               # on the wire now, not at the next tick

Devices sharing a host:port are one Modbus gateway (told apart by unit id); every SNMP device is
its own agent. A tick task steps each physics model by the real elapsed time and pushes values.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collectors import codec
from collectors.modbus_tls import server_context
from collectors.model import PointSpec
from collectors.profile import DeviceProfile
from config.load import ResolvedCredential, Site
from config.schema import Device
from simulators.modbus_server import ModbusGateway
from simulators.plant import DeviceModel, Plant
from simulators.scenario import ScenarioRunner
from simulators.snmp_agent import SnmpAgent
from simulators.traps import UpsTrapEmitter, parse_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Override:
    """A value pinned on the wire: an engineering value (encoded) or an exact raw value."""

    value: Any
    raw: bool = False


@dataclass
class SimulatedDevice:
    """One configured device with its model, its profile and where it is served."""

    device: Device
    profile: DeviceProfile
    model: DeviceModel
    unit_id: int | None = None
    overrides: dict[str, Override] = field(default_factory=dict)

    def raw_values(self) -> dict[str, codec.RawValue]:
        """Every point's raw wire value: the model's, encoded, unless an override pins it."""
        values = self.model.values()
        raw: dict[str, codec.RawValue] = {}
        for spec in self.profile.points:
            pinned = self.overrides.get(spec.name)
            if pinned is not None:
                raw[spec.name] = pinned.value if pinned.raw else codec.encode(spec, pinned.value)
            elif spec.name in values:
                raw[spec.name] = codec.encode(spec, values[spec.name])
        return raw


def unit_id_of(device: Device, profile: DeviceProfile) -> int | None:
    """The Modbus unit id a device answers to (configured, else the profile default)."""
    if profile.protocol != "modbus":
        return None
    configured = device.modbus.unit_id if device.modbus else None
    return configured if configured is not None else profile.modbus.default_unit_id  # type: ignore[union-attr]


def build_device(device: Device, profile: DeviceProfile, plant: Plant) -> SimulatedDevice:
    """Pair a configured device with its view of the plant; refuse a view that misses profile points."""
    unit_id = unit_id_of(device, profile)
    model = plant.model_for(device, profile, unit_id)
    missing = sorted({spec.name for spec in profile.points} - set(model.values()))
    if missing:
        raise ValueError(f"{device.id}: {type(model).__name__} has no value for {profile.id} points {missing}")
    return SimulatedDevice(device, profile, model, unit_id)


def check_raw(spec: PointSpec, raw: codec.RawValue, protocol: str) -> None:
    """Refuse a raw override the wire cannot carry (Modbus also takes the unsigned bit pattern)."""
    datatype = codec.DATATYPES[spec.datatype]
    if datatype.is_text or datatype.is_float or not isinstance(raw, int):
        return
    low = min(datatype.minimum, 0) if protocol == "modbus" else datatype.minimum
    high = (1 << datatype.width_bits) - 1 if protocol == "modbus" else datatype.maximum
    if not low <= raw <= high:
        raise ValueError(f"{spec.name}: raw {raw} does not fit a {spec.datatype}")


class SiteSimulator:
    """Every device of a site, served on loopback (or wherever the site says) until stopped."""

    def __init__(self, site: Site, *, seed: int | None = None, tick_s: float = 1.0,
                 time_scale: float | None = None):
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self.site = site
        self.tick_s = tick_s
        self.time_scale = time_scale if time_scale is not None else site.config.simulation.time_scale
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.plant = Plant(site, seed)
        self.scenarios: ScenarioRunner | None = None  # attached by whoever runs scenarios (CLI, demo, tests)
        self.devices: dict[str, SimulatedDevice] = {}
        for device in site.devices:
            self.devices[device.id] = build_device(device, site.profile(device), self.plant)
        self._trap_targets = parse_targets(site.config.simulation.trap_targets)
        self._emitters = {device_id: UpsTrapEmitter(sim.profile) for device_id, sim in self.devices.items()
                          if sim.profile.protocol == "snmp" and sim.profile.traps}
        self._agents: dict[str, SnmpAgent] = {}
        self._gateways: dict[tuple[str, int], ModbusGateway] = {}
        self._tick_task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self._running = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> SiteSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind every endpoint, push the first values, start the tick; all or nothing."""
        if self._running:
            return
        self._build_endpoints()
        try:
            for agent in self._agents.values():
                await agent.start()
            for gateway in self._gateways.values():
                await gateway.start()
        except BaseException:
            await self._stop_endpoints()
            raise
        self._running = True
        await self.publish()
        self._tick_task = asyncio.get_running_loop().create_task(self._tick(), name="facwatch-sim-tick")

    async def stop(self) -> None:
        """Stop the tick, close every socket; the ports can be reused at once."""
        self._running = False
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pending, self._pending = list(self._pending), set()
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._stop_endpoints()

    async def _stop_endpoints(self) -> None:
        for endpoint in [*self._agents.values(), *self._gateways.values()]:
            try:
                await endpoint.stop()
            except Exception:
                log.exception("simulator: stopping %r failed", endpoint)

    def _build_endpoints(self) -> None:
        self._agents, self._gateways = {}, {}
        for sim in self.devices.values():
            device = sim.device
            if sim.profile.protocol == "snmp":
                self._agents[device.id] = SnmpAgent(device.id, sim.profile, device.host, device.port,
                                                    self._snmp_credentials(device),
                                                    latency_ms=device.simulation.latency_ms)
            elif (device.host, device.port) not in self._gateways:
                # one gateway per host:port: the first device's latency setting speaks for the gateway
                self._gateways[(device.host, device.port)] = ModbusGateway(
                    device.host, device.port, self._units_behind(device.host, device.port),
                    latency_ms=device.simulation.latency_ms, sslctx=self._modbus_tls(device))

    def _modbus_tls(self, device: Device) -> ssl.SSLContext | None:
        """The server side of a Modbus/TCP Security device (the config makes devices behind one port agree)."""
        files = self.site.modbus_tls.get(device.id)
        return server_context(files) if files is not None else None

    def _units_behind(self, host: str, port: int) -> dict[int, DeviceProfile]:
        """Devices sharing one host:port are one RTU gateway, told apart by unit id."""
        return {sim.unit_id: sim.profile for sim in self.devices.values()
                if (sim.device.host, sim.device.port) == (host, port) and sim.unit_id is not None}

    def _snmp_credential_names(self, device: Device) -> list[str]:
        """The site's simulation credentials; a site without any falls back to the device's own."""
        names = list(self.site.config.simulation.snmp_credentials)
        return names or ([device.credential] if device.credential else [])

    def _snmp_credentials(self, device: Device) -> dict[str, ResolvedCredential]:
        return {name: self.site.credentials[name] for name in self._snmp_credential_names(device)}

    # --- time ------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            self.step((now - last) * self.time_scale)
            last = now
            await self.publish()

    def step(self, dt_s: float) -> None:
        """Advance the plant by dt_s simulated seconds (a failing step is logged, not fatal)."""
        try:
            self.plant.step(dt_s)
        except Exception:
            log.exception("simulator: plant step failed")

    async def advance(self, dt_s: float) -> None:
        """Fast-forward: step every model by dt_s and put the result on the wire now."""
        self.step(dt_s)
        await self.publish()

    async def publish(self) -> None:
        """Push every device's current values to its endpoint, then send the traps they call for."""
        for device_id in self.devices:
            await self._publish_device(device_id)
        await self._send_traps()

    async def _send_traps(self) -> None:
        """Each UPS agent traps what changed (RFC 1628 §1.3 / APC rules in simulators.traps)."""
        if not self._running or not self._trap_targets:
            return
        for device_id, emitter in self._emitters.items():
            agent = self._agents.get(device_id)
            if agent is None or not agent.running:
                continue
            sim = self.devices[device_id]
            try:
                raw = sim.raw_values()
                for pending in emitter.observe(raw, self.plant.clock_s):
                    await agent.send_trap(sim.profile.trap(pending.name), raw, self._trap_targets,
                                          pending.extra_varbinds)
            except Exception:
                log.exception("simulator: traps of %s failed", device_id)

    async def _publish_device(self, device_id: str) -> None:
        if not self._running:
            return
        sim = self.devices[device_id]
        try:
            raw = sim.raw_values()
            if device_id in self._agents:
                self._agents[device_id].update(raw)
            else:
                await self._gateways[(sim.device.host, sim.device.port)].update(sim.unit_id, raw)  # type: ignore[arg-type]
        except Exception:
            log.exception("simulator: publishing %s failed", device_id)

    # --- control -------------------------------------------------------------------------------

    def device(self, device_id: str | None, device_class: str | None = None) -> SimulatedDevice:
        """A simulated device by id, or the first of ``device_class`` when no id is given."""
        if device_id is not None:
            if device_id not in self.devices:
                raise ValueError(f"no simulated device {device_id!r}")
            return self.devices[device_id]
        for sim in self.devices.values():
            if sim.device.device_class == device_class:
                return sim
        raise ValueError(f"the site has no {device_class} device")

    def freeze(self, device_id: str) -> None:
        """Pin every point of a device at its current wire value (a stuck sensor)."""
        sim = self.devices[device_id]
        for point, raw in sim.raw_values().items():
            sim.overrides[point] = Override(raw, raw=True)
        self._schedule_publish(device_id)

    async def silence(self, device_id: str, silent: bool) -> None:
        """Make a device stop answering (SNMP agent closed; a gateway answers 0x0B for its unit) or answer again."""
        sim = self.devices[device_id]
        if device_id in self._agents:
            agent = self._agents[device_id]
            await (agent.stop() if silent else agent.start())
            if not silent:
                await self._publish_device(device_id)
            return
        units = self._gateways[(sim.device.host, sim.device.port)].silent_units
        (units.add if silent else units.discard)(sim.unit_id)  # type: ignore[arg-type]

    @property
    def active_scenario(self) -> str | None:
        """The scenario running now, if any (readings taken meanwhile are tagged with it)."""
        return self.scenarios.active if self.scenarios is not None else None

    def model(self, device_id: str) -> DeviceModel:
        """The view behind a device (scenarios act on ``self.plant``, tests may look here)."""
        return self.devices[device_id].model

    def set_override(self, device_id: str, point: str, value: Any, *, raw: bool = False) -> None:
        """Pin a point: an engineering value / state name, or with raw=True the exact wire value."""
        sim = self.devices[device_id]
        spec = sim.profile.point(point)
        if raw:
            check_raw(spec, value, sim.profile.protocol)
        else:
            codec.encode(spec, value)  # a bad state name or type fails here, not in the tick
        sim.overrides[point] = Override(value, raw)
        self._schedule_publish(device_id)

    def clear_override(self, device_id: str, point: str | None = None) -> None:
        """Unpin one point (or every point of the device when point is None)."""
        overrides = self.devices[device_id].overrides
        if point is None:
            overrides.clear()
        else:
            overrides.pop(point, None)
        self._schedule_publish(device_id)

    def _schedule_publish(self, device_id: str) -> None:
        if not self._running:
            return
        task = asyncio.get_running_loop().create_task(self._publish_device(device_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- what is served where --------------------------------------------------------------------

    def endpoints(self) -> list[dict[str, Any]]:
        """Where each device is served (JSON-serialisable; credential names, never their values)."""
        rows = []
        for sim in self.devices.values():
            device = sim.device
            row: dict[str, Any] = {"device": device.id, "protocol": sim.profile.protocol, "host": device.host,
                                   "port": device.port, "profile": sim.profile.id}
            if sim.profile.protocol == "snmp":
                row["snmp_credentials"] = self._snmp_credential_names(device)
            else:
                row["unit_id"] = sim.unit_id
                if device.id in self.site.modbus_tls:
                    row["tls"] = True  # Modbus/TCP Security
            rows.append(row)
        return rows


async def serve_site(site: Site, stop_event: asyncio.Event, *, seed: int | None = None, tick_s: float = 1.0,
                     on_ready: Callable[[SiteSimulator], None] | None = None) -> None:
    """Run a site simulator until stop_event is set (what ``facwatch simulate`` needs)."""
    async with SiteSimulator(site, seed=seed, tick_s=tick_s) as sim:
        if on_ready is not None:
            on_ready(sim)
        await stop_event.wait()
