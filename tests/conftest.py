"""Shared fixtures: the repository root and loopback port bases (fixed per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "config" / "sites" / "demo.yaml"


@pytest.fixture
def repo_root() -> Path:
    return ROOT
# The three-device site of the walking skeleton: unit tests pin their expectations to it, so the
# shipped demo can grow without rewriting them.
SKELETON_CONFIG = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"
