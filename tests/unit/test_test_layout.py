"""The test tree itself: pytest imports test modules by basename (no packages), so two alike break collection."""

from __future__ import annotations

from collections import Counter

from tests.conftest import ROOT


def test_every_test_module_has_a_unique_basename():
    names = Counter(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
