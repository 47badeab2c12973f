"""Fuzz the site loader: whatever the document, the only exception it may raise is ConfigError.

Runs ``FACWATCH_FUZZ_EXAMPLES`` examples per target (default 200, a few seconds); CI raises it
for the longer run RELIABILITY.md I1 asks for.
"""

from __future__ import annotations

import copy
import io
import os
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from collectors.profile import DeviceProfile, load_profiles
from config.load import Site, site_from_document
from config.yamlfile import ConfigError, parse_yaml

DEMO = Path(__file__).resolve().parents[3] / "config" / "sites" / "demo.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
FUZZ = settings(
    max_examples=int(os.environ.get("FACWATCH_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Words the schema knows, so random documents get past "unknown key" and into the deeper checks.
KEYS = [
    "site", "rooms", "credentials", "devices", "storage", "dashboard", "simulation", "id", "name", "class",
    "profile", "room", "host", "port", "credential", "snmp", "modbus", "version", "unit_id", "poll_interval_s",
    "type", "user", "auth_protocol", "auth_key", "priv_protocol", "priv_key", "community", "insecure", "env",
    "file", "path", "timeout_s", "retries", "snmp_credentials", "demo-v3", "demo-public", "retention_days",
]
WORDS = [
    "snmp_v3", "snmp_community", "ups/ietf_rfc1628", "thsensor/generic_xymd02", "ups", "thsensor", "dh1",
    "demo-v3", "demo-public", "sha", "sha256", "md5", "aes128", "des", "2c", "3", "127.0.0.1",
    "demo-secrets/snmp-auth-key", "demo-secrets/snmp-community", "HOME", "PATH", "",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2, 70_000), st.floats(),
    st.text(max_size=12), st.sampled_from(WORDS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers()), inner, max_size=5),
    ),
    max_leaves=25,
)
# Fragments that break YAML in interesting ways when spliced into the demo text.
SPLICES = st.sampled_from([":", "- ", "  ", "\n", "\t", "{", "}", "[", "]", "'", '"', "#", "&a ", "*a", "!!str ",
                           "<<: ", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", ".nan", "\\", "\x00", "\x85"])


@cache
def profiles() -> dict[str, DeviceProfile]:
    return load_profiles()


@cache
def demo_data() -> Any:
    return parse_yaml(DEMO_TEXT, str(DEMO)).data  # ruamel's round-trip parse is the slow part: do it once


@cache
def dumper() -> YAML:
    return YAML(typ="safe")


def dump(data: Any) -> str:
    stream = io.StringIO()
    dumper().dump(data, stream)
    return stream.getvalue()


def load_only_config_errors(text: str) -> Site | None:
    """Load ``text`` as if it were the demo file; any exception but ConfigError fails the test."""
    try:
        return site_from_document(parse_yaml(text, str(DEMO)), profiles())
    except ConfigError as exc:
        lines = text.count("\n") + 2
        for problem in exc.problems:
            assert 0 <= problem.line <= lines, problem
            assert problem.message, problem
        assert str(exc)
        return None


def paths_in(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside ``data`` (the root included as ``()``)."""
    found = [prefix]
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in children:
        found += paths_in(value, (*prefix, key))
    return found


def mutate(data: Any, path: tuple, operation: str, value: Any) -> Any:
    """Apply one edit at ``path``: replace, delete, duplicate or add a key beside it."""
    if not path:
        return value if operation == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if operation == "replace":
        parent[last] = value
    elif operation == "delete":
        del parent[last]
    elif operation == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    elif isinstance(parent, dict):
        parent[value if isinstance(value, str | int) else "extra"] = value
    return data


@FUZZ
@given(VALUES)
def test_random_documents_only_raise_config_error(data: Any) -> None:
    load_only_config_errors(dump(data))


@FUZZ
@given(st.text(max_size=300))
def test_random_text_only_raises_config_error(text: str) -> None:
    load_only_config_errors(text)


@FUZZ
@given(st.data())
def test_mutated_demo_only_raises_config_error(data: st.DataObject) -> None:
    document = copy.deepcopy(demo_data())
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        path = data.draw(st.sampled_from(paths_in(document)), label="path")
        operation = data.draw(st.sampled_from(["replace", "delete", "duplicate", "add"]), label="operation")
        document = mutate(document, path, operation, data.draw(VALUES, label="value"))
    load_only_config_errors(dump(document))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(DEMO_TEXT)), st.integers(0, 3), SPLICES), min_size=1, max_size=4))
def test_spliced_demo_text_only_raises_config_error(edits: list[tuple[int, int, str]]) -> None:
    text = DEMO_TEXT
    for at, cut, fragment in edits:
        at = min(at, len(text))
        text = text[:at] + fragment + text[at + cut:]
    load_only_config_errors(text)


def test_unmutated_demo_loads() -> None:
    assert load_only_config_errors(DEMO_TEXT) is not None
