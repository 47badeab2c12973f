"""VESDA aspirating smoke detector behind a VESDAnet Modbus HLI (vesda/xtralis_hli, REFERENCE.md §5.1).

Smoke is kept on the HLI's relative scale: 20 = the Fire 1 threshold, so %obs/m = relative × Fire1 / 20.
It ramps toward a scenario's target; the alarm level follows the four thresholds, and the detector
raises its zones: Alert and Action are prealarms, Fire 1 and Fire 2 are alarms (so Fire 1 counts as a
detector for cross-zoned release, REFERENCE.md §5.3).
"""

from __future__ import annotations

import math
import random
from enum import StrEnum

from simulators.devices.climate import MeanReverting
from simulators.devices.firepanel import ZoneState

# ⚠ Recalled VESDA LaserPLUS factory defaults (REFERENCE.md §5.1 found none); %obs/m
ALERT_OBS = 0.08
ACTION_OBS = 0.14
FIRE1_OBS = 0.20
FIRE2_OBS = 2.0
RELATIVE_FULL_SCALE = 20.0  # the HLI reports 0-20, 20 = Fire 1; above that it stays at 20
BACKGROUND_RELATIVE = 1.0  # clean hall air reads about 0.01 %obs/m
FLOW_SIGMA_PCT = 1.5  # airflow deviation from the normalised flow wanders a little (filter, fans)
FLOW_TAU_S = 600.0


def relative(obs_per_m: float) -> float:
    """A %obs/m value on the HLI's relative scale."""
    return round(obs_per_m * RELATIVE_FULL_SCALE / FIRE1_OBS, 9)  # 0.08 → 8, not 8.000000000000002


class VesdaLevel(StrEnum):
    """The detector's highest alarm level reached now (the profile's level names)."""

    NORMAL = "normal"
    ALERT = "alert"
    ACTION = "action"
    FIRE1 = "fire1"
    FIRE2 = "fire2"


# highest first: the first threshold the smoke reaches names the level
LEVELS = ((VesdaLevel.FIRE2, FIRE2_OBS), (VesdaLevel.FIRE1, FIRE1_OBS),
          (VesdaLevel.ACTION, ACTION_OBS), (VesdaLevel.ALERT, ALERT_OBS))
ZONE_STATE = {VesdaLevel.ALERT: ZoneState.PREALARM, VesdaLevel.ACTION: ZoneState.PREALARM,
              VesdaLevel.FIRE1: ZoneState.ALARM, VesdaLevel.FIRE2: ZoneState.ALARM}


class VesdaDetector:
    """One detector: smoke ramping toward a target, its level, the zones it raises, its airflow."""

    def __init__(self, device_id: str, zones: list[int]):
        self.device_id = device_id
        self.zones = tuple(zones)
        self.smoke_relative = BACKGROUND_RELATIVE
        self.target_relative = BACKGROUND_RELATIVE
        self._rate_per_s = math.inf
        self._flow = MeanReverting(0.0, FLOW_SIGMA_PCT, FLOW_TAU_S, 0.0)

    def set_smoke(self, target_relative: float, ramp_s: float = 60.0) -> None:
        """Ramp the smoke linearly to ``target_relative`` (may exceed 20 to reach Fire 2) over ramp_s."""
        self.target_relative = max(float(target_relative), 0.0)
        distance = abs(self.target_relative - self.smoke_relative)
        self._rate_per_s = distance / ramp_s if ramp_s > 0 else math.inf

    def reset(self) -> None:
        """Clean air at once."""
        self.smoke_relative = self.target_relative = BACKGROUND_RELATIVE

    def step(self, dt_s: float, rng: random.Random) -> None:
        """Move the smoke toward its target and the airflow around normal."""
        gap = self.target_relative - self.smoke_relative
        self.smoke_relative += math.copysign(min(abs(gap), self._rate_per_s * dt_s), gap)
        self._flow.step(dt_s, rng)

    @property
    def level(self) -> VesdaLevel:
        """Alarm level by the thresholds."""
        for level, threshold in LEVELS:
            if self.smoke_relative >= relative(threshold):
                return level
        return VesdaLevel.NORMAL

    @property
    def flow_pct(self) -> float:
        """Airflow deviation from the normalised flow, %."""
        return self._flow.value

    def detections(self) -> dict[int, ZoneState]:
        """The zone state this detector raises on each of its zones (none while normal)."""
        state = ZONE_STATE.get(self.level)
        return {zone: state for zone in self.zones} if state else {}


class VesdaView:
    """HLI zone block of one detector."""

    def __init__(self, detector: VesdaDetector):
        self.detector = detector

    def values(self) -> dict[str, float | str]:
        """Engineering values and state names for every point of vesda/xtralis_hli."""
        detector = self.detector
        return {
            "vesda.smoke_relative": min(detector.smoke_relative, RELATIVE_FULL_SCALE),
            "vesda.level": str(detector.level),
            **{f"vesda.fault.{name}": "normal" for name in ("head", "power", "scanner", "flow", "network")},
            "vesda.isolated": "normal",
            "vesda.alert_threshold": ALERT_OBS,
            "vesda.action_threshold": ACTION_OBS,
            "vesda.fire1_threshold": FIRE1_OBS,
            "vesda.fire2_threshold": FIRE2_OBS,
            "vesda.flow_deviation": detector.flow_pct,
        }
