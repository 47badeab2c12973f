"""Scripted scenarios: YAML timelines of plant events, run on simulated time.

A scenario file (``simulators/scenarios/<name>.yaml``)::

    name: mains_failure
    description: The utility fails for 20 minutes ...
    duration: 40m
    steps:
      - {at: 30s, do: utility, available: false}
      - {at: 20m30s, do: utility, available: true}

An optional ``expect:`` list says which alerts a drill of the scenario must raise (``facwatch drill``)::

    expect:
      - {alert: mains_failure, after: 30s, within: 60s}

``alert`` is the rule name (``labels`` may narrow it to e.g. one device), ``after`` the simulated time of
the step that causes it (0 or a step's ``at``), ``within`` the wall-clock budget from that step reaching
the plant to the alert firing (poll interval + rule hold + evaluation: none of it runs on simulated time).

``at`` is simulated time since the scenario started, so a run at ``time_scale: 60`` takes a minute of
wall time per simulated hour. Each ``do`` names an action below; its other keys are the action's
arguments, checked when the file is loaded (an unknown action or argument is a file:line error).
While a scenario runs, ``SiteSimulator.active_scenario`` names it, so readings taken meanwhile can be
tagged and kept out of real evidence.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.durations import parse_duration
from config.yamlfile import ConfigError, YamlDocument, load_yaml, validate

if TYPE_CHECKING:
    from simulators.site import SiteSimulator

log = logging.getLogger(__name__)
SCENARIO_DIR = Path(__file__).parent / "scenarios"
# --- actions: what a step can do to the plant -------------------------------------------------

async def utility(sim: SiteSimulator, available: bool) -> None:
    """The utility supply fails (False) or returns (True)."""
    sim.plant.power.set_utility(available)


async def generator_fails_to_start(sim: SiteSimulator, failing: bool = True, generator: str | None = None) -> None:
    """Make the generator fail (or stop failing) to start."""
    sim.plant.power.set_generator_fails_to_start(failing, generator)


async def generator_alarms_reset(sim: SiteSimulator, generator: str | None = None) -> None:
    """Someone resets the generator's latched alarms at its controller (e.g. after a fail to start)."""
    sim.plant.power.reset_generator_alarms(generator)


async def generator_test(sim: SiteSimulator, on_load: bool = True, generator: str | None = None) -> None:
    """Start a generator test run, on load (the ATS transfers) or off load."""
    sim.plant.power.start_generator_test(on_load=on_load, generator_id=generator)


async def generator_test_end(sim: SiteSimulator, generator: str | None = None) -> None:
    """End a generator test run (retransfer, cool-down, stop)."""
    sim.plant.power.end_generator_test(generator)


async def ups_self_test(sim: SiteSimulator, ups: str | None = None, result: str = "pass") -> None:
    """Start a UPS battery self-test that ends with ``result`` (pass, warning, fail)."""
    sim.plant.power.start_ups_self_test(ups, result)


async def crac_failed(sim: SiteSimulator, crac: str | None = None, failed: bool = True) -> None:
    """A CRAC unit trips (or is repaired); the site's first CRAC unless one is named."""
    sim.plant.rooms.set_crac_failed(sim.device(crac, "crac").device.id, failed)


async def zone(sim: SiteSimulator, zone: int, state: str) -> None:
    """A detection zone goes to normal, prealarm, alarm, trouble or disabled."""
    sim.plant.fire.set_zone(zone, state)


async def vesda_smoke(sim: SiteSimulator, relative: float, ramp: str | float = 60) -> None:
    """Aspirating detector smoke ramps to ``relative`` (0–20 scale relative to Fire 1)."""
    sim.plant.fire.set_vesda_smoke(relative, parse_duration(ramp))


async def preaction_leak(sim: SiteSimulator, bar_per_min: float) -> None:
    """Extra leak on the pre-action supervisory air."""
    sim.plant.fire.set_preaction_leak(bar_per_min)


async def compressor_failed(sim: SiteSimulator, failed: bool = True) -> None:
    """The pre-action air compressor fails (or is repaired)."""
    sim.plant.fire.set_compressor_failed(failed)


async def sprinkler_head_opens(sim: SiteSimulator) -> None:
    """A sprinkler head opens: the pre-action piping loses its air."""
    sim.plant.fire.open_sprinkler_head()


async def gas_abort(sim: SiteSimulator, held: bool = True) -> None:
    """Someone holds (or releases) the gas abort switch."""
    sim.plant.fire.set_gas_abort(held)


async def gas_lockoff(sim: SiteSimulator, on: bool = True) -> None:
    """The gas lock-off valve is closed (system impaired) or opened."""
    sim.plant.fire.set_gas_lockoff(on)


async def fire_reset(sim: SiteSimulator) -> None:
    """The simulated fire system returns to normal (the simulator's own reset, never facwatch's)."""
    sim.plant.fire.reset()


async def sensor_value(sim: SiteSimulator, point: str, raw: int, device: str | None = None) -> None:
    """A point puts an exact raw value on the wire (e.g. a sentinel such as 0x7FFF); first sensor by default."""
    sim.set_override(sim.device(device, "thsensor").device.id, point, raw, raw=True)


async def sensor_stuck(sim: SiteSimulator, device: str | None = None) -> None:
    """Every point of a device freezes at its current value (the site's first sensor by default)."""
    sim.freeze(sim.device(device, "thsensor").device.id)


async def sensor_restore(sim: SiteSimulator, device: str | None = None) -> None:
    """A device's points follow the physics again."""
    sim.clear_override(sim.device(device, "thsensor").device.id)


async def device_vanishes(sim: SiteSimulator, device: str | None = None) -> None:
    """A device stops answering on the wire (the site's first sensor by default)."""
    await sim.silence(sim.device(device, "thsensor").device.id, True)


async def device_returns(sim: SiteSimulator, device: str | None = None) -> None:
    """A vanished device answers again."""
    await sim.silence(sim.device(device, "thsensor").device.id, False)


Action = Callable[..., Any]
ACTIONS: dict[str, Action] = {
    fn.__name__: fn for fn in (
        utility, generator_fails_to_start, generator_alarms_reset, generator_test, generator_test_end,
        ups_self_test, crac_failed, zone, vesda_smoke, preaction_leak, compressor_failed, sprinkler_head_opens,
        gas_abort, gas_lockoff, fire_reset, sensor_value, sensor_stuck, sensor_restore, device_vanishes, device_returns,
    )
}


# --- files -------------------------------------------------------------------------------------

class StepModel(BaseModel):
    """One step: when, which action, and the action's arguments (extra keys)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    at: float = Field(ge=0)
    do: str

    @field_validator("at", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("do")
    @classmethod
    def _known_action(cls, name: str) -> str:
        if name not in ACTIONS:
            raise ValueError(f"unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}")
        return name


class ExpectModel(BaseModel):
    """An alert a drill of the scenario must raise: which, caused by which step, within what budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alert: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    labels: dict[str, str] = Field(default_factory=dict)
    after: float = Field(default=0.0, ge=0)
    within: float = Field(gt=0)

    @field_validator("after", "within", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class ScenarioModel(BaseModel):
    """A scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    duration: float = Field(gt=0)
    steps: list[StepModel] = Field(min_length=1)
    expect: list[ExpectModel] = Field(default_factory=list)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


@dataclass(frozen=True, slots=True)
class Step:
    """A validated step ready to run."""

    at: float
    action: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Expectation:
    """An alert a drill must see: rule, label subset, the causing step's time, the wall-clock budget."""

    alert: str
    labels: Mapping[str, str]
    after: float
    within: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario."""

    name: str
    description: str
    duration: float
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...] = ()


def load_scenario(path: Path) -> Scenario:
    """Load and check one scenario file (action arguments included)."""
    doc = load_yaml(path)
    model = validate(ScenarioModel, doc)
    problems = [doc.problem(("steps", i), msg) for i, step in enumerate(model.steps)
                if (msg := _argument_problem(step))]
    if model.name != path.stem:
        problems.append(doc.problem(("name",), f"name must match the file name ({path.stem})"))
    problems += _order_problems(model, doc)
    if problems:
        raise ConfigError(problems)
    steps = tuple(Step(s.at, s.do, dict(s.model_extra or {})) for s in model.steps)
    expect = tuple(Expectation(e.alert, dict(e.labels), e.after, e.within) for e in model.expect)
    return Scenario(model.name, model.description, model.duration, steps, expect)


def _argument_problem(step: StepModel) -> str | None:
    """Why a step's arguments do not fit its action, or None."""
    signature = inspect.signature(ACTIONS[step.do])
    try:
        signature.bind(None, **(step.model_extra or {}))
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p != "sim"]
        return f"{step.do}: {exc} (arguments: {', '.join(accepted) or 'none'})"
    return None


def _order_problems(model: ScenarioModel, doc: YamlDocument) -> list:
    problems = [doc.problem(("steps", i, "at"), f"step at {step.at:g} s is after the scenario's end "
                                                f"({model.duration:g} s)")
                for i, step in enumerate(model.steps) if step.at > model.duration]
    times = {0.0, *(step.at for step in model.steps)}
    return problems + [doc.problem(("expect", i, "after"), f"after {e.after:g} s is not the time of a step "
                                                            f"({', '.join(f'{t:g}' for t in sorted(times))})")
                       for i, e in enumerate(model.expect) if e.after not in times]


def load_scenarios(root: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    """Every shipped scenario by name; all problems of all files in one ConfigError."""
    scenarios, problems = {}, []
    for path in sorted(root.glob("*.yaml")):
        try:
            scenarios[path.stem] = load_scenario(path)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return scenarios


# --- running -----------------------------------------------------------------------------------

class ScenarioRunner:
    """Runs one scenario at a time against a SiteSimulator, on its simulated clock."""

    def __init__(self, sim: SiteSimulator, scenarios: Mapping[str, Scenario] | None = None,
                 on_change: Callable[[str, str, float], None] | None = None,
                 on_step: Callable[[str, Step, float], None] | None = None):
        self.sim = sim
        self.scenarios = dict(scenarios if scenarios is not None else load_scenarios())
        self._on_change = on_change  # (scenario, "started"|"finished"|"stopped", plant clock)
        self._on_step = on_step  # (scenario, step, plant clock) once the step has acted on the plant
        self._task: asyncio.Task | None = None
        self.active: str | None = None

    def start(self, name: str) -> asyncio.Task:
        """Start a scenario now; ValueError if it is unknown or another one runs."""
        if name not in self.scenarios:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(self.scenarios))}")
        if self.active is not None:
            raise ValueError(f"scenario {self.active!r} is still running")
        self.active = name
        self._task = asyncio.get_running_loop().create_task(self._run(self.scenarios[name]), name=f"scenario-{name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the running scenario (its effects stay until a later step or scenario undoes them)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._finish("stopped")

    async def wait(self) -> None:
        """Until the running scenario ends."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, scenario: Scenario) -> None:
        start = self.sim.plant.clock_s
        self._notify(scenario.name, "started")
        log.info("scenario %s started (×%g)", scenario.name, self.sim.time_scale)
        for step in sorted(scenario.steps, key=lambda s: s.at):
            await self._until(start + step.at)
            log.info("scenario %s at %gs: %s %s", scenario.name, step.at, step.action, dict(step.arguments))
            await ACTIONS[step.action](self.sim, **step.arguments)
            await self.sim.publish()
            if self._on_step is not None:
                self._on_step(scenario.name, step, self.sim.plant.clock_s)
        await self._until(start + scenario.duration)
        self._finish("finished")

    async def _until(self, plant_clock: float) -> None:
        """Sleep (wall time) until the plant's simulated clock reaches ``plant_clock``."""
        while self.sim.plant.clock_s < plant_clock:
            remaining = (plant_clock - self.sim.plant.clock_s) / self.sim.time_scale
            await asyncio.sleep(min(max(remaining, 0.01), self.sim.tick_s))

    def _finish(self, how: str) -> None:
        name, self.active = self.active, None
        if name is not None:
            log.info("scenario %s %s", name, how)
            self._notify(name, how)

    def _notify(self, name: str, what: str) -> None:
        if self._on_change is not None:
            self._on_change(name, what, self.sim.plant.clock_s)
