"""storage.influx in a site file: validated with the site, its secrets read at load time, paths made absolute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.load import load_site
from config.yamlfile import ConfigError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "tests" / "data" / "sites" / "influx_example.yaml"
SKELETON = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"


def test_influx_section_is_resolved_onto_the_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACWATCH_INFLUX_TOKEN", "s3cret-token")
    site = load_site(EXAMPLE)
    assert site.influx is not None
    assert site.influx.write_token.reveal() == "s3cret-token"
    assert "s3cret" not in repr(site.influx)
    assert site.influx.spool_path == EXAMPLE.parent / "../../../var/influx-example-spool.db"
    assert site.influx.config.write_bucket == "facwatch"


def test_site_without_influx_has_none() -> None:
    assert load_site(SKELETON).influx is None


def test_unset_influx_token_is_reported_with_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACWATCH_INFLUX_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_site(EXAMPLE)
    assert str(caught.value).splitlines() == [
        f"{EXAMPLE}:51: storage.influx.token: environment variable FACWATCH_INFLUX_TOKEN is not set"]


def test_simulated_latency_is_a_range_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACWATCH_INFLUX_TOKEN", "t")
    crac = load_site(EXAMPLE).device("dh1-crac-1")
    assert crac.simulation.latency_ms == (5.0, 20.0)
    assert load_site(SKELETON).device("dh1-ups-a").simulation.latency_ms is None


def test_config_fields_is_a_leaf_module() -> None:
    code = ("import sys, config.fields; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('config', 'storage', 'collectors')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "['config', 'config.fields']"


def test_schema_still_exports_the_shared_field_types() -> None:
    from config import fields, schema

    for name in ("SecretRef", "_Strict", "_text", "_number", "Name", "Seconds", "HostName", "Port", "Slug"):
        assert getattr(schema, name) is getattr(fields, name)
