"""Room climate physics: covers the profile, stays in a sane band, replays with a seed."""

from __future__ import annotations

import random
import statistics

import pytest

from collectors import codec
from collectors.model import Quality
from collectors.profile import load_profiles
from config.schema import DeviceSimulation
from simulators.devices.climate import MeanReverting, RoomClimateModel

PROFILE = load_profiles()["thsensor/generic_xymd02"]
DAY_S = 24 * 3600


def model(seed: int = 1, **params) -> RoomClimateModel:
    return RoomClimateModel(DeviceSimulation(**params), random.Random(seed), unit_id=3)


def day_of_readings(sim: RoomClimateModel, dt_s: float = 10.0) -> list[dict[str, float]]:
    readings = []
    for _ in range(int(DAY_S / dt_s)):
        sim.step(dt_s)
        readings.append(sim.values())
    return readings


def test_values_cover_every_profile_point():
    assert set(model().values()) == {spec.name for spec in PROFILE.points}


def test_config_registers_report_unit_id_9600_baud_and_no_offsets():
    values = model().values()
    assert values["config.address"] == 3
    assert values["config.baud"] == 9600
    assert values["config.temperature_offset"] == 0
    assert values["config.humidity_offset"] == 0


def test_every_value_survives_the_codec_round_trip():
    sim = model()
    sim.step(60)
    for spec in PROFILE.points:
        value = sim.values()[spec.name]
        decoded, quality, _ = codec.decode(spec, codec.encode(spec, value))
        assert quality is Quality.GOOD
        assert decoded == pytest.approx(value, abs=spec.scale / 2 + 1e-9)


def test_climate_stays_in_a_sane_band_over_24_simulated_hours():
    sim = model(temperature_c=21.5, humidity_pct=45.0, noise=1.0)
    readings = day_of_readings(sim)
    temperatures = [r["ambient.temperature"] for r in readings]
    humidities = [r["ambient.humidity"] for r in readings]
    assert 19.5 < min(temperatures) <= max(temperatures) < 23.5
    assert 38 < min(humidities) <= max(humidities) < 52
    assert statistics.mean(temperatures) == pytest.approx(21.5, abs=0.3)
    assert statistics.mean(humidities) == pytest.approx(45.0, abs=1.2)
    assert 0.1 < statistics.pstdev(temperatures) < 0.5  # it does move, about ±0.5 °C (2 σ)


def test_noise_scales_the_amplitude():
    quiet = statistics.pstdev(r["ambient.temperature"] for r in day_of_readings(model(noise=0.2)))
    loud = statistics.pstdev(r["ambient.temperature"] for r in day_of_readings(model(noise=3.0)))
    assert loud > 5 * quiet


def test_zero_noise_holds_the_set_points_exactly():
    sim = model(temperature_c=-20.5, humidity_pct=80.0, noise=0.0)
    sim.step(3600)
    assert sim.values()["ambient.temperature"] == -20.5
    assert sim.values()["ambient.humidity"] == 80.0


def test_same_seed_same_weather_other_seed_other_weather():
    first, again, other = model(seed=7), model(seed=7), model(seed=8)
    for sim in (first, again, other):
        for _ in range(100):
            sim.step(30)
    assert first.values() == again.values()
    assert first.values() != other.values()


def test_one_big_step_has_the_same_spread_as_many_small_ones():
    # exact OU discretisation: a 1 h step must not explode or freeze
    process = MeanReverting(mean=0.0, sigma=1.0, tau_s=600.0, value=0.0)
    rng = random.Random(3)
    samples = [process.step(3600.0, rng) for _ in range(4000)]
    assert statistics.pstdev(samples) == pytest.approx(1.0, rel=0.1)


def test_humidity_is_clipped_to_what_a_sensor_reports():
    sim = model(humidity_pct=99.5, noise=10.0)
    for _ in range(500):
        sim.step(60)
        assert 0.0 <= sim.values()["ambient.humidity"] <= 100.0


def test_time_only_moves_when_stepped():
    sim = model()
    before = sim.values()
    assert sim.values() == before
    sim.step(0)
    assert sim.values() == before
    assert sim.elapsed_s == 0
