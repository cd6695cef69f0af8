"""A Rollout's canary steps as (weight, duration) pairs: from ``--steps``, a YAML file or the API.

Argo Rollouts steps are a list of ``setWeight``, ``pause`` and ``analysis`` entries; what the
judge sees is how long the canary runs at each weight. A timed ``pause`` adds its duration at
the weight in force; an ``analysis`` step adds the duration of its analysis run (not visible in
the Rollout: the bundled template measures 10 times 30 s apart, ``--analysis-duration``); an
untimed pause waits for a human and adds nothing. Weight 0 is no canary traffic: skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analyzer.errors import InputError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")


class StepsError(InputError):
    """Steps that cannot be read; the message names the flag or file and the step."""


@dataclass(frozen=True)
class Step:
    weight: float  # percent of requests to the canary
    seconds: float


def parse_duration(text: object, where: str) -> float:
    """Seconds of an Argo/Go duration (``10m``, ``1h30m``, ``45s``) or a number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str) and text.strip().isdigit():
        seconds = float(text.strip())
    elif isinstance(text, str) and text and _DURATION.sub("", text.strip()) == "":
        units = {"h": 3600.0, "m": 60.0, "s": 1.0}
        seconds = sum(float(n) * units[u] for n, u in _DURATION.findall(text.strip()))
    else:
        raise StepsError(f"{where}: {text!r} is not a duration (e.g. 10m, 1h30m, 45s)")
    if not seconds > 0:
        raise StepsError(f"{where}: the duration must be positive")
    return seconds


def _weight(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise StepsError(f"{where}: setWeight must be a number from 0 to 100")
    return float(value)


def _merge(steps: list[Step]) -> tuple[Step, ...]:
    """Consecutive steps at one weight are one step for the judge."""
    out: list[Step] = []
    for step in steps:
        if out and out[-1].weight == step.weight:
            out[-1] = Step(step.weight, out[-1].seconds + step.seconds)
        else:
            out.append(step)
    return tuple(out)


def parse_steps_flag(text: str) -> tuple[Step, ...]:
    """``--steps 5:10m,25:10m,50:10m``: weight percent and duration per step."""
    steps = []
    for i, part in enumerate(text.split(",")):
        weight, colon, duration = part.strip().partition(":")
        where = f"--steps: step {i + 1} ({part.strip()!r})"
        if not colon:
            raise StepsError(f"{where}: expected WEIGHT:DURATION, e.g. 5:10m")
        try:
            value = float(weight)
        except ValueError:
            raise StepsError(f"{where}: weight {weight!r} is not a number") from None
        if not 0 < value <= 100:
            raise StepsError(f"{where}: weight must be above 0 and at most 100")
        steps.append(Step(value, parse_duration(duration, where)))
    return _merge(steps)


def rollout_steps(rollout: Any, source: str, analysis_seconds: float) -> tuple[Step, ...]:
    """The timed steps of a Rollout object (``spec.strategy.canary.steps``)."""
    spec = rollout.get("spec") if isinstance(rollout, dict) else None
    strategy = spec.get("strategy") if isinstance(spec, dict) else None
    canary = strategy.get("canary") if isinstance(strategy, dict) else None
    raw = canary.get("steps") if isinstance(canary, dict) else None
    if not isinstance(raw, list) or not raw:
        raise StepsError(f"{source}: spec.strategy.canary.steps: no canary steps")
    weight = 0.0
    steps: list[Step] = []
    for i, entry in enumerate(raw):
        where = f"{source}: spec.strategy.canary.steps[{i}]"
        if not isinstance(entry, dict):
            raise StepsError(f"{where}: must be an object")
        seconds = 0.0
        if "setWeight" in entry:
            weight = _weight(entry["setWeight"], where)
        elif "pause" in entry:
            pause = entry["pause"]
            if isinstance(pause, dict) and pause.get("duration") is not None:
                seconds = parse_duration(pause["duration"], f"{where}.pause.duration")
        elif "analysis" in entry:
            seconds = analysis_seconds
        if seconds > 0 and weight > 0:
            steps.append(Step(weight, seconds))
    if not steps:
        raise StepsError(f"{source}: spec.strategy.canary.steps: no timed pause or analysis "
                         f"step at a weight above 0")
    return _merge(steps)


def read_rollout_file(path: str, analysis_seconds: float) -> tuple[Step, ...]:
    """Steps of the Rollout in a YAML file (the first document whose kind is Rollout)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StepsError(f"--rollout-file {path}: cannot read: {exc}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise StepsError(f"--rollout-file {path}: not valid YAML: {exc}") from None
    rollouts = [d for d in documents if d.get("kind") == "Rollout"]
    if not rollouts:
        raise StepsError(f"--rollout-file {path}: no document of kind Rollout")
    return rollout_steps(rollouts[0], f"--rollout-file {path}", analysis_seconds)


def to_yaml(steps: tuple[Step, ...]) -> str:
    """Rollout ``steps`` for the snippet: setWeight then a timed pause, per step."""
    lines = ["steps:"]
    for step in steps:
        weight = int(step.weight) if float(step.weight).is_integer() else step.weight
        lines += [f"  - setWeight: {weight}",
                  f"  - pause: {{duration: {format_duration(step.seconds)}}}"]
    return "\n".join(lines) + "\n"


def format_duration(seconds: float) -> str:
    """``90s`` → ``1m30s``; whole minutes as ``10m``, whole hours as ``2h``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (
        f"{secs}s" if secs else "")
    return text or "0s"
