"""Alert engine throughput: readings evaluated per second against 5,000 rules.

A synthetic 200-sensor site and 5,000 threshold rules (25 per sensor, each with its own levels,
hysteresis and hold), fed batches of readings as the collector would deliver them. Run as
``python bench/bench_alerts.py --out PATH.json`` or import ``run()``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerts.engine import AlertEngine  # noqa: E402
from alerts.rules import load_rules  # noqa: E402
from alerts.state import AlertStateStore  # noqa: E402
from collectors.model import Reading  # noqa: E402
from config.load import load_site  # noqa: E402

SENSORS, RULES_PER_SENSOR, BATCHES = 200, 25, 60


def site_yaml(sensors: int) -> str:
    """Sensors only: the engine needs the site's devices, not a network."""
    lines = ["site: {id: bench, name: bench}", "rooms: [{id: hall, name: Hall}]", "devices:"]
    lines += [f"  - {{id: th-{i}, class: thsensor, profile: thsensor/generic_xymd02, room: hall, "
              f"host: 127.0.0.1, port: {20000 + i // 10}, modbus: {{unit_id: {i % 10 + 1}}}}}" for i in range(sensors)]
    return "\n".join(lines) + "\n"


def rules_yaml(sensors: int, per_sensor: int) -> str:
    """Threshold rules, each bound to one sensor, with staggered levels so some fire and clear."""
    lines = ["rules:"]
    for i in range(sensors):
        for j in range(per_sensor):
            lines += [f"  - name: t_{i}_{j}", "    kind: threshold",
                      f"    match: {{device: th-{i}, point: ambient.temperature}}",
                      f"    warning: {{above: {22 + j * 0.1:.1f}}}", "    hysteresis: 0.2", "    for: 30s"]
    return "\n".join(lines) + "\n"


def run(sensors: int = SENSORS, per_sensor: int = RULES_PER_SENSOR, batches: int = BATCHES,
        mean_c: float = 21.0) -> dict:
    """Feed ``batches`` polls of every sensor through the engine; readings/s and transitions.

    ``mean_c`` 21 keeps every sensor inside every rule (the normal day); 23 puts them on the
    thresholds, so readings keep moving alerts between inactive and pending (the worst case).
    """
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "site.yaml").write_text(site_yaml(sensors))
        (Path(tmp) / "rules.yaml").write_text(rules_yaml(sensors, per_sensor))
        site = load_site(Path(tmp) / "site.yaml")
        t0 = time.perf_counter()
        rules = load_rules([Path(tmp) / "rules.yaml"])
        load_s = time.perf_counter() - t0
        state = AlertStateStore(Path(tmp) / "alerts.db")
        engine = AlertEngine(site, rules, state)
        rng, now, changed, readings = random.Random(1), time.time(), 0, 0
        t0 = time.perf_counter()
        for batch in range(batches):
            ts = now + batch * 10
            spread = 1.2 if mean_c > 22 else 0.3
            for i in range(sensors):
                batch_readings = [Reading(f"th-{i}", "ambient.temperature", ts, round(rng.gauss(mean_c, spread), 1)),
                                  Reading(f"th-{i}", "ambient.humidity", ts, round(rng.gauss(45, 3), 1))]
                changed += len(engine.observe(batch_readings))
                readings += len(batch_readings)
            changed += len(engine.tick(ts + 5))
        elapsed = time.perf_counter() - t0
        state.close()
    return {"rules": len(rules), "sensors": sensors, "readings": readings, "seconds": round(elapsed, 3),
            "readings_per_s": round(readings / elapsed), "alert_transitions": changed,
            "rule_load_s": round(load_s, 2), "python": platform.python_version()}


def main() -> int:
    """Run and print the figures; write JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {"normal": run(mean_c=21.0), "on_thresholds": run(batches=10, mean_c=23.0)}
    for name, r in result.items():
        print(f"{name}: {r['readings_per_s']:,} readings/s against {r['rules']:,} rules "
              f"({r['alert_transitions']} alert transitions, rules loaded in {r['rule_load_s']} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
