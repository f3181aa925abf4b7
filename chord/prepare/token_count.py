"""Counting tokens of a text: with a real tokenizer, or a documented estimate when none is given."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

# Without a tokenizer: one token per this many characters. BPE tokenizers of current models
# average about 3.5-4 characters per token on English prose with LaTeX, so 3.0 over-counts a
# little: the estimate errs towards dropping a borderline trace rather than keeping one that
# is over the limit.
CHARS_PER_TOKEN_ESTIMATE = 3.0


def estimate_tokens(text: str) -> int:
    """ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE): a conservative token count without a tokenizer."""
    return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)


def make_token_counter(tokenizer: str | None) -> tuple[Callable[[str], int], str]:
    """(count_fn, description). `tokenizer` is a local path or hub name for `AutoTokenizer`;
    None gives `estimate_tokens` (with a warning on stderr). Special tokens are not added."""
    if tokenizer is None:
        print(
            "WARNING: no --tokenizer given: token counts are estimated as "
            f"ceil(chars / {CHARS_PER_TOKEN_ESTIMATE:g})",
            file=sys.stderr,
            flush=True,
        )
        return estimate_tokens, f"estimate ceil(chars/{CHARS_PER_TOKEN_ESTIMATE:g})"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count, f"tokenizer {tokenizer}"
