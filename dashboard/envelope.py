"""Envelopes and derived-value parameters as the loaded alert rules define them (never hard-coded here).

The dashboard colours a value with the same levels the alert engine pages on, and projects UPS runtime
and fuel with the same Peukert exponent and tank figures, so the wall and the pager never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.derived import Estimate, dew_point, fuel_days_full_load, ups_autonomy_full_load
from alerts.rules import FUEL_PARAMS, Level, Rule, matches
from collectors.model import Severity
from config.schema import Device


@dataclass(frozen=True, slots=True)
class Envelope:
    """The warning and critical levels of one threshold rule for one device and point."""

    rule: str
    warning: Level | None
    critical: Level | None
    description: str = ""

    def severity(self, value: float) -> Severity:
        """OK inside the envelope, else the worst level breached (no hysteresis: this is a display)."""
        if self.critical is not None and self.critical.breached(value, 0.0):
            return Severity.CRITICAL
        if self.warning is not None and self.warning.breached(value, 0.0):
            return Severity.WARNING
        return Severity.OK

    def text(self, unit: str = "") -> str:
        """The envelope in words: the rule's own ``envelope`` annotation, else its levels."""
        if self.description:
            return self.description
        parts = [f"{name} {_band(level, unit)}" for name, level in (("warning", self.warning),
                                                                   ("critical", self.critical)) if level]
        return ", ".join(parts)


def _band(level: Level, unit: str) -> str:
    suffix = f" {unit}" if unit else ""
    if level.above is not None and level.below is not None:
        return f"{level.below:g}–{level.above:g}{suffix}"
    if level.above is not None:
        return f"≤ {level.above:g}{suffix}"
    return f"≥ {level.below:g}{suffix}"


def threshold_rule(rules: Sequence[Rule], device: Device, point: str | None, derived: str | None) -> Rule | None:
    """The first threshold rule for this device and point (or derived value), in rule-file order."""
    for rule in rules:
        if rule.kind != "threshold" or rule.derived != derived:
            continue
        if matches(rule, device.device_class, device.room, device.id, point if derived is None else None):
            return rule
    return None


def envelope(rules: Sequence[Rule], device: Device, point: str | None = None,
             derived: str | None = None) -> Envelope | None:
    """The envelope of a point (``point``) or a derived value (``derived``) of a device; None if no rule."""
    rule = threshold_rule(rules, device, point, derived)
    if rule is None:
        return None
    return Envelope(rule.name, rule.warning, rule.critical, rule.annotations.get("envelope", ""))


def ups_full_load(rules: Sequence[Rule], device: Device, runtime_min: float | None,
                  load_pct: float | None) -> Estimate | None:
    """Runtime projected to full load with the Peukert exponent of the device's rule; None if not computable."""
    rule = threshold_rule(rules, device, None, "ups_autonomy_full_load")
    if rule is None or runtime_min is None or load_pct is None or load_pct <= 0:
        return None
    exponent = rule.params_for(device.id).get("peukert_exponent")
    if exponent is None:
        return None
    return ups_autonomy_full_load(runtime_min, load_pct, exponent)


def fuel_days(rules: Sequence[Rule], device: Device, level_pct: float | None) -> Estimate | None:
    """Days of fuel at full load from the tank figures of the device's rule; None if not computable."""
    rule = threshold_rule(rules, device, None, "fuel_days_full_load")
    if rule is None or level_pct is None:
        return None
    params = rule.params_for(device.id)
    if any(name not in params for name in FUEL_PARAMS) or params["rated_kw"] <= 0 or params["sfc_l_per_kwh"] <= 0:
        return None
    return fuel_days_full_load(level_pct, params["tank_litres"], params["rated_kw"], params["sfc_l_per_kwh"],
                               params.get("usable_fraction", 1.0))


def dew_point_or_none(temperature_c: float | None, humidity_pct: float | None) -> float | None:
    """The dew point when both inputs are known and the humidity is above 0 %."""
    if temperature_c is None or humidity_pct is None or humidity_pct <= 0:
        return None
    return dew_point(temperature_c, humidity_pct)


def estimate_severity(rules: Sequence[Rule], device: Device, derived: str, value: float | None) -> Severity | None:
    """How a derived value compares with its rule's levels; None when unknown."""
    found = envelope(rules, device, derived=derived)
    if found is None or value is None:
        return None
    return found.severity(value)
