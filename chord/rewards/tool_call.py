"""Tool-call reward (CHORD tool-use setting): 1 when the predicted calls match the ground truth, else 0.

Both sides are parsed by `chord.rewards.call_syntax` (ToolACE brackets or JSON) and compared as
multisets of (name, normalised arguments): call order and argument order do not matter, values
must be equal (see `call_syntax.call_key` for the normal form).

Result keys (always the same): score (float), acc (1.0 on a match else 0.0), pred (the parsed
prediction in bracket form, "" if unparsable), reason ("match", "mismatch", "parse_error"),
parse_error (why the prediction could not be parsed, "" otherwise).
A ground truth that cannot be parsed is a data error: ValueError naming it.
"""

from __future__ import annotations

from typing import Any

from chord.rewards.call_syntax import ToolCallParseError, calls_match, format_calls, parse_tool_calls

RESULT_DEFAULTS: dict[str, float | str] = {
    "score": 0.0,
    "acc": 0.0,
    "pred": "",
    "reason": "",
    "parse_error": "",
}


def compute_tool_call_reward(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    match_score: float = 1.0,
    mismatch_score: float = 0.0,
    **kwargs: Any,
) -> dict[str, float | str]:
    """Score one tool-call response; see the module docstring. Unknown keyword arguments are ignored."""
    try:
        expected = parse_tool_calls(ground_truth)
    except ToolCallParseError as exc:
        where = f"{data_source}: ground truth {str(ground_truth)[:200]!r}"
        raise ValueError(f"{where} is not a tool call: {exc}") from None
    try:
        predicted = parse_tool_calls(solution_str)
    except ToolCallParseError as exc:
        return {
            "score": float(mismatch_score),
            "acc": 0.0,
            "pred": "",
            "reason": "parse_error",
            "parse_error": str(exc),
        }
    matched = calls_match(predicted, expected)
    return {
        "score": float(match_score if matched else mismatch_score),
        "acc": 1.0 if matched else 0.0,
        "pred": format_calls(predicted),
        "reason": "match" if matched else "mismatch",
        "parse_error": "",
    }
