"""The detectors' in-progress state as JSON, read back strictly: a saved run is trusted only if it fits.

``evidence.detectors`` saves its runs, tests and incidents in progress beside the records
(``evidence.records.EvidenceStore.commit``) and restores them when facwatch starts again. What comes
back from the file is checked field by field against the dataclass it becomes, so a damaged or foreign
state raises ``StateError`` (the detector then starts fresh) instead of failing later mid-run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class StateError(ValueError):
    """Saved detector state that does not fit what the detector keeps."""


def dataclass_from(cls: type[T], data: Any) -> T:
    """An instance of dataclass ``cls`` from a JSON object whose every field has the annotated type."""
    if not isinstance(data, dict):
        raise StateError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    annotations = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(annotations))
    if unknown:
        raise StateError(f"{cls.__name__}: unknown fields {unknown}")
    for name, value in data.items():
        if not fits(annotations[name], value):
            raise StateError(f"{cls.__name__}.{name}: {value!r} is not {annotations[name]}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required field is missing
        raise StateError(f"{cls.__name__}: {exc}") from exc


def fits(annotation: str, value: Any) -> bool:
    """True if a JSON value fits a field annotation (``float | None``, ``dict[str, float]``, ``list[str]``, …)."""
    if annotation.endswith(" | None") and value is None:
        return True
    base = annotation.removesuffix(" | None")
    if base == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base in ("str", "bool"):
        return isinstance(value, str if base == "str" else bool)
    if base == "list[str]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if base.startswith("dict[str, "):
        inner = base.removeprefix("dict[str, ").removesuffix("]")
        return isinstance(value, dict) and all(fits(inner, item) for item in value.values())
    return base == "Any"


def mapping(data: Mapping[str, Any], key: str, annotation: str) -> dict[str, Any]:
    """``data[key]``, a JSON object of values that fit ``annotation`` (absent: empty)."""
    value = data.get(key, {})
    if not fits(f"dict[str, {annotation}]", value):
        raise StateError(f"{key}: not an object of {annotation}")
    return dict(value)


def known_only(entries: Mapping[str, T], devices: Iterable[str], what: str) -> dict[str, T]:
    """The entries of devices the site still has; the others are dropped with a log line."""
    present = set(devices)
    for device in sorted(set(entries) - present):
        log.warning("evidence: saved %s of %s dropped: the site has no such device any more", what, device)
    return {device: entry for device, entry in entries.items() if device in present}
