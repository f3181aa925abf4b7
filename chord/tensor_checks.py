"""Argument checks shared by the loss and advantage functions.

Every failure raises ``ValueError`` whose message starts with the offending argument's name,
e.g. ``"mask: expected bool or floating dtype, got torch.int64"``, so a caller (or a config
validator) can tell at once which input is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_float_tensor",
    "check_mask",
    "check_number",
    "check_row_flags",
]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_float_tensor(
    name: str,
    x: Any,
    *,
    shape: tuple[int, ...] | None = None,
    shapes: Iterable[tuple[int, ...]] | None = None,
    like: str | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a floating tensor of the given shape; return it cast to float32.

    ``shape`` demands one exact shape, ``shapes`` accepts any of several (e.g. ``[B]`` or
    ``[B, T]`` advantages); ``like`` names the argument the shape came from, for the message.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name}: expected a floating dtype, got {x.dtype}")
    allowed = [shape] if shape is not None else list(shapes or [])
    if allowed and _shape(x) not in allowed:
        wanted = " or ".join(str(s) for s in allowed)
        source = f" (from {like})" if like else ""
        raise ValueError(f"{name}: expected shape {wanted}{source}, got {_shape(x)}")
    return x.float()


def check_mask(name: str, mask: Any, shape: tuple[int, ...], *, like: str | None = None) -> torch.Tensor:
    """Check a 0/1 token mask (bool or floating dtype) of ``shape``; return it as float32.

    Integer masks are rejected on purpose: an int tensor holding counts or ids passed by mistake
    would otherwise be silently treated as weights.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not torch.is_floating_point(mask):
        raise ValueError(f"{name}: expected bool or floating dtype, got {mask.dtype}")
    if _shape(mask) != shape:
        source = f" (from {like})" if like else ""
        raise ValueError(f"{name}: expected shape {shape}{source}, got {_shape(mask)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name}: values must be 0 or 1")
    return mask.float()


def check_row_flags(name: str, flags: Any, batch: int) -> torch.Tensor:
    """Check a per-row flag vector ``[B]`` (bool, or 0/1 in an int/float dtype); return bool."""
    if not isinstance(flags, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(flags).__name__}")
    if _shape(flags) != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {_shape(flags)}")
    if flags.dtype == torch.bool:
        return flags
    if flags.is_complex() or not bool(((flags == 0) | (flags == 1)).all()):
        raise ValueError(f"{name}: expected bool (or 0/1) values, got dtype {flags.dtype}")
    return flags != 0


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Check that a config string is one of ``choices`` (a registry's keys)."""
    options = sorted(choices)
    if value not in options:
        raise ValueError(f"{name}: unknown value {value!r}; expected one of {options}")


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number in the given (closed unless ``*_open``) range."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: expected a number, got a tensor of shape {_shape(value)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}: must be in {left}{lo}, {hi}{right}, got {value}")
    return float(value)
