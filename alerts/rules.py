"""Alert rules as data (`config/rules/*.yaml`): schema, loading with file:line errors, and matching."""

from __future__ import annotations

import fnmatch
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from collectors.model import Severity
from config.durations import parse_duration
from config.yamlfile import ConfigError, Problem, YamlDocument, load_yaml, validate

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "config" / "rules"
DERIVED = ("dew_point", "rate_of_change", "ups_autonomy_full_load", "fuel_days_full_load", "ring_redundancy")
# inputs each derived value needs from one device (REFERENCE.md §6, §7.2, §7.4)
DERIVED_INPUTS = {
    "dew_point": ("ambient.temperature", "ambient.humidity"),
    "ups_autonomy_full_load": ("battery.runtime", "ups.load"),
    "fuel_days_full_load": ("fuel.level",),
}
FUEL_PARAMS = ("tank_litres", "rated_kw", "sfc_l_per_kwh")
RING_LOAD_POINT = "ups.load"  # % of the UPS's rated capacity on both MIBs (upsOutputPercentLoad, upsHighPrecOutputLoad)
_BOUNDS = ("above", "at_least", "below", "at_most")
_SCHEDULE_KEYS = ("every", "qualifying")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Globs = Annotated[tuple[str, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Match(_Strict):
    """Which devices and points a rule applies to; each key is a glob or a list of globs."""

    device_class: Globs = ("*",)
    room: Globs = ("*",)
    device: Globs = ("*",)
    point: Globs = ("*",)


class Level(_Strict):
    """One envelope level: outside (above, below) is a breach."""

    above: float | None = None
    below: float | None = None

    def breached(self, value: float, margin: float) -> bool:
        """True when value is outside the band, which is widened inward by ``margin`` (hysteresis)."""
        high = self.above is not None and value > self.above - margin
        low = self.below is not None and value < self.below + margin
        return high or low


class Term(_Strict):
    """The latest value of some points: true when one of them is in a state, just became one, or is within bounds.

    ``state``: in one of these states; ``becomes``: changed into one of these from another known state;
    ``above``/``at_least``/``below``/``at_most``: a gauge inside every bound set.
    Without device_class/room/device it looks at the rule's own device (the whole site for a site rule).
    Example: ``{point: genset.load, at_least: 30}`` or ``{point: ups.test.result, becomes: [donePass]}``.
    """

    point: Globs
    state: Globs | None = None
    becomes: Globs | None = None
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    device_class: Globs | None = None
    room: Globs | None = None
    device: Globs | None = None

    def same_device(self) -> bool:
        """True when the term reads the device the alert is about."""
        return self.device_class is None and self.room is None and self.device is None

    def numeric(self) -> bool:
        """True when the term reads gauges against bounds rather than states."""
        return any(getattr(self, bound) is not None for bound in _BOUNDS)

    def admits(self, value: float) -> bool:
        """True when a gauge value lies inside every bound the term sets (above/below are strict)."""
        return ((self.above is None or value > self.above) and (self.at_least is None or value >= self.at_least)
                and (self.below is None or value < self.below) and (self.at_most is None or value <= self.at_most))


_COND_FORMS = ("any", "all", "not", "count_at_least", "point")


class Condition(_Strict):
    """A compound condition: a term, ``any``/``all`` of conditions, ``not`` one, or ``count_at_least: N, of: terms``.

    Evaluated in three-valued logic: data missing in an input only matters when it could change the result.
    """

    any: tuple[Condition, ...] | None = None
    all: tuple[Condition, ...] | None = None
    not_: Condition | None = Field(None, alias="not")
    count_at_least: int | None = Field(None, ge=1)
    of: Annotated[tuple[Term, ...] | None, BeforeValidator(lambda v: (v,) if isinstance(v, dict) else v)] = None
    point: Globs | None = None
    state: Globs | None = None
    becomes: Globs | None = None
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    device_class: Globs | None = None
    room: Globs | None = None
    device: Globs | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [f for f, v in zip(_COND_FORMS, (self.any, self.all, self.not_, self.count_at_least, self.point),
                                   strict=True) if v is not None]
        if len(forms) != 1:
            raise ValueError("a condition needs exactly one of any, all, not, count_at_least (with of) or point")
        if (self.count_at_least is None) != (self.of is None):
            raise ValueError("count_at_least and of go together")
        tests = [name for name in ("state", "becomes") if getattr(self, name) is not None]
        tests += ["bounds"] if any(getattr(self, bound) is not None for bound in _BOUNDS) else []
        if self.point is None and (tests or self.device_class or self.room or self.device):
            raise ValueError("state, becomes, bounds, device_class, room and device belong to a point term")
        if self.point is not None and len(tests) != 1:
            raise ValueError("a point term needs a state, or else becomes or bounds (above, at_least, below, "
                             "at_most): exactly one of them")
        return self

    @cached_property
    def as_term(self) -> Term | None:
        """The condition as a term, when it is one (built once: evaluation asks for it on every reading)."""
        return self.term()

    def term(self) -> Term | None:
        """The condition as a term, when it is one."""
        if self.point is None:
            return None
        keys = ("point", "state", "becomes", *_BOUNDS, "device_class", "room", "device")
        return Term(**{key: getattr(self, key) for key in keys})

    @cached_property
    def all_terms(self) -> tuple[Term, ...]:
        """Every term this condition reads (built once)."""
        return tuple(self.terms())

    def terms(self) -> list[Term]:
        """Every term this condition reads."""
        own = self.term()
        if own is not None:
            return [own]
        found = list(self.of or ())
        for child in (*(self.any or ()), *(self.all or ()), *((self.not_,) if self.not_ else ())):
            found += child.terms()
        return found


class Qualifying(_Strict):
    """What counts as a test for a schedule rule: ``when`` holds (known true) for at least ``for``."""

    when: Condition
    for_: Duration = Field(0.0, alias="for")


class Rule(_Strict):
    """One alert rule.

    Example::

        - name: inlet_temperature_band
          kind: threshold
          match: {device_class: thsensor, point: ambient.temperature}
          warning: {above: 23, below: 19}
          hysteresis: 0.5
          for: 5m

    A schedule rule alerts when no qualifying test was seen for longer than ``every``::

        - name: generator_test_overdue
          kind: schedule
          match: {device_class: genset}
          every: 31d
          qualifying:
            when: {all: [{point: engine.state, state: running}, {point: genset.load, at_least: 30}]}
            for: 30m
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    kind: Literal["threshold", "state", "missing", "compound", "schedule"]
    summary: str = ""
    match: Match = Match()
    for_: Duration = Field(0.0, alias="for")
    clear_for: Duration = 0.0
    latch: bool = False
    annotations: dict[str, str] = {}
    # threshold
    warning: Level | None = None
    critical: Level | None = None
    hysteresis: float = Field(0.0, ge=0)
    derived: Literal[DERIVED] | None = None  # type: ignore[valid-type]
    window: Duration | None = None  # rate_of_change: change per this window
    params: dict[str, float] = {}
    per_device: dict[str, dict[str, float]] = {}
    # state
    states: tuple[str, ...] | None = None  # state names; None = every state whose profile severity ≥ min_severity
    min_severity: Literal["info", "warning", "critical"] = "warning"
    severity: Literal["info", "warning", "critical"] | None = None
    # missing
    stale_after: float = Field(3.0, gt=0)  # poll intervals without a good reading
    scope: Literal["device", "point", "site"] = "point"  # compound: device (default) or site
    # compound: `when` holds and `unless` does not, on the latest values of the points they name
    when: Condition | None = None
    unless: Condition | None = None
    # schedule: alert when now - last qualifying test (or when facwatch first watched the device) > every
    every: Duration | None = None
    qualifying: Qualifying | None = None

    def params_for(self, device: str) -> dict[str, float]:
        """Rule parameters with the device's overrides applied."""
        return {**self.params, **self.per_device.get(device, {})}

    def levels(self) -> list[tuple[Severity, Level]]:
        """Envelope levels, worst first."""
        pairs = [(Severity.CRITICAL, self.critical), (Severity.WARNING, self.warning)]
        return [(sev, level) for sev, level in pairs if level is not None]


class RuleFile(_Strict):
    """A rule file: a list of rules."""

    rules: list[Rule]


def matches(rule: Rule, device_class: str, room: str, device: str, point: str | None = None) -> bool:
    """True when the rule applies to this device (and point, when given)."""
    m = rule.match
    pairs = [(m.device_class, device_class), (m.room, room), (m.device, device)]
    if point is not None:
        pairs.append((m.point, point))
    return all(any(fnmatch.fnmatchcase(value, glob) for glob in globs) for globs, value in pairs)


def load_rules(paths: list[str | Path] | None = None) -> list[Rule]:
    """Rules from files or folders (default ``config/rules/*.yaml``); every problem in one ConfigError."""
    files = _rule_files(paths if paths is not None else [DEFAULT_RULES_DIR])
    rules: list[Rule] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            doc = load_yaml(file)
            loaded = validate(RuleFile, doc, _semantic_problems(doc)).rules
        except ConfigError as exc:
            problems += exc.problems
            continue
        for index, rule in enumerate(loaded):
            if rule.name in seen:
                problems.append(doc.problem(("rules", index, "name"), f"rule name already used in {seen[rule.name]}"))
            seen[rule.name] = str(file)
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return rules


def _rule_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return files


def _semantic_problems(doc: YamlDocument) -> list[Problem]:
    """Checks per rule kind that the schema alone cannot express."""
    raw = doc.data.get("rules") if isinstance(doc.data, dict) else None
    if not isinstance(raw, list):
        return []
    problems = []
    for index, item in enumerate(raw):
        if isinstance(item, dict):
            problems += [doc.problem(("rules", index, key), msg) for key, msg in _rule_problems(item)]
    return problems


def _rule_problems(item: dict) -> list[tuple[str, str]]:
    kind = item.get("kind")
    found: list[tuple[str, str]] = []
    if kind == "threshold":
        if not item.get("warning") and not item.get("critical"):
            found.append(("kind", "a threshold rule needs a warning or a critical level"))
        derived = item.get("derived")
        if derived == "rate_of_change" and "window" not in item:
            found.append(("derived", "rate_of_change needs a window (e.g. 15m or 1h)"))
        if derived == "fuel_days_full_load":
            missing = [p for p in FUEL_PARAMS if p not in (item.get("params") or {})]
            if missing and not item.get("per_device"):
                found.append(("params", "fuel_days_full_load needs " + ", ".join(missing)))
    elif kind == "state" and item.get("severity") and not item.get("states"):
        found.append(("severity", "a fixed severity needs a list of states"))
    elif kind == "compound":
        if "when" not in item:
            found.append(("kind", "a compound rule needs a when condition"))
        if item.get("scope", "device") not in ("device", "site"):
            found.append(("scope", "a compound rule's scope is device or site"))
    found += _scope_problems(item)
    found += _schedule_problems(item)
    if kind != "compound":
        found += [(key, f"only compound rules take {key}") for key in ("when", "unless") if key in item]
    if kind != "threshold":
        found += [(key, f"only threshold rules take {key}") for key in ("warning", "critical", "derived", "hysteresis")
                  if key in item]
    return found


def _scope_problems(item: dict) -> list[tuple[str, str]]:
    """ring_redundancy is one value per site; no other threshold rule has a site scope."""
    if item.get("kind") != "threshold":
        return []
    ring = item.get("derived") == "ring_redundancy"
    if ring and item.get("scope") != "site":
        return [("derived", "ring_redundancy is a site value: set scope: site")]
    if not ring and item.get("scope") == "site":
        return [("scope", "only a ring_redundancy threshold rule has scope: site")]
    return []


def _schedule_problems(item: dict) -> list[tuple[str, str]]:
    if item.get("kind") != "schedule":
        return [(key, f"only schedule rules take {key}") for key in _SCHEDULE_KEYS if key in item]
    found = [("kind", f"a schedule rule needs {key}") for key in _SCHEDULE_KEYS if key not in item]
    every = item.get("every")
    if every is not None and _seconds(every) == 0:
        found.append(("every", "every must be longer than 0 (e.g. 31d)"))
    if item.get("scope", "device") != "device":
        found.append(("scope", "a schedule rule is per device (scope: device)"))
    return found


def _seconds(raw: object) -> float | None:
    """The duration in seconds, or None when it does not parse (the schema reports that)."""
    try:
        return parse_duration(raw)
    except ValueError:
        return None
