"""Reward functions, chosen by `data_source` through a registry; `compute_score` is verl's entry.

Point verl at it with `reward.custom_reward_function.path=<this file>` and `name=compute_score`.
Reward modules are imported on first use, so importing this package stays cheap.

Dispatch: an exact name first (e.g. "chord/tiny_arith"), then the longest registered prefix
of the lower-cased data_source or of its last "/"-separated part (so "HuggingFaceH4/MATH-500"
and "aime24" both reach the math reward). An unknown data_source raises ValueError listing the
known ones. Register more with `register_reward`.

Every call returns the same keys whatever the data_source: the union of all registered
rewards' result keys, missing ones filled with their defaults. verl stacks the keys of the
first row of a batch for all rows, so a batch mixing data sources needs identical keys.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: `target` is "module:function"; matched by `exact` names or `prefixes`."""

    name: str
    target: str
    exact: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


_REGISTRY: dict[str, RewardSpec] = {}
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()
_DEFAULTS_CACHE: dict[str, float | str] | None = None


def register_reward(
    name: str, target: str, *, exact: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()
) -> None:
    """Register (or replace) reward `name`; `target` ("module:function") is imported on first use.

    Prefixes are compared lower-cased. The target's module may define `RESULT_DEFAULTS`
    (key -> default value) to declare its result keys.
    """
    global _DEFAULTS_CACHE
    if ":" not in target:
        raise ValueError(f"reward target must be 'module:function', got {target!r}")
    with _LOCK:
        _REGISTRY[name] = RewardSpec(name, target, tuple(exact), tuple(p.lower() for p in prefixes))
        _LOADED.pop(name, None)
        _DEFAULTS_CACHE = None


register_reward("tiny", "chord.rewards.tiny_task:compute_tiny_reward", exact=("chord/tiny_arith",))
register_reward("shift", "chord.rewards.shift_task:compute_shift_reward", prefixes=("chord/shift_",))
register_reward(
    "math",
    "chord.rewards.math:compute_math_reward",
    prefixes=("openr1", "math", "aime", "amc", "math500", "olympiad", "minerva", "gsm8k"),
)
register_reward(
    "tool_call", "chord.rewards.tool_call:compute_tool_call_reward", prefixes=("toolace", "bfcl", "tool")
)


def known_data_sources() -> list[str]:
    """Human-readable list of what dispatches: exact names and 'prefix*' patterns."""
    out: list[str] = []
    for spec in _REGISTRY.values():
        out.extend(spec.exact)
        out.extend(f"{p}*" for p in spec.prefixes)
    return out


def resolve_reward(data_source: str) -> RewardSpec:
    """The spec that handles `data_source`; ValueError naming it and the known ones otherwise."""
    source = str(data_source)
    for spec in _REGISTRY.values():
        if source in spec.exact:
            return spec
    candidates = {source.lower(), source.lower().rsplit("/", 1)[-1]}
    best: tuple[int, RewardSpec] | None = None
    for spec in _REGISTRY.values():
        for prefix in spec.prefixes:
            if any(c.startswith(prefix) for c in candidates) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), spec)
    if best is None:
        raise ValueError(
            f"no reward function for data_source {source!r}; known: {', '.join(known_data_sources())}"
        )
    return best[1]


def _load(spec: RewardSpec) -> Any:
    fn = _LOADED.get(spec.name)
    if fn is None:
        module_name, fn_name = spec.target.split(":", 1)
        fn = getattr(importlib.import_module(module_name), fn_name)
        _LOADED[spec.name] = fn
    return fn


def result_defaults() -> dict[str, float | str]:
    """Union of the registered rewards' result keys with their defaults (imports the modules)."""
    global _DEFAULTS_CACHE
    if _DEFAULTS_CACHE is None:
        merged: dict[str, float | str] = {"score": 0.0}
        for spec in list(_REGISTRY.values()):
            module = importlib.import_module(spec.target.split(":", 1)[0])
            for key, default in getattr(module, "RESULT_DEFAULTS", {}).items():
                merged.setdefault(key, default)
        _DEFAULTS_CACHE = merged
    return dict(_DEFAULTS_CACHE)


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float | str]:
    """verl custom reward entry: score one response with the reward registered for `data_source`.

    Returns `{"score": float, ...}` with the keys of `result_defaults()`; keyword arguments
    (e.g. verl's `reward_kwargs`) go to the reward function, which ignores those it does not use.
    """
    spec = resolve_reward(data_source)
    result = _load(spec)(data_source, solution_str, ground_truth, extra_info, **kwargs)
    if not isinstance(result, dict):
        result = {"score": float(result)}
    out = result_defaults()
    out.update(result)
    out["score"] = float(out["score"])
    return out


__all__ = [
    "RewardSpec",
    "compute_score",
    "known_data_sources",
    "register_reward",
    "resolve_reward",
    "result_defaults",
]
