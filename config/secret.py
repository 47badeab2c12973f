"""A secret value that never prints itself: logs, reprs, tracebacks and dumps show a placeholder."""

from __future__ import annotations

import hmac


class Secret:
    """Holds a credential; only ``reveal()`` gives the value, at the one place that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call it only where a library needs the value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> tuple:
        raise TypeError("Secret values are not picklable")
