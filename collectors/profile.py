"""Device profiles: one YAML file per device type, validated strictly and compiled to PointSpecs.

A profile lives at ``collectors/profiles/<class>/<vendor>_<model>.yaml`` and its id is that path
without the suffix (``ups/ietf_rfc1628``). The same compiled profile drives the collector's decode
and the simulator's encode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collectors.codec import DATATYPES
from collectors.model import EnumState, Kind, ModbusAddress, PointSpec, Severity, Table
from config.yamlfile import ConfigError, Problem, YamlDocument, load_yaml, validate

PROFILE_DIR = Path(__file__).parent / "profiles"
POINT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_-]+)*$")
# An OID template: numeric arcs and {index} placeholders for table instances the device chooses
# (NetBotz rows are keyed by a hashed Counter32), filled from the profile's `indexes` at compile time.
OID_TEMPLATE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*|\{[a-z][a-z0-9_]*\}))+$")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
INDEX_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
OidArc = Annotated[int, Field(strict=True, ge=0, le=0xFFFFFFFF)]  # SNMP sub-identifiers are 32-bit unsigned
NUMERIC_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
TRAP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # the MIB's NOTIFICATION-TYPE / TRAP-TYPE name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnumEntryModel(_Strict):
    """One enum code: the vendor's state name and the generic severity it maps to."""

    name: str = Field(min_length=1)
    severity: Severity


class PointModel(_Strict):
    """A point as written in a profile file."""

    name: str
    kind: Kind
    datatype: str
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    description: str = ""
    enum: dict[int, EnumEntryModel] | None = None
    sentinels: list[int] = []
    valid_range: tuple[float, float] | None = None
    bits: tuple[int, int] | None = None
    oid: str | None = None
    table: Table | None = None
    address: int | None = Field(default=None, ge=0, le=65535)
    word_order: Literal["big", "little"] = "big"

    @field_validator("name")
    @classmethod
    def _dotted_name(cls, name: str) -> str:
        if not POINT_NAME.match(name):
            raise ValueError("point names are dotted lower-case words, e.g. battery.charge")
        return name

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, name: str) -> str:
        if name not in DATATYPES:
            raise ValueError(f"unknown datatype {name!r}; known: {', '.join(sorted(DATATYPES))}")
        return name

    @field_validator("scale")
    @classmethod
    def _usable_scale(cls, scale: float) -> float:
        if not math.isfinite(scale) or scale == 0:
            raise ValueError("scale must be a finite, non-zero number")
        return scale

    @field_validator("oid")
    @classmethod
    def _numeric_oid(cls, oid: str | None) -> str | None:
        if oid is not None and not OID_TEMPLATE.match(oid):
            raise ValueError("OIDs are written numerically, e.g. 1.3.6.1.2.1.33.1.2.1.0, with {name} "
                             "placeholders for table indexes")
        return oid


class TrapModel(_Strict):
    """A notification the device sends, as written in a profile file."""

    name: str
    oid: str
    severity: Severity
    varbinds: list[str] = []  # points the device sends along, with their current values
    description: str = ""

    @field_validator("name")
    @classmethod
    def _mib_name(cls, name: str) -> str:
        if not TRAP_NAME.match(name):
            raise ValueError("trap names are the MIB's names, e.g. upsTrapOnBattery")
        return name

    @field_validator("oid")
    @classmethod
    def _numeric_trap_oid(cls, oid: str) -> str:
        if not NUMERIC_OID.match(oid):
            # SMIv1 TRAP-TYPEs are written in their SNMPv2 form: enterprise.0.specific (RFC 3584 §3.1)
            raise ValueError("trap OIDs are written numerically, e.g. 1.3.6.1.2.1.33.2.1 "
                             "(SMIv1 traps as enterprise.0.specific)")
        return oid


class ModbusOptionsModel(_Strict):
    """How to talk to a Modbus device of this type."""

    default_unit_id: int = Field(default=1, ge=0, le=255)
    max_registers_per_read: int = Field(default=125, ge=1, le=125)  # Modbus spec limit for FC 3/4
    max_bits_per_read: int = Field(default=2000, ge=1, le=2000)
    max_gap: int = Field(default=8, ge=0, le=100)  # unused registers worth reading to save a request


class ProfileModel(_Strict):
    """A device-type profile as written in YAML."""

    device_class: str = Field(alias="class", pattern=r"^[a-z][a-z0-9_]*$")
    protocol: Literal["snmp", "modbus"]
    vendor: str
    model: str
    description: str = ""
    source: str
    sys_object_id: str | None = None
    summary: list[str] = []
    modbus: ModbusOptionsModel | None = None
    indexes: dict[str, OidArc] = {}  # default value of each {placeholder} used in point OIDs
    points: list[PointModel] = Field(min_length=1)
    traps: list[TrapModel] = []

    @field_validator("indexes")
    @classmethod
    def _index_names(cls, indexes: dict[str, int]) -> dict[str, int]:
        bad = [name for name in indexes if not INDEX_NAME.match(name)]
        if bad:
            raise ValueError("index names are lower-case words, e.g. sensor")
        return indexes


@dataclass(frozen=True, slots=True)
class ModbusOptions:
    """Runtime Modbus options of a profile."""

    default_unit_id: int = 1
    max_registers_per_read: int = 125
    max_bits_per_read: int = 2000
    max_gap: int = 8


@dataclass(frozen=True, slots=True)
class TrapSpec:
    """A compiled notification: the trap OID (snmpTrapOID.0 value), its severity and the points it carries.

    Example: ``TrapSpec("upsTrapOnBattery", "1.3.6.1.2.1.33.2.1", Severity.WARNING,
    ("battery.runtime", "battery.time_on_battery", "battery.runtime.low"))``.
    """

    name: str
    oid: str
    severity: Severity
    varbinds: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A compiled, validated device type.

    ``indexes`` holds the value each OID placeholder was compiled with and ``oid_templates`` the
    templated OIDs by point name, so ``with_indexes`` can rebuild the points for another instance:
    ``netbotz.with_indexes({"sensor": 1095346743})``.
    """

    id: str
    device_class: str
    protocol: str
    vendor: str
    model: str
    description: str
    source: str
    sys_object_id: str | None
    summary: tuple[str, ...]
    points: tuple[PointSpec, ...]
    modbus: ModbusOptions | None
    indexes: Mapping[str, int] = field(default_factory=dict)
    oid_templates: Mapping[str, str] = field(default_factory=dict)
    traps: tuple[TrapSpec, ...] = ()

    def point(self, name: str) -> PointSpec:
        """The point called ``name``; KeyError if the profile has none."""
        for spec in self.points:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.id} has no point {name!r}")

    def trap(self, name: str) -> TrapSpec:
        """The trap called ``name``; KeyError if the profile has none."""
        for spec in self.traps:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.id} has no trap {name!r}")

    def trap_by_oid(self, oid: str) -> TrapSpec | None:
        """The trap whose snmpTrapOID.0 value is ``oid`` (dotted, no leading dot), or None."""
        for spec in self.traps:
            if spec.oid == oid:
                return spec
        return None

    def with_indexes(self, overrides: Mapping[str, int]) -> DeviceProfile:
        """A copy whose templated OIDs use ``overrides`` in place of the default index values.

        ValueError for an index the profile does not declare or a value that is not an OID arc.
        """
        unknown = sorted(set(overrides) - set(self.indexes))
        if unknown:
            declared = ", ".join(sorted(self.indexes)) or "none"
            raise ValueError(f"{self.id} has no index {', '.join(unknown)} (declared: {declared})")
        for name, value in overrides.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{self.id} index {name} must be an integer 0..4294967295")
        indexes = {**self.indexes, **overrides}
        points = tuple(replace(spec, oid=fill_oid(self.oid_templates[spec.name], indexes))
                       if spec.name in self.oid_templates else spec for spec in self.points)
        return replace(self, points=points, indexes=indexes)


def fill_oid(template: str, indexes: Mapping[str, int]) -> str:
    """``template`` with each ``{name}`` replaced by ``indexes[name]`` (KeyError if one is missing)."""
    return PLACEHOLDER.sub(lambda match: str(indexes[match.group(1)]), template)


def load_profile(path: Path, profile_id: str) -> DeviceProfile:
    """Load, validate and compile one profile file."""
    doc = load_yaml(path)
    model = validate(ProfileModel, doc)
    problems = _cross_check(model, doc, profile_id)
    if problems:
        raise ConfigError(problems)
    return _compile(model, profile_id)


def load_profiles(root: Path = PROFILE_DIR) -> dict[str, DeviceProfile]:
    """Every profile under ``root`` keyed by id; all problems of all files in one ConfigError."""
    profiles: dict[str, DeviceProfile] = {}
    problems: list[Problem] = []
    for path in sorted(root.glob("*/*.yaml")):
        profile_id = f"{path.parent.name}/{path.stem}"
        try:
            profiles[profile_id] = load_profile(path, profile_id)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return profiles


def _cross_check(model: ProfileModel, doc: YamlDocument, profile_id: str) -> list[Problem]:
    problems: list[Problem] = []
    if model.device_class != profile_id.split("/")[0]:
        problems.append(doc.problem(("class",), f"class must match the folder ({profile_id.split('/')[0]})"))
    seen: set[str] = set()
    for index, point in enumerate(model.points):
        loc = ("points", index)
        if point.name in seen:
            problems.append(doc.problem((*loc, "name"), f"duplicate point name {point.name!r}"))
        seen.add(point.name)
        problems += [doc.problem((*loc, key), msg) for key, msg in _point_problems(point, model.protocol)]
    problems += _overlap_problems(model, doc)
    problems += _index_problems(model, doc)
    for index, name in enumerate(model.summary):
        if name not in seen:
            problems.append(doc.problem(("summary", index), f"no point named {name!r}"))
    problems += _trap_problems(model, doc, seen)
    return problems


def _trap_problems(model: ProfileModel, doc: YamlDocument, points: set[str]) -> list[Problem]:
    """Traps are SNMP only, unique by name and OID, and carry only points of this profile."""
    problems: list[Problem] = []
    if model.traps and model.protocol != "snmp":
        problems.append(doc.problem(("traps",), "only SNMP profiles have traps"))
    names: set[str] = set()
    oids: dict[str, str] = {}
    for index, trap in enumerate(model.traps):
        loc = ("traps", index)
        if trap.name in names:
            problems.append(doc.problem((*loc, "name"), f"duplicate trap name {trap.name!r}"))
        if trap.oid in oids:
            problems.append(doc.problem((*loc, "oid"), f"trap OID already used by {oids[trap.oid]!r}"))
        names.add(trap.name)
        oids.setdefault(trap.oid, trap.name)
        problems += [doc.problem((*loc, "varbinds", i), f"no point named {name!r}")
                     for i, name in enumerate(trap.varbinds) if name not in points]
    return problems


def _point_problems(point: PointModel, protocol: str) -> list[tuple[str, str]]:
    """(key, message) pairs for what a single point gets wrong."""
    found: list[tuple[str, str]] = []
    datatype = DATATYPES[point.datatype]
    if datatype.protocol != protocol:
        found.append(("datatype", f"{point.datatype} is a {datatype.protocol} type; this profile is {protocol}"))
    if protocol == "snmp" and point.oid is None:
        found.append(("oid", "SNMP points need an oid"))
    if protocol == "modbus" and (point.table is None or point.address is None):
        found.append(("address", "Modbus points need a table and an address"))
    if point.enum is not None and point.kind is not Kind.STATE:
        found.append(("enum", "only state points have an enum"))
    if point.bits is not None and (point.bits[1] < 1 or sum(point.bits) > datatype.width_bits):
        found.append(("bits", f"bit field [{point.bits[0]}, {point.bits[1]}] does not fit a {point.datatype}"))
    if point.valid_range is not None and not point.valid_range[0] < point.valid_range[1]:
        found.append(("valid_range", "valid_range is [low, high] with low < high"))
    if point.table is not None and point.table.is_bits and point.datatype != "bool":
        found.append(("datatype", "coils and discrete inputs hold bool points"))
    return found


def _overlap_problems(model: ProfileModel, doc: YamlDocument) -> list[Problem]:
    """Two points claiming the same register are an error unless both are disjoint bit fields."""
    owners: dict[tuple[Table, int], list[tuple[int, PointModel]]] = {}
    for index, point in enumerate(model.points):
        if point.table is None or point.address is None:
            continue
        for offset in range(max(1, DATATYPES[point.datatype].registers)):
            owners.setdefault((point.table, point.address + offset), []).append((index, point))
    problems = []
    for (table, address), claim in owners.items():
        if len(claim) > 1 and not _disjoint_bit_fields([p for _, p in claim]):
            index, point = claim[-1]
            others = ", ".join(p.name for _, p in claim[:-1])
            problems.append(doc.problem(("points", index, "address"),
                                        f"{table.value} register {address} is also used by {others}"))
    return problems


def _index_problems(model: ProfileModel, doc: YamlDocument) -> list[Problem]:
    """Every OID placeholder needs a default index value, and every declared index must be used."""
    problems = []
    used: set[str] = set()
    for index, point in enumerate(model.points):
        names = PLACEHOLDER.findall(point.oid or "")
        used.update(names)
        problems += [doc.problem(("points", index, "oid"), f"placeholder {{{name}}} has no value under indexes")
                     for name in dict.fromkeys(names) if name not in model.indexes]
    problems += [doc.problem(("indexes", name), f"index {name!r} is used by no point OID")
                 for name in model.indexes if name not in used]
    return problems


def _disjoint_bit_fields(points: list[PointModel]) -> bool:
    used = 0
    for point in points:
        if point.bits is None:
            return False
        mask = ((1 << point.bits[1]) - 1) << point.bits[0]
        if used & mask:
            return False
        used |= mask
    return True


def _compile(model: ProfileModel, profile_id: str) -> DeviceProfile:
    options = model.modbus or ModbusOptionsModel()
    return DeviceProfile(
        id=profile_id, device_class=model.device_class, protocol=model.protocol, vendor=model.vendor,
        model=model.model, description=model.description, source=model.source,
        sys_object_id=model.sys_object_id, summary=tuple(model.summary),
        points=tuple(_compile_point(p, model.indexes) for p in model.points),
        modbus=ModbusOptions(**options.model_dump()) if model.protocol == "modbus" else None,
        indexes=dict(model.indexes),
        oid_templates={p.name: p.oid for p in model.points if p.oid is not None and PLACEHOLDER.search(p.oid)},
        traps=tuple(TrapSpec(t.name, t.oid, t.severity, tuple(t.varbinds), t.description) for t in model.traps),
    )


def _compile_point(point: PointModel, indexes: Mapping[str, int]) -> PointSpec:
    return PointSpec(
        name=point.name, kind=point.kind, datatype=point.datatype, unit=point.unit,
        scale=point.scale, offset=point.offset, description=point.description,
        enum={code: EnumState(e.name, e.severity) for code, e in (point.enum or {}).items()},
        sentinels=frozenset(point.sentinels), valid_range=point.valid_range, bits=point.bits,
        oid=fill_oid(point.oid, indexes) if point.oid is not None else None,
        modbus=ModbusAddress(point.table, point.address, point.word_order)
        if point.table is not None and point.address is not None else None,
    )
