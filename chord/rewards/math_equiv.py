"""Mathematical equivalence of two answers with math-verify, with its signal-based timeouts OFF.

`answers_equal` may run for ever on pathological input (sympy), so callers run it in a
`chord.rewards.verify_pool.VerifierPool` worker, which enforces the deadline from any thread.
It is the default `verify_fn` of `chord.rewards.math`.
"""

from __future__ import annotations

import logging


def answers_equal(gold: str, pred: str) -> bool:
    """True when `pred` (the content of a `\\boxed{}`) equals the ground truth `gold` mathematically.

    Both are wrapped in `\\boxed{...}` and parsed with math-verify's LaTeX and plain-expression
    extractors (`parsing_timeout=None`, `timeout_seconds=None`: no `signal.alarm`). If the
    ground truth cannot be parsed, falls back to exact string equality after stripping.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # math-verify warns on every process start that its timeouts are off; that is deliberate here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold_parsed = parse("\\boxed{" + gold + "}", extraction_config=configs, parsing_timeout=None)
    if not gold_parsed:
        return gold.strip() == pred.strip()
    pred_parsed = parse("\\boxed{" + pred + "}", extraction_config=configs, parsing_timeout=None)
    if not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
