"""Reward of the shifted-expert benchmark task (`chord.prepare.shift_task`): the final number.

The base policy answers "12+7=" with "19"; the expert demonstrations use a worked form
("12+7=19"). Both are correct, so the reward looks only at the last integer of the response
(stripped of surrounding whitespace and trailing EOS markers): 1.0 when it equals the ground
truth, else 0.0. A response without any digit scores 0.0.

Result keys (always the same): score, acc (same as score), pred (the last integer or ""),
reason ("match", "mismatch", "no_number").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from chord.rewards.answer import COMMON_EOS_TEXTS, strip_eos

RESULT_DEFAULTS: dict[str, float | str] = {"score": 0.0, "acc": 0.0, "pred": "", "reason": ""}
_INTEGER = re.compile(r"\d+")


def last_integer(text: str) -> str | None:
    """The last run of digits in `text` without leading zeros ("007" -> "7"), or None."""
    runs = _INTEGER.findall(text)
    return str(int(runs[-1])) if runs else None


def compute_shift_reward(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    eos_texts: str | Iterable[str] | None = COMMON_EOS_TEXTS,
    **kwargs: Any,
) -> dict[str, float | str]:
    """Score one response of the shifted-expert task; see the module docstring."""
    pred = last_integer(strip_eos(solution_str, eos_texts))
    if pred is None:
        return {"score": 0.0, "acc": 0.0, "pred": "", "reason": "no_number"}
    matched = pred == str(int(str(ground_truth).strip()))
    score = 1.0 if matched else 0.0
    return {"score": score, "acc": score, "pred": pred, "reason": "match" if matched else "mismatch"}
