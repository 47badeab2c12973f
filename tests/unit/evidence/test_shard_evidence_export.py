"""`facwatch evidence export --shard I/N`: one signed pack per collector shard, from that shard's file and devices."""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import pytest

from alerts.rules import load_rules
from collectors.model import Reading
from collectors.sharding import plan_shards
from config.load import load_site
from evidence import cli as evidence_cli
from evidence.verify import verify_pack
from storage.sqlite import SqliteStore
from tests.conftest import DEMO_CONFIG

T0 = 1_795_000_000.0  # 2026-11-18 10:13 UTC


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facwatch")
    evidence_cli.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def _compliance_devices(pack: Path) -> set[str]:
    with zipfile.ZipFile(pack) as members:
        rows = json.loads(members.read("records/envelope_compliance.json"))
    return {row["device"] for row in rows}


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACWATCH_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FACWATCH_AUDIT_KEY_FILE", raising=False)


def test_each_shard_exports_its_own_file_and_devices(tmp_path: Path, no_env_key: None) -> None:
    site = load_site(DEMO_CONFIG)
    plan = plan_shards(site, 2, load_rules())
    for index in (1, 2):
        (tmp_path / f"shard-{index}-of-2").mkdir()
        store = SqliteStore(tmp_path / f"shard-{index}-of-2" / "facwatch.db")
        store.write([Reading(device, "ambient.temperature", T0 + i * 60, 21.0)
                     for device in plan.devices(index) for i in range(3)])
        store.close()
    for index in (1, 2):
        out = tmp_path / f"pack-{index}.zip"
        assert _cli(["evidence", "export", "-c", str(DEMO_CONFIG), "--data-dir", str(tmp_path), "--shard",
                     f"{index}/2", "--from", "2026-11-18", "--to", "2026-11-18", "-o", str(out),
                     "--actor", "k.exporter"]) == 0
        assert verify_pack(out).ok
        devices = _compliance_devices(out)
        assert devices and devices <= set(plan.devices(index))  # the other shard's sensors are in its own pack
    assert not (tmp_path / "facwatch.db").exists()  # no unsharded file was invented


def test_a_bad_shard_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli(["evidence", "export", "--shard", "3/2", "--from", "2026-11-18", "--to", "2026-11-18", "-o", "p.zip"])
    assert info.value.code == 2 and "the index must be 1–2" in capsys.readouterr().err
