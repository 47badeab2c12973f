"""Shared fixtures: the repository root and loopback port bases (fixed per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "config" / "sites" / "demo.yaml"


@pytest.fixture
def repo_root() -> Path:
    return ROOT
