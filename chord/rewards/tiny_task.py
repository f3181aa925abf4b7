"""Reward of the tiny bundled arithmetic task (`chord.prepare.tiny_task`): exact answer match.

1.0 when the response, stripped of surrounding whitespace and of trailing EOS markers
(`chord.rewards.answer.COMMON_EOS_TEXTS` by default), equals the ground truth (also stripped)
exactly, else 0.0. No partial credit: the answers are one or two digits.

Result keys (always the same): score (float), acc (same as score), pred (the stripped
response), reason ("match", "mismatch").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chord.rewards.answer import COMMON_EOS_TEXTS, strip_eos

RESULT_DEFAULTS: dict[str, float | str] = {"score": 0.0, "acc": 0.0, "pred": "", "reason": ""}


def compute_tiny_reward(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    eos_texts: str | Iterable[str] | None = COMMON_EOS_TEXTS,
    **kwargs: Any,
) -> dict[str, float | str]:
    """Score one tiny-task response; see the module docstring. Unknown keyword arguments are ignored."""
    pred = strip_eos(solution_str, eos_texts)
    matched = pred == str(ground_truth).strip()
    score = 1.0 if matched else 0.0
    return {"score": score, "acc": score, "pred": pred, "reason": "match" if matched else "mismatch"}
