"""`facwatch alerts test FILE`: rule tests as YAML timelines, in the spirit of `promtool test rules`.

A test feeds input series (one value per interval) through the real engine on a fake clock and checks,
at given times, which alerts of a rule are pending or firing. Value tokens: a number, a state name from
the device's profile, ``_`` (no sample: the point goes stale), ``missing`` (the device said "no value"),
``VxN`` (V repeated, N+1 samples in all), ``Vx<duration>`` (V repeated for that long, e.g. ``runningx30m`` or
``_x31d``: one sample per interval) and ``A+BxN`` / ``A-BxN`` (A, A±B, …, N+1 samples).

A series may start later (``start: 32d``) and sample at its own ``interval``. Month-long timelines stay fast
with ``tick_every`` (e.g. 1h): the engine then runs only at samples that carry a value, at checks and acks,
and on that clock — not at every interval of a long gap.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from alerts.engine import AlertEngine
from alerts.model import Alert, AlertState
from alerts.rules import Duration, load_rules
from alerts.state import AlertStateStore
from collectors.model import Quality, Reading
from config.durations import parse_duration
from config.load import Site, load_site
from config.yamlfile import ConfigError, load_yaml, validate

_NUMBER = r"-?\d+(?:\.\d+)?"
_DURATION = r"(?:\d+(?:\.\d+)?[dhms])+"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Series(_Strict):
    """One point of one device on the timeline: samples from ``start``, one per ``interval`` (the test's default)."""

    device: str
    point: str
    values: str
    scenario: str | None = None
    start: Duration = 0.0
    interval: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] | None = None


class ExpAlert(_Strict):
    """An alert expected at a check time; labels and annotations are matched as subsets."""

    labels: dict[str, str] = {}
    severity: Literal["info", "warning", "critical"] | None = None
    state: Literal["pending", "firing"] = "firing"
    annotations: dict[str, str] = {}
    scenario: str | None = None


class AlertCheck(_Strict):
    """The alerts of one rule (optionally only those with ``labels``) expected at ``eval_time``."""

    eval_time: Duration
    alertname: str
    labels: dict[str, str] = {}
    exp_alerts: list[ExpAlert] = []


class Ack(_Strict):
    """Someone acknowledges the active alerts of a rule (with these labels) at a time."""

    at: Duration
    alertname: str
    labels: dict[str, str] = {}
    by: str = "tester"
    note: str | None = None


class TestCase(_Strict):
    """One scenario: input series, acknowledgements and checks."""

    name: str
    interval: Duration = Field(60.0, gt=0)
    tick_every: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] | None = None
    input_series: list[Series]
    acks: list[Ack] = []
    alert_rule_test: list[AlertCheck]


class TestFile(_Strict):
    """A rule-test file: the site (for devices and profiles), the rule files and the tests."""

    site: str
    rule_files: list[str]
    tests: list[TestCase]


def run_rule_tests(path: str | Path) -> tuple[bool, str]:
    """Run a rule-test file: (all passed, report text). Exit 0 when ok, else 1 (as promtool)."""
    base = Path(path).parent
    try:
        spec = validate(TestFile, load_yaml(path))
        site = load_site(base / spec.site)
        rules = load_rules([base / f for f in spec.rule_files])
    except ConfigError as exc:
        return False, f"{path}: cannot run the tests:\n{exc}"
    lines = [f"Unit testing: {path}"]
    failed = 0
    for case in spec.tests:
        try:
            failures = _run_case(site, rules, case)
        except ValueError as exc:
            failures = [str(exc)]
        failed += bool(failures)
        lines.append(f"  {'FAILED' if failures else 'SUCCESS'}: {case.name}")
        lines += [f"    {text}" for text in failures]
    lines.append(f"{len(spec.tests) - failed} passed, {failed} failed")
    return failed == 0, "\n".join(lines)


def _run_case(site: Site, rules: list, case: TestCase) -> list[str]:
    """Replay one test on a fresh engine and store; the failure texts."""
    series = [(s, _timeline(s, case.interval)) for s in case.input_series]
    times = _times(case, series)
    now = [0.0]
    with tempfile.TemporaryDirectory() as tmp:
        store = AlertStateStore(Path(tmp) / "alerts.db")
        engine = AlertEngine(site, rules, store, clock=lambda: now[0])
        failures = []
        for t in times:
            now[0] = t
            engine.observe(_readings(site, series, t))
            engine.tick(t)
            _acknowledge(engine, [a for a in case.acks if _at(a.at) == t])
            failures += [f for c in case.alert_rule_test if _at(c.eval_time) == t for f in _check(engine, c)]
        store.close()
    return failures


def _timeline(s: Series, default_interval: float) -> dict[float, str]:
    """Sample time → token for one series."""
    step = s.interval or default_interval
    return {_at(s.start + k * step): token for k, token in enumerate(_expand(s.values, step))}


def _at(t: float) -> float:
    return round(t, 6)  # sample, check and ack times compare equal despite float steps


def _times(case: TestCase, series: list[tuple[Series, dict[float, str]]]) -> list[float]:
    """When the engine runs: every sample time, or with ``tick_every`` only at values, checks, acks and ticks."""
    times = {t for _, timeline in series for t, token in timeline.items() if case.tick_every is None or token != "_"}
    if case.tick_every is not None:
        end = max((t for _, timeline in series for t in timeline), default=0.0)
        times |= {_at(k * case.tick_every) for k in range(int(end // case.tick_every) + 1)}
    times |= {_at(c.eval_time) for c in case.alert_rule_test} | {_at(a.at) for a in case.acks}
    return sorted(times)


def _expand(text: str, interval: float | None = None) -> list[str]:
    """Value tokens → one token per sample (see the module docstring)."""
    out: list[str] = []
    for token in text.split():
        series = re.fullmatch(rf"({_NUMBER})([+-]\d+(?:\.\d+)?)x(\d+)", token)
        repeat = re.fullmatch(r"(.+)x(\d+)", token)
        lasting = re.fullmatch(rf"(.+)x({_DURATION})", token) if interval else None
        if series:
            start, step, count = float(series[1]), float(series[2]), int(series[3])
            out += [repr(start + step * i) for i in range(count + 1)]
        elif repeat:
            out += [repeat[1]] * (int(repeat[2]) + 1)
        elif lasting and interval:
            out += [lasting[1]] * (round(parse_duration(lasting[2]) / interval) + 1)
        else:
            out.append(token)
    return out


def _readings(site: Site, series: list[tuple[Series, dict[float, str]]], t: float) -> list[Reading]:
    return [_reading(site, s, timeline[t], t) for s, timeline in series if timeline.get(t, "_") != "_"]


def _reading(site: Site, s: Series, token: str, t: float) -> Reading:
    """A reading from one token: a number, ``missing`` or a state name of the point's enum."""
    if token == "missing":
        return Reading(s.device, s.point, t, None, Quality.MISSING, scenario=s.scenario)
    if re.fullmatch(_NUMBER + r"(?:e-?\d+)?", token):
        value = float(token)
        return Reading(s.device, s.point, t, value, text=_state_name(site, s, value), scenario=s.scenario)
    code = _state_code(site, s, token)
    return Reading(s.device, s.point, t, float(code), text=token, scenario=s.scenario)


def _enum(site: Site, s: Series) -> dict:
    try:
        device = site.device(s.device)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown device {s.device!r}") from exc
    return {p.name: p.enum for p in site.profile(device).points}.get(s.point) or {}


def _state_name(site: Site, s: Series, value: float) -> str | None:
    state = _enum(site, s).get(int(value))
    return state.name if state else None


def _state_code(site: Site, s: Series, name: str) -> int:
    for code, state in sorted(_enum(site, s).items()):
        if state.name == name:
            return code
    raise ValueError(f"{s.device} {s.point}: {name!r} is neither a number nor a state of its profile")


def _acknowledge(engine: AlertEngine, acks: list[Ack]) -> None:
    for ack in acks:
        for alert in engine.alerts():
            if alert.rule == ack.alertname and _subset(ack.labels, alert.labels):
                engine.acknowledge(alert.fingerprint, ack.by, ack.note, ack.at)


def _check(engine: AlertEngine, check: AlertCheck) -> list[str]:
    got = sorted((a for a in engine.alerts() if a.rule == check.alertname and _subset(check.labels, a.labels)),
                 key=lambda a: sorted(a.labels.items()))
    unmatched = list(got)
    missing = []
    for exp in check.exp_alerts:
        hit = next((a for a in unmatched if _matches(exp, a)), None)
        if hit is None:
            missing.append(exp)
        else:
            unmatched.remove(hit)
    if not missing and not unmatched:
        return []
    return [f"alertname: {check.alertname}, time: {check.eval_time:g}s",
            f"  exp: {[_show_exp(e) for e in check.exp_alerts]}", f"  got: {[_show(a) for a in got]}"]


def _matches(exp: ExpAlert, alert: Alert) -> bool:
    return (_subset(exp.labels, alert.labels) and _subset(exp.annotations, alert.annotations)
            and (exp.severity is None or exp.severity == alert.severity)
            and AlertState(exp.state) == alert.state and exp.scenario == alert.scenario)


def _subset(want: dict[str, str], have: object) -> bool:
    return all(getattr(have, "get", lambda _: None)(k) == v for k, v in want.items())


def _show_exp(exp: ExpAlert) -> str:
    return f"{exp.state} {exp.severity or '*'} {exp.labels}"


def _show(alert: Alert) -> str:
    value = "" if alert.value is None else f" value={alert.value:.2f}"
    return f"{alert.state} {alert.severity} {dict(alert.labels)}{value}"
