"""mu schedules: the weight of the SFT term in CHORD's objective, as a pure function of the step.

Schedules are stateless (the value depends only on the global step and, for the adaptive one,
the step's mean on-policy reward), so resuming from a checkpoint needs only the step.
The trainer builds one with :func:`build_mu_schedule` and calls it once per step::

    schedule = build_mu_schedule("cosine", warmup_steps=0, decay_steps=200, peak=0.9, valley=0.05)
    mu = schedule(step, mean_reward=None)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from chord.tensor_checks import check_number

__all__ = [
    "MU_SCHEDULES",
    "ConstantMu",
    "CosineMu",
    "LinearMu",
    "MuSchedule",
    "RewardAdaptiveMu",
    "build_mu_schedule",
    "mu_schedule",
]


def _check_mu(name: str, value: float) -> float:
    return check_number(name, value, low=0.0, high=1.0)


def _check_steps(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


def mu_schedule(step: int, *, warmup_steps: int, decay_steps: int, peak: float, valley: float) -> float:
    """CHORD's warmup + cosine-decay schedule at global ``step`` (W = warmup, D = decay).

    - ``s < W``:          ``mu = peak * s / W``
    - ``W <= s < W + D``: ``mu = valley + (peak - valley) * 0.5 * (1 + cos(pi * (s - W) / D))``
    - ``s >= W + D``:     ``mu = valley``

    ``W = 0`` starts at ``peak``; ``D = 0`` jumps from the end of the warmup to ``valley``.
    """
    _check_steps("step", step)
    _check_steps("warmup_steps", warmup_steps)
    _check_steps("decay_steps", decay_steps)
    peak = _check_mu("peak", peak)
    valley = _check_mu("valley", valley)
    if step < warmup_steps:
        return peak * step / warmup_steps
    if step < warmup_steps + decay_steps:
        progress = (step - warmup_steps) / decay_steps
        return valley + (peak - valley) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return valley


class MuSchedule(ABC):
    """Interface: ``schedule(step, mean_reward=None) -> mu`` in ``[0, 1]``."""

    @abstractmethod
    def __call__(self, step: int, mean_reward: float | None = None) -> float: ...


@dataclass(frozen=True)
class ConstantMu(MuSchedule):
    """``mu = value`` at every step (CHORD-phi uses 0.1; SFT alone 1; GRPO alone 0)."""

    value: float

    def __post_init__(self) -> None:
        _check_mu("value", self.value)

    def __call__(self, step: int, mean_reward: float | None = None) -> float:
        _check_steps("step", step)
        return float(self.value)


@dataclass(frozen=True)
class LinearMu(MuSchedule):
    """``mu = start + (end - start) * min(step / steps, 1)``; ``steps = 0`` gives ``end`` at once."""

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        _check_mu("start", self.start)
        _check_mu("end", self.end)
        _check_steps("steps", self.steps)

    def __call__(self, step: int, mean_reward: float | None = None) -> float:
        _check_steps("step", step)
        if step >= self.steps:
            return float(self.end)
        return self.start + (self.end - self.start) * step / self.steps


@dataclass(frozen=True)
class CosineMu(MuSchedule):
    """:func:`mu_schedule` with fixed parameters (warmup, cosine decay from ``peak`` to ``valley``)."""

    warmup_steps: int
    decay_steps: int
    peak: float
    valley: float

    def __post_init__(self) -> None:
        _check_steps("warmup_steps", self.warmup_steps)
        _check_steps("decay_steps", self.decay_steps)
        _check_mu("peak", self.peak)
        _check_mu("valley", self.valley)

    def __call__(self, step: int, mean_reward: float | None = None) -> float:
        return mu_schedule(
            step,
            warmup_steps=self.warmup_steps,
            decay_steps=self.decay_steps,
            peak=self.peak,
            valley=self.valley,
        )


@dataclass(frozen=True)
class RewardAdaptiveMu(MuSchedule):
    """``mu = clip(tau - mean_reward, 0, 1)``: more imitation while on-policy rewards are low.

    ``mean_reward`` is the mean reward of this step's on-policy rollouts (required).
    """

    tau: float = 0.5

    def __post_init__(self) -> None:
        check_number("tau", self.tau)

    def __call__(self, step: int, mean_reward: float | None = None) -> float:
        _check_steps("step", step)
        if mean_reward is None:
            raise ValueError("mean_reward: required by the adaptive mu schedule")
        reward = check_number("mean_reward", mean_reward)
        return min(1.0, max(0.0, self.tau - reward))


MU_SCHEDULES: dict[str, type[MuSchedule]] = {
    "constant": ConstantMu,
    "linear": LinearMu,
    "cosine": CosineMu,
    "adaptive": RewardAdaptiveMu,
}


def build_mu_schedule(name: str, **params: Any) -> MuSchedule:
    """Build the schedule registered as ``name`` (``constant``, ``linear``, ``cosine``, ``adaptive``).

    Unknown names, unknown parameters and missing required parameters raise ``ValueError``
    naming them; parameter values are validated by the schedule itself.
    """
    if name not in MU_SCHEDULES:
        raise ValueError(f"name: unknown mu schedule {name!r}; expected one of {sorted(MU_SCHEDULES)}")
    cls = MU_SCHEDULES[name]
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown parameter of mu schedule {name!r}; expected {sorted(known)}")
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [f for f in required if f not in params]
    if missing:
        raise ValueError(f"{missing[0]}: missing parameter of mu schedule {name!r}")
    return cls(**params)
