"""Math reward (CHORD setting): +1 correct, 0 wrong but formatted, -0.1 no answer, -1 truncated.

The answer is the content of the LAST complete `\\boxed{...}` in the response; it is compared
with the ground truth by math-verify (`chord.rewards.math_equiv.answers_equal`) in a worker
process under a deadline (`chord.rewards.verify_pool`), so it works from any thread and never
hangs. A check that misses its deadline scores `wrong_score` (0) with reason "timeout".

Truncation, i.e. the response stopped at the length limit, is decided by the first of these
that is available:
1. the `truncated` keyword (bool), e.g. set by a reward manager that saw the token count;
2. `extra_info["truncated"]` (bool);
3. `finish_reason` keyword or `extra_info["finish_reason"]`: "length" means truncated, any
   other value (e.g. "stop") means finished;
4. when `eos_text` is given (e.g. "<|im_end|>"): truncated if the response does not end with
   it. Only meaningful when responses are decoded WITH special tokens (verl's naive reward
   manager decodes with `skip_special_tokens=True`, so the EOS text is never there);
5. otherwise the response is taken as finished.
A truncated response that still has a boxed answer is scored on that answer.

Result keys (always the same): score (float), acc (1.0 if correct else 0.0), pred (the boxed
answer, "" if none), reason ("correct", "wrong", "no_answer", "truncated", "timeout",
"verify_error").
"""

from __future__ import annotations

import logging
from typing import Any

from chord.rewards.answer import last_boxed_answer
from chord.rewards.math_equiv import answers_equal
from chord.rewards.verify_pool import VerifyFn, get_pool

logger = logging.getLogger(__name__)

RESULT_DEFAULTS: dict[str, float | str] = {"score": 0.0, "acc": 0.0, "pred": "", "reason": ""}

_TRUE_STRINGS = {"true", "1", "yes"}


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    return bool(value)


def is_truncated(
    solution_str: str,
    extra_info: dict | None = None,
    *,
    truncated: bool | None = None,
    finish_reason: str | None = None,
    eos_text: str | None = None,
) -> bool:
    """Whether the response was cut off at the length limit (rules 1-5 of the module docstring)."""
    if truncated is not None:
        return _as_bool(truncated)
    info = extra_info or {}
    if info.get("truncated") is not None:
        return _as_bool(info["truncated"])
    reason = finish_reason if finish_reason is not None else info.get("finish_reason")
    if reason is not None:
        return str(reason).strip().lower() == "length"
    if eos_text:
        return not solution_str.rstrip().endswith(eos_text)
    return False


def _ground_truth_text(ground_truth: Any) -> str:
    if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise ValueError(f"math reward needs a non-empty string ground truth, got {ground_truth!r}")
    return ground_truth.strip()


def compute_math_reward(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    truncated: bool | None = None,
    finish_reason: str | None = None,
    eos_text: str | None = None,
    correct_score: float = 1.0,
    wrong_score: float = 0.0,
    format_score: float = -0.1,
    truncated_score: float = -1.0,
    timeout_s: float = 10.0,
    verify_workers: int | None = None,
    verify_fn: VerifyFn | str = answers_equal,
    **kwargs: Any,
) -> dict[str, float | str]:
    """Score one math response; see the module docstring for the scheme and the returned keys.

    Unknown keyword arguments are ignored (verl passes extra ones, e.g. reward-router handles).
    `verify_fn(gold, pred) -> bool` is a module-level function or its "module:function" name: it
    runs in a worker process (`chord.rewards.verify_pool`). `verify_workers` caps those processes.
    """
    gold = _ground_truth_text(ground_truth)
    pred = last_boxed_answer(solution_str)
    if pred is None:
        cut = is_truncated(
            solution_str, extra_info, truncated=truncated, finish_reason=finish_reason, eos_text=eos_text
        )
        if cut:
            return {"score": float(truncated_score), "acc": 0.0, "pred": "", "reason": "truncated"}
        return {"score": float(format_score), "acc": 0.0, "pred": "", "reason": "no_answer"}

    outcome = get_pool(verify_fn, verify_workers).verify(gold, pred, timeout_s)
    if outcome.status == "timeout":
        return {"score": float(wrong_score), "acc": 0.0, "pred": pred, "reason": "timeout"}
    if outcome.status != "ok":
        logger.warning("math verification failed (%s): %s", data_source, outcome.error)
        return {"score": float(wrong_score), "acc": 0.0, "pred": pred, "reason": "verify_error"}
    if outcome.equal:
        return {"score": float(correct_score), "acc": 1.0, "pred": pred, "reason": "correct"}
    return {"score": float(wrong_score), "acc": 0.0, "pred": pred, "reason": "wrong"}
