"""Detection zones of the fire alarm panel and its Modbus-gateway view (firepanel/notifier_modbusgw).

A zone's state is what its conventional detectors say (set by a scenario) raised by any aspirating
detector watching it (VESDA Alert/Action → prealarm, Fire 1/Fire 2 → alarm). A disabled zone reports
nothing, so it can never complete a cross-zoned release. The view packs each zone into the MODBUS-GW
status word (REFERENCE.md §5.2): Prealarm bit 14, Trouble bit 13, Active bit 11 with event 0x10 fire
alarm, Disable bit 9 with event 0x52, and 0xFF in the event byte for a zone that is not programmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from config.schema import Device

PANEL_ZONES = range(1, 9)  # the profile describes zones 1-8
MAX_ZONE = 200  # highest zone number a site may configure (config.schema Zone)


class ZoneState(StrEnum):
    """What a scenario can make a zone's detectors say."""

    NORMAL = "normal"
    PREALARM = "prealarm"
    ALARM = "alarm"
    TROUBLE = "trouble"
    DISABLED = "disabled"


FIRE_RANK = {ZoneState.NORMAL: 0, ZoneState.TROUBLE: 0, ZoneState.PREALARM: 1, ZoneState.ALARM: 2}


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    """One zone as the panel reports it."""

    alarm: bool = False
    prealarm: bool = False
    trouble: bool = False
    disabled: bool = False

    @property
    def event(self) -> str:
        """MODBUS-GW active event type (REFERENCE.md §5.2), as the profile names it."""
        if self.alarm:
            return "fire_alarm"  # 0x10
        if self.disabled:
            return "disabled"  # 0x52
        return "none"


class ZoneBoard:
    """Every detection zone: scenario-set detector states and what aspirating detectors add."""

    def __init__(self) -> None:
        self._set: dict[int, ZoneState] = {}
        self._detected: dict[int, ZoneState] = {}

    def set(self, zone: int, state: str) -> None:
        """Set what the conventional detectors of a zone say; ValueError on an unknown zone or state."""
        if not 1 <= zone <= MAX_ZONE:
            raise ValueError(f"zone {zone} is not 1-{MAX_ZONE}")
        try:
            self._set[zone] = ZoneState(state)
        except ValueError:
            raise ValueError(f"zone state {state!r} is not one of {', '.join(ZoneState)}") from None

    def clear(self) -> None:
        """Every zone back to normal."""
        self._set.clear()
        self._detected.clear()

    def detect(self, detections: dict[int, ZoneState]) -> None:
        """Replace what the aspirating detectors report (recomputed every step)."""
        self._detected = dict(detections)

    def status(self, zone: int) -> ZoneStatus:
        """The zone as the panel sees it."""
        manual = self._set.get(zone, ZoneState.NORMAL)
        if manual is ZoneState.DISABLED:
            return ZoneStatus(disabled=True)
        rank = max(FIRE_RANK[manual], FIRE_RANK[self._detected.get(zone, ZoneState.NORMAL)])
        return ZoneStatus(alarm=rank == 2, prealarm=rank == 1, trouble=manual is ZoneState.TROUBLE)

    def in_alarm(self, zone: int) -> bool:
        """True while the zone is in fire alarm (what counts for a release)."""
        return self.status(zone).alarm


class FirePanelView:
    """MODBUS-GW zone status words of one panel; zones outside its ``zones:`` are not programmed."""

    def __init__(self, board: ZoneBoard, device: Device):
        self.board = board
        self.programmed = frozenset(device.simulation.zones or PANEL_ZONES)

    def values(self) -> dict[str, str]:
        """State names for every point of firepanel/notifier_modbusgw."""
        values = {"panel.silenced": "normal", "panel.reset": "normal"}
        for zone in PANEL_ZONES:
            values.update(self._zone(zone))
        return values

    def _zone(self, zone: int) -> dict[str, str]:
        if zone not in self.programmed:
            status, event = ZoneStatus(), "not_present"  # 0xFF: not programmed
        else:
            status = self.board.status(zone)
            event = status.event
        prefix = f"zone.{zone}"
        return {
            f"{prefix}.alarm": "active" if status.alarm else "normal",
            f"{prefix}.event": event,
            f"{prefix}.trouble": "trouble" if status.trouble else "normal",
            f"{prefix}.disabled": "disabled" if status.disabled else "enabled",
            f"{prefix}.prealarm": "prealarm" if status.prealarm else "normal",
            f"{prefix}.ack": "none",
        }
