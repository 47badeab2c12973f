"""Power chain physics: utility → ATS ← generator(s); the ATS output (the essential bus) feeds every UPS.

Topology is read from the site, no extra config: the utility feeds the ATS's normal side, every
``genset`` device its emergency side, and the bus behind it feeds each UPS rectifier and the
cooling. A site without an ATS device still has the switching logic (default delays); a site
without a generator simply drops the bus while the utility is down, so its UPSs sit on the utility.

Each step: the utility moves, generators start/run/cool with the bus load of the last step, the
ATS acts on what it senses, then every UPS sees the bus and drains or recharges.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device, DeviceSimulation
from simulators.devices.ats import AtsModel, Position, Sources, TransferSwitch
from simulators.devices.climate import MeanReverting
from simulators.devices.genset import TEST_MODES, DseGensetModel, Generator
from simulators.devices.ups import NOMINAL_FREQUENCY_HZ, NOMINAL_VOLTAGE_V, SELF_TEST_OUTCOMES, UpsCore, UpsModel
from simulators.devices.ups_apc import ApcUpsModel

if TYPE_CHECKING:
    from simulators.plant import DeviceModel, Plant

# Cooling (CRAC fans and compressors, pumps) draws about 0.35 kW per kW of IT: a PUE near 1.4.
COOLING_KW_PER_IT_KW = 0.35
POWER_CLASSES = frozenset({"ups", "genset", "ats"})
UTILITY = "power:utility"  # the name the utility draws its random numbers under
T = TypeVar("T")


class Utility:
    """The utility supply at the intake: present or not, and its voltage and frequency."""

    def __init__(self, noise: float, rng: random.Random):
        self.rng = rng
        self.available = True
        self.in_state_s = math.inf  # seconds since it last failed or returned (never failed: forever)
        self._voltage = MeanReverting(NOMINAL_VOLTAGE_V, 1.5 * noise, 120.0, NOMINAL_VOLTAGE_V)
        self._frequency = MeanReverting(NOMINAL_FREQUENCY_HZ, 0.02 * noise, 60.0, NOMINAL_FREQUENCY_HZ)

    def set(self, available: bool) -> None:
        """A failure (False) or a return (True); a repeat of the present state changes nothing."""
        if bool(available) != self.available:
            self.available = bool(available)
            self.in_state_s = 0.0

    def step(self, dt_s: float) -> None:
        """Advance dt_s seconds."""
        self.in_state_s += dt_s
        for process in (self._voltage, self._frequency):
            process.step(dt_s, self.rng)

    @property
    def voltage_v(self) -> float:
        """L1-N voltage at the intake (0 while failed)."""
        return self._voltage.value if self.available else 0.0

    @property
    def frequency_hz(self) -> float:
        """Frequency at the intake (0 while failed)."""
        return self._frequency.value if self.available else 0.0


class EmergencySide:
    """The ATS's emergency terminals: the voltage of the first generator that can carry the load."""

    def __init__(self, generators: Mapping[str, Generator]):
        self.generators = generators

    def _source(self) -> Generator | None:
        ready = [gen for gen in self.generators.values() if gen.available]
        return (ready or list(self.generators.values()) or [None])[0]

    @property
    def voltage_v(self) -> float:
        """Emergency-side L1-N voltage."""
        source = self._source()
        return source.voltage_v if source else 0.0

    @property
    def frequency_hz(self) -> float:
        """Emergency-side frequency."""
        source = self._source()
        return source.frequency_hz if source else 0.0


def room_shares(room_ids: list[str], configured_kw: Mapping[str, float], nominal_kw: float) -> dict[str, float]:
    """Each room's fraction of the IT load: configured kW in proportion, the rest shared evenly."""
    listed = {room: kw for room, kw in configured_kw.items() if room in room_ids}
    if not listed:
        return {room: 1.0 / len(room_ids) for room in room_ids}
    unlisted = [room for room in room_ids if room not in listed]
    basis = max(nominal_kw, sum(listed.values())) if unlisted else sum(listed.values())
    shares = {room: kw / basis for room, kw in listed.items()}
    rest = max(0.0, 1.0 - sum(shares.values()))
    shares.update({room: rest / len(unlisted) for room in unlisted})
    return shares


def pick(items: Mapping[str, T], item_id: str | None, what: str) -> list[T]:
    """One item by id, or all of them when no id is given; ValueError for an unknown id or none at all."""
    if item_id is None:
        if not items:
            raise ValueError(f"the site has no {what}")
        return list(items.values())
    if item_id not in items:
        raise ValueError(f"no {what} {item_id!r} (have {sorted(items)})")
    return [items[item_id]]


class PowerChain:
    """Utility, generators, ATS and UPSs of one site, coupled through the essential bus."""

    def __init__(self, site: Site, epoch_at_start: float | None = None):
        self.site = site
        # the one wall-clock read: dates and ats.last_transfer are this epoch plus simulated time
        self.epoch_at_start = time.time() if epoch_at_start is None else epoch_at_start
        self.clock_s = 0.0
        devices = [device for device in site.devices if device.device_class in POWER_CLASSES]
        self.utility = Utility(max((d.simulation.noise for d in devices), default=0.0), random.Random())
        self.ups = {d.id: UpsCore(d.simulation, random.Random()) for d in devices if d.device_class == "ups"}
        self.generators = {d.id: Generator(d.simulation, random.Random())
                           for d in devices if d.device_class == "genset"}
        ats = next((d for d in devices if d.device_class == "ats"), None)
        self.ats = TransferSwitch(ats.simulation if ats else DeviceSimulation(), self.epoch_at_start)
        self.emergency = EmergencySide(self.generators)
        self._unseeded = {UTILITY, *self.ups, *self.generators}
        self._room_shares = room_shares([room.id for room in site.config.rooms],
                                        site.config.simulation.room_it_load_kw, self._nominal_it_kw())

    # --- what rooms, scenarios and tests read -----------------------------------------------------

    @property
    def utility_available(self) -> bool:
        """True while the utility supply is present."""
        return self.utility.available

    @property
    def essential_bus_live(self) -> bool:
        """True while the bus that feeds the UPSs and the cooling has voltage (utility or generator)."""
        position = self.ats.position
        if position is Position.MAINS:
            return self.utility.available
        return position is Position.GENERATOR and any(gen.available for gen in self.generators.values())

    @property
    def ats_position(self) -> str:
        """Where the essential bus is connected: mains, generator, open or transferring."""
        return self.ats.position.value

    @property
    def epoch_now_s(self) -> float:
        """Unix time of the simulation now."""
        return self.epoch_at_start + self.clock_s

    def generator(self, generator_id: str | None = None) -> Generator:
        """A generator set's state (the first one when no id is given)."""
        return pick(self.generators, generator_id, "generator")[0]

    def it_load_kw(self, room_id: str) -> float:
        """IT load dissipated in a room: the UPS output shared among the rooms."""
        return self.it_total_kw() * self._room_shares.get(room_id, 0.0)

    def it_total_kw(self) -> float:
        """IT load of the whole site."""
        if self.ups:
            return sum(core.output_power_w for core in self.ups.values()) / 1000.0
        # no UPS: the IT load hangs on the essential bus itself and drops with it
        return self._nominal_it_kw() if self.essential_bus_live else 0.0

    @property
    def cooling_load_kw(self) -> float:
        """Electrical load of the cooling on the essential bus."""
        return COOLING_KW_PER_IT_KW * self.it_total_kw() if self.essential_bus_live else 0.0

    @property
    def essential_bus_load_kw(self) -> float:
        """What the bus supplies: UPS input (load through the converter plus recharge) and cooling."""
        if not self.essential_bus_live:
            return 0.0
        ups_kw = sum(core.input_power_w for core in self.ups.values()) / 1000.0
        unprotected_kw = 0.0 if self.ups else self.it_total_kw()
        return ups_kw + unprotected_kw + self.cooling_load_kw

    def _nominal_it_kw(self) -> float:
        if self.ups:
            return sum(core.params.rated_power_w * core.params.load_fraction for core in self.ups.values()) / 1000
        return sum(self.site.config.simulation.room_it_load_kw.values())

    # --- knobs for scenarios ------------------------------------------------------------------------

    def set_utility(self, available: bool) -> None:
        """A utility failure (False) or its return (True)."""
        self.utility.set(available)

    def set_generator_fails_to_start(self, failing: bool, generator_id: str | None = None) -> None:
        """Make a generator (every one when no id is given) fail, or stop failing, to start."""
        for gen in pick(self.generators, generator_id, "generator"):
            gen.fails_to_start = bool(failing)

    def reset_generator_alarms(self, generator_id: str | None = None) -> None:
        """Reset latched generator alarms (fail to start), as an operator at the controller would."""
        for gen in pick(self.generators, generator_id, "generator"):
            gen.reset_alarms()

    def start_generator_test(self, on_load: bool = True, generator_id: str | None = None) -> None:
        """Put a generator in test mode: on load the ATS moves the bus to it, off load it runs unloaded."""
        for gen in pick(self.generators, generator_id, "generator"):
            gen.mode = "test_on_load" if on_load else "test_off_load"

    def end_generator_test(self, generator_id: str | None = None) -> None:
        """Back to auto: the ATS retransfers, the set cools down and stops."""
        for gen in pick(self.generators, generator_id, "generator"):
            if gen.mode in TEST_MODES:
                gen.mode = "auto"

    def start_ups_self_test(self, ups_id: str | None = None, result: str = "pass") -> None:
        """A 10 s battery self-test on a UPS (every UPS when no id is given) ending in pass, warning or fail."""
        if result not in SELF_TEST_OUTCOMES:
            raise ValueError(f"self-test result must be one of {SELF_TEST_OUTCOMES}, not {result!r}")
        for core in pick(self.ups, ups_id, "UPS"):
            core.start_self_test(result, self.epoch_now_s)

    # --- time ------------------------------------------------------------------------------------

    def step(self, dt_s: float, plant: Plant) -> None:
        """Advance the chain by dt_s simulated seconds."""
        self._seed_from(plant)
        self.clock_s += dt_s
        self.utility.step(dt_s)
        self._step_generators(dt_s)
        supply_before = self._bus_supply()
        self.ats.step(self.clock_s, dt_s, self._sources())
        self._step_ups(dt_s, supply_before)

    def _step_generators(self, dt_s: float) -> None:
        """Generators carry the bus load of the last step, shared by those the ATS has connected."""
        on_generator = self.ats.position is Position.GENERATOR
        ready = [gen for gen in self.generators.values() if gen.available]
        share_kw = self.essential_bus_load_kw / len(ready) if on_generator and ready else 0.0
        remote_start = not self.utility.available or self.ats.position in (Position.GENERATOR, Position.TRANSFERRING)
        for gen in self.generators.values():
            gen.step(dt_s, remote_start=remote_start, load_kw=share_kw if gen in ready else 0.0)

    def _sources(self) -> Sources:
        ready = [gen.ready_for_s for gen in self.generators.values()
                 if gen.available and gen.ready_for_s is not None]
        want = any(gen.mode == "test_on_load" and gen.wants_to_run(False) for gen in self.generators.values())
        return Sources(mains_ok=self.utility.available, mains_for_s=self.utility.in_state_s,
                       generator_ready_s=max(ready) if ready else None, want_generator=want)

    def _step_ups(self, dt_s: float, supply_before: tuple[float, float]) -> None:
        """Every rectifier sees the bus: the part of the step it was dead, and the part it was live."""
        dead_s = min(self.ats.dead_in_step_s, dt_s)
        dead = ((0.0, 0.0), dead_s)
        if self.essential_bus_live:  # the break (if any) came first: a failure bridged, a transfer done
            segments = [dead, (self._bus_supply(), dt_s - dead_s)]
        else:
            segments = [(supply_before, dt_s - dead_s), dead]
        segments = [segment for segment in segments[:-1] if segment[1] > 1e-9] + segments[-1:]
        for core in self.ups.values():
            for (voltage_v, frequency_hz), seconds in segments:
                core.feed(voltage_v, frequency_hz)
                core.step(seconds)

    def _bus_supply(self) -> tuple[float, float]:
        if not self.essential_bus_live:
            return 0.0, 0.0
        source = self.utility if self.ats.position is Position.MAINS else self.emergency
        return source.voltage_v, source.frequency_hz

    def _seed_from(self, plant: Plant) -> None:
        """Anything no view has seeded yet draws from the plant's generator for its name."""
        for name in list(self._unseeded):
            self._seed(name, plant.rng(name))

    def _seed(self, name: str, rng: random.Random) -> None:
        if name not in self._unseeded:
            return
        self._unseeded.discard(name)
        target = self.utility if name == UTILITY else self.ups.get(name) or self.generators[name]
        target.rng = rng

    # --- device views ------------------------------------------------------------------------------

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> DeviceModel | None:
        """The view of the power chain a UPS, generator or ATS device serves (None for other classes)."""
        if profile.device_class not in POWER_CLASSES:
            return None
        self._adopt(device, rng)
        self._seed(device.id, rng)
        views = {
            "ups/ietf_rfc1628": lambda: UpsModel(self.ups[device.id]),
            "ups/apc_powernet": lambda: ApcUpsModel(self.ups[device.id], name=device.id,
                                                    epoch_at_start=self.epoch_at_start),
            "genset/dse_gencomm": lambda: DseGensetModel(self.generators[device.id], self.utility, name=device.id),
            "ats/facwatch_ats": lambda: AtsModel(self.ats, self.utility, self.emergency),
        }
        build = views.get(profile.id)
        return build() if build is not None else None

    def _adopt(self, device: Device, rng: random.Random) -> None:
        """A device the site did not list at construction (a test building views by hand) joins the chain."""
        if device.device_class == "ups" and device.id not in self.ups:
            self.ups[device.id] = UpsCore(device.simulation, rng)
        elif device.device_class == "genset" and device.id not in self.generators:
            self.generators[device.id] = Generator(device.simulation, rng)

