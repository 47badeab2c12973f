"""Field types shared by every strict config model: bounded numbers, checked text, secrets by reference.

A leaf module (pydantic only): the site schema, the notification config and the InfluxDB config
(``storage/influx_config.py``, which the site schema embeds) all build on it without importing each
other. Messages are written for the operator editing the YAML and never quote the rejected value.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"


def _bounds(ge: float | None, gt: float | None, le: float | None) -> str:
    """``1–65535`` or ``more than 0 and at most 30``: a range in the words an operator reads."""
    if ge is not None and le is not None:
        return f"{_num(ge)}–{_num(le)}"
    words = [f"more than {_num(gt)}" if gt is not None else "", f"at least {_num(ge)}" if ge is not None else "",
             f"at most {_num(le)}" if le is not None else ""]
    return " and ".join(w for w in words if w)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
            integer: bool = False, unit: str = "") -> Any:
    """A bounded int or finite float; every way of getting it wrong gets one message naming the range."""
    noun = "an integer" if integer else f"a number{' of ' + unit if unit else ''}"
    expected = f"{noun} {_bounds(ge, gt, le)}".strip()

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # bool is an int to Python and "8080" an int to lax pydantic; in a YAML file both are mistakes
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            raise PydanticCustomError("number", "must be {expected}", {"expected": expected})
        if not math.isfinite(value):
            raise PydanticCustomError("number", "must be {expected}, not NaN or infinity", {"expected": expected})
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("number", "must be {expected}", {"expected": expected}) from None

    return Annotated[int if integer else float, Field(ge=ge, gt=gt, le=le), WrapValidator(check)]


def _text(pattern: str, explain: str) -> Any:
    """A string matching ``pattern``, rejected with ``explain`` instead of the regex."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("text", explain) from None

    return Annotated[str, Field(pattern=pattern), WrapValidator(check)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Slug = _text(SLUG, "must be a slug: lower-case letters, digits and '-', at most 64 (e.g. dh1-ups-a)")
EnvName = _text(r"^[A-Za-z_][A-Za-z0-9_]*$", "must be an environment variable name (letters, digits and _)")
HostName = _text(r"^[A-Za-z0-9.:_-]{1,253}$", "must be a host name or an IP address")
Name = Annotated[str, AfterValidator(_not_blank)]
HostPort = _text(r"^[A-Za-z0-9.:_-]{1,253}:[0-9]{1,5}$", "must be host:port, e.g. 127.0.0.1:16162")
# Annotated aliases built at import time; static checkers see them as Any, pydantic sees the types.
Seconds = _number(gt=0, le=30, unit="seconds")
Port = _number(ge=1, le=65535, integer=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Strict):
    """Where a secret comes from: ``{env: VARIABLE}`` or ``{file: PATH}`` (relative to the config file)."""

    env: EnvName | None = None
    file: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _never_inline(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            raise ValueError("secrets are never written inline; use {env: VARIABLE} or {file: PATH}")
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self
