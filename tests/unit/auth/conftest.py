"""Fixtures for the auth tests: a fake clock, a temporary store, a cheap Argon2 and a recording audit sink."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from auth.db import Database
from auth.passwords import Hasher
from auth.service import AuthService

PASSWORD = "correct horse battery staple"  # canary: must never appear in logs, errors or the audit


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSink:
    events: list[dict[str, Any]] = field(default_factory=list)

    def record(self, actor, action, subject, details, source) -> None:
        self.events.append({"actor": actor, "action": action, "subject": subject, "details": dict(details or {}),
                            "source": source})

    def actions(self) -> list[str]:
        return [e["action"] for e in self.events]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "facwatch.db"


@pytest.fixture
def service(db_path: Path, clock: FakeClock, sink: RecordingSink) -> AuthService:
    # Cheap Argon2 parameters: the production ones cost 64 MiB and ~0.1 s per hash.
    return AuthService(Database(db_path), sink, clock=clock, hasher=Hasher(time_cost=1, memory_cost=1024,
                                                                            parallelism=1))


@pytest.fixture
def users(service: AuthService) -> AuthService:
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("aud", "auditor"), ("ada", "admin")):
        service.add_user(name, role, PASSWORD, actor="test", source="test")
    return service
