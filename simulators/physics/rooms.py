"""Room physics: IT heat against CRAC cooling, the cold-aisle air, and humidity at the rack inlets.

Each room is one lumped heat balance on its cold-aisle air T:

    C · dT/dt = Q_IT − Σ Q_crac(T + ΔT_return)

Q_IT comes from the power chain (``plant.power.it_load_kw``); every CRAC of the room (class ``crac``,
``simulators.devices.crac``) removes heat in proportion to its return air above its set point, up to
its capacity, while the essential bus is live and it has not failed. With spare capacity the balance
settles with the cold aisle at the set point; with no cooling it rises at Q_IT / C.

C is an effective capacity: the hall's air plus the share of raised floor, racks and servers that
exchanges heat within minutes. 2000 kJ/K is about 1,600 m³ of air, or a 500 m³ hall plus a fifth of
the steel in 25 racks; loss of ALL cooling then warms the cold aisle at Q_IT × 0.03 °C/min per kW:
0.54 °C/min at 18 kW, 1.05 at 35 kW, 1.5 at 50 kW: a realistic 0.5–2 °C per minute. Cooling back,
the same C gives its heat back over C / G (G the units' airflow, kW/K): minutes, not seconds.

Humidity is carried as a dew point that drifts slowly (absolute humidity only changes with make-up air
and people); RH follows from temperature (REFERENCE.md §6, Magnus). A room with no CRAC configured is
cooled by plant facwatch does not monitor, modelled as one generous unit on the essential bus.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING

from collectors.profile import DeviceProfile
from config.load import Site
from config.schema import Device, DeviceSimulation
from simulators.devices.climate import MeanReverting, RoomClimateModel, dew_point_c, relative_humidity_pct
from simulators.devices.crac import Controller, CracUnit, LiebertCracView, UniflairCracView
from simulators.devices.netbotz import NetBotzModel

if TYPE_CHECKING:
    from simulators.plant import DeviceModel, Plant

ROOM_HEAT_CAPACITY_KJ_PER_K = 2000.0
IT_DELTA_T_K = 12.0  # server fans alone (CRAC fans stopped) heat their air by 10–15 K
DEW_POINT_DRIFT_SIGMA_C = 0.3  # ≈ 1 %RH: a sealed hall's absolute humidity wanders little
DEW_POINT_DRIFT_TAU_S = 4 * 3600.0
UNMONITORED_COOLING = DeviceSimulation(cooling_kw=500.0, setpoint_c=18.0)  # ample: rooms without CRACs hold
DEFAULT_AIR = DeviceSimulation()  # a room with no probes: 21 °C / 45 %RH air


@dataclass
class RoomState:
    """One room's air; read-only outside ``RoomsModel``.

    ``air_c`` is the cold-aisle (rack inlet) air, ``return_c`` the air back at the CRACs,
    ``supply_c`` the mixed supply of the units whose fans turn (the return air when none does).
    """

    room_id: str
    normal_air_c: float
    normal_dew_point_c: float
    air_c: float
    dew_point_c: float
    return_c: float
    supply_c: float
    it_load_kw: float = 0.0
    cooling_kw: float = 0.0

    @property
    def humidity_pct(self) -> float:
        """Relative humidity of the cold-aisle air."""
        return min(relative_humidity_pct(self.air_c, self.dew_point_c), 100.0)


def return_rise_k(it_load_kw: float, airflow_kw_per_k: float) -> float:
    """Return air above the cold aisle: all the IT heat carried by the CRACs' airflow."""
    if airflow_kw_per_k <= 0.0:
        return IT_DELTA_T_K if it_load_kw > 0 else 0.0
    return min(it_load_kw / airflow_kw_per_k, IT_DELTA_T_K)


def implicit_step(air_c: float, dt_s: float, it_load_kw: float, rise_k: float,
                  controllers: Sequence[Controller]) -> float:
    """Cold-aisle temperature after dt_s by backward Euler (stable at any dt and any CRAC gain).

    Solves C·(x − T)/dt = Q_IT − Σ cooling(x + rise) exactly: the cooling is piecewise linear in x,
    so find the segment between the controllers' kinks where the balance crosses zero.
    """
    conductance = ROOM_HEAT_CAPACITY_KJ_PER_K / dt_s  # kW/K
    active = [c for c in controllers if c.gain_kw_per_k > 0 and c.limit_kw > 0]

    def excess(x: float) -> float:  # grows with x: cooling never falls as the air warms
        return conductance * (x - air_c) - it_load_kw + sum(c.output_kw(x + rise_k) for c in active)

    def slope(x: float) -> float:  # inside a segment: the room plus every unit between 0 and its limit
        return conductance + sum(c.gain_kw_per_k for c in active
                                 if 0 < c.gain_kw_per_k * (x + rise_k - c.setpoint_c) < c.limit_kw)

    kinks = sorted(c.setpoint_c - rise_k + share for c in active for share in (0.0, c.limit_kw / c.gain_kw_per_k))
    low = max((x for x in kinks if excess(x) <= 0), default=None)
    high = min((x for x in kinks if excess(x) > 0), default=None)
    if low is not None and high is not None:
        anchor, inside = low, (low + high) / 2
    elif low is not None:
        anchor, inside = low, low + 1.0  # above the last kink
    elif high is not None:
        anchor, inside = high, high - 1.0  # below the first kink
    else:
        return air_c + it_load_kw / conductance  # no cooling at all
    return anchor - excess(anchor) / slope(inside)


def set_fans(units: list[CracUnit], it_load_kw: float, cold_aisle_c: float) -> None:
    """EC fans of the running units: their share of the load, more while the cold aisle is warm."""
    running = [unit for unit in units if unit.running]
    capacity = sum(unit.capacity_kw for unit in running)
    for unit in running:
        unit.set_fan_speed(it_load_kw / capacity, cold_aisle_c)


class RoomsModel:
    """Rooms of the site, their CRACs and the probes in them."""

    def __init__(self, site: Site):
        self.site = site
        self.sensors: dict[str, RoomClimateModel] = {}
        self.cracs: dict[str, CracUnit] = {}
        self._rooms: dict[str, RoomState] = {}
        self._units: dict[str, list[CracUnit]] = {}
        self._drift: dict[str, MeanReverting] = {}
        self._rng: random.Random | None = None
        room_ids = [room.id for room in site.config.rooms]
        room_ids += [device.room for device in site.devices if device.room not in room_ids]
        for room_id in dict.fromkeys(room_ids):
            self._add_room(room_id)

    # --- construction --------------------------------------------------------------------------

    def _add_room(self, room_id: str) -> None:
        devices = [device for device in self.site.devices if device.room == room_id]
        cracs = [device for device in devices if device.device_class == "crac"]
        probes = [device.simulation for device in devices if device.device_class == "thsensor"] or [DEFAULT_AIR]
        cooling = [device.simulation for device in cracs] or [UNMONITORED_COOLING]
        normal_c = sum(p.setpoint_c * p.cooling_kw for p in cooling) / sum(p.cooling_kw for p in cooling)
        normal_dp = fmean(dew_point_c(p.temperature_c, p.humidity_pct) for p in probes)
        room = RoomState(room_id, normal_c, normal_dp, normal_c, normal_dp, normal_c, normal_c)
        self._rooms[room_id] = room
        self._drift[room_id] = MeanReverting(0.0, DEW_POINT_DRIFT_SIGMA_C, DEW_POINT_DRIFT_TAU_S, 0.0)
        units = [CracUnit.build(device.id, room, device.simulation) for device in cracs]
        self.cracs.update((unit.device_id, unit) for unit in units)
        self._units[room_id] = units or [CracUnit.build(f"{room_id}-unmonitored-cooling", room, UNMONITORED_COOLING)]

    # --- knobs and read-only state -------------------------------------------------------------

    def set_crac_failed(self, crac_id: str, failed: bool) -> None:
        """Trip a CRAC (fans and compressors stop, alarms on) or bring it back (it restarts)."""
        self.crac(crac_id).failed = bool(failed)

    def room(self, room_id: str) -> RoomState:
        """The air of one room (read-only)."""
        try:
            return self._rooms[room_id]
        except KeyError:
            raise KeyError(f"no room {room_id!r} (rooms: {', '.join(self._rooms)})") from None

    def crac(self, crac_id: str) -> CracUnit:
        """One configured CRAC unit (read-only except through the knobs)."""
        try:
            return self.cracs[crac_id]
        except KeyError:
            raise KeyError(f"no CRAC {crac_id!r} (CRACs: {', '.join(self.cracs) or 'none'})") from None

    # --- time ----------------------------------------------------------------------------------

    def step(self, dt_s: float, plant: Plant) -> None:
        """Heat balance of every room, then the probes' own noise."""
        if dt_s <= 0:
            return
        if self._rng is None:
            self._rng = plant.rng("rooms")
        bus_live = plant.power.essential_bus_live
        for room_id, room in self._rooms.items():
            self._step_room(room, dt_s, plant.power.it_load_kw(room_id), bus_live, self._rng)
        for sensor in self.sensors.values():
            sensor.step(dt_s)

    def _step_room(self, room: RoomState, dt_s: float, it_load_kw: float, bus_live: bool,
                   rng: random.Random) -> None:
        units = self._units[room.room_id]
        for unit in units:
            unit.update_power(dt_s, bus_live)
        set_fans(units, it_load_kw, room.air_c)
        airflow = sum(unit.airflow_kw_per_k for unit in units)
        rise = return_rise_k(it_load_kw, airflow)
        room.air_c = implicit_step(room.air_c, dt_s, it_load_kw, rise, [unit.controller() for unit in units])
        room.return_c = room.air_c + rise
        for unit in units:
            unit.settle(dt_s, room.return_c, rng)
        room.it_load_kw = it_load_kw
        room.cooling_kw = sum(unit.cooling_kw for unit in units)
        room.supply_c = (sum(unit.supply_c * unit.airflow_kw_per_k for unit in units) / airflow
                         if airflow > 0 else room.return_c)
        room.dew_point_c = room.normal_dew_point_c + self._drift[room.room_id].step(dt_s, rng)

    # --- device views --------------------------------------------------------------------------

    def model_for(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                  rng: random.Random) -> DeviceModel | None:
        """Probe views for thsensor devices, Liebert / Uniflair views for CRACs; None for the rest."""
        if profile.device_class == "thsensor":
            return self._probe_view(device, profile, unit_id, rng)
        if profile.device_class == "crac":
            return self._crac_view(device, profile)
        return None

    def _probe_view(self, device: Device, profile: DeviceProfile, unit_id: int | None,
                    rng: random.Random) -> DeviceModel:
        probe = RoomClimateModel(device.simulation, rng, unit_id=unit_id or 1, room=self._rooms.get(device.room))
        self.sensors[device.id] = probe
        if profile.protocol == "snmp":
            return NetBotzModel(probe, device.label)
        return probe

    def _crac_view(self, device: Device, profile: DeviceProfile) -> DeviceModel | None:
        unit = self.crac(device.id)
        if profile.id == "crac/liebert_gp_env":
            return LiebertCracView(unit)
        if profile.id == "crac/uniflair_modbus":
            return UniflairCracView(unit)
        return None
