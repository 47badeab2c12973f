"""The runtime's alerting wiring: readings reach the engine, alerts persist, the sink fans out."""

from __future__ import annotations

import time
from pathlib import Path

from alerts.model import AlertState
from collectors.model import Reading
from config.load import load_site
from facwatch.runtime import Alerting, fan_out
from tests.conftest import SKELETON_CONFIG


def test_a_ups_on_battery_reading_fires_and_the_state_persists(tmp_path):
    site = load_site(SKELETON_CONFIG)
    db = tmp_path / "facwatch.db"
    alerting = Alerting(site, db)
    now = time.time()
    alerting.observe([Reading("dh1-ups-a", "output.source", now, 5.0, text="battery")])
    alerting._changed(alerting.engine.tick(now + 60))
    firing = [a for a in alerting.engine.alerts() if a.rule == "ups_on_battery"]
    assert [a.state for a in firing] == [AlertState.FIRING]
    alerting.state.close()

    restarted = Alerting(site, db)  # a restart: the firing alert comes back from SQLite, not re-raised
    # (the other devices sent nothing for 60 s, so they are rightly unreachable as well)
    restored = {a.rule for a in restarted.engine.alerts() if a.state is AlertState.FIRING}
    assert "ups_on_battery" in restored and restored <= {"ups_on_battery", "device_unreachable"}
    restarted.state.close()


def test_fan_out_hands_every_batch_to_every_sink():
    seen_a, seen_b = [], []
    sink = fan_out(seen_a.append, seen_b.append)
    sink(["r1"])
    assert seen_a == seen_b == [["r1"]]


def test_after_a_restart_firing_alerts_are_back_in_the_pipeline_without_a_repage(tmp_path, monkeypatch):
    monkeypatch.setenv("FACWATCH_WEBHOOK_KEY", "k")
    site = load_site(SKELETON_CONFIG)
    db = tmp_path / "facwatch.db"
    notify = Path(__file__).resolve().parents[3] / "config" / "notify.yaml"
    first = Alerting(site, db, notify)
    now = time.time()
    first.observe([Reading("dh1-ups-a", "output.source", now, 5.0, text="battery")])
    first.tick(now)
    fp = next(a.fingerprint for a in first.engine.alerts() if a.rule == "ups_on_battery")
    first.state.close()

    restarted = Alerting(site, db, notify)  # escalation and resolves need the pipeline to know what fires
    assert fp in restarted.pipeline.latest
    restarted.state.close()
