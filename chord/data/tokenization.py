"""Turning checked expert rows into token ids, and applying the length limits.

- Prompt: the prompt messages rendered with the tokenizer's chat template
  (``add_generation_prompt=True``, ``tools=`` when the row has tools, plus any
  `chat_template_kwargs`), then encoded without special tokens. These tokens get no loss.
- Response: the expert answer encoded without special tokens, plus ``eos_token_id`` unless it
  already ends with it. These are the tokens the SFT loss counts.
- ``ref_logp``, when given, must have exactly one value per response token, EOS included.

Limits (`apply_limits`), for a row longer than `max_prompt_length` / `max_response_length`:

- ``overflow="truncate"``: the prompt keeps its LAST `max_prompt_length` tokens (left
  truncation: the generation prompt and the end of the question, which the answer follows,
  survive), the response its FIRST `max_response_length` tokens (and `ref_logp` with it). A
  truncated response loses its EOS, so the model is never taught to stop where the cut fell.
  A prompt that alone exceeds its limit is left-truncated the same way (the row is kept;
  counted as ``prompt_truncated``).
- ``overflow="drop"``: the row is skipped (counted as ``dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from chord.data.errors import ExpertDataError
from chord.data.schema import ExpertRecord

OVERFLOW_MODES = ("truncate", "drop")
_ENCODE_SLICE = 16  # texts per tokenizer call


@dataclass
class TokenizedRow:
    """One expert row as token ids (`response_ids` include the EOS)."""

    prompt_ids: list[int]
    response_ids: list[int]
    ref_logp: list[float] | None
    quality: float | None
    data_source: str
    file: str
    row: int


@dataclass(frozen=True)
class LimitOutcome:
    """What the limits did to one row; `row` is None when it was dropped."""

    row: TokenizedRow | None
    prompt_truncated: bool = False
    response_truncated: bool = False

    @property
    def truncated(self) -> bool:
        return self.row is not None and (self.prompt_truncated or self.response_truncated)

    @property
    def dropped(self) -> bool:
        return self.row is None


class ExpertTokenizer:
    """Renders and encodes `ExpertRecord`s with a Hugging Face tokenizer (batched)."""

    def __init__(self, tokenizer: Any, chat_template_kwargs: dict[str, Any] | None = None) -> None:
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("the tokenizer has no eos_token_id; expert responses must end with EOS")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; expert prompts are rendered with it")
        self.tokenizer = tokenizer
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def render_prompt(self, record: ExpertRecord) -> str:
        """The prompt text the policy sees, ending with the opened assistant turn."""
        kwargs = dict(self.chat_template_kwargs)
        if record.tools is not None:
            kwargs["tools"] = record.tools
        try:
            return self.tokenizer.apply_chat_template(
                record.prompt_messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
        except Exception as exc:  # the template is user code (jinja): report where it failed
            column = "prompt" if len(record.prompt_messages) == 1 else "messages"
            raise ExpertDataError(
                f"the chat template failed on this row: {type(exc).__name__}: {exc}",
                file=record.file,
                row=record.row,
                column=column,
            ) from exc

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # Batched for speed, in slices to bound the tokenizer's transient memory (its per-token
        # Encoding objects are several times larger than the ids kept).
        ids: list[list[int]] = []
        for i in range(0, len(texts), _ENCODE_SLICE):
            encoded = self.tokenizer(
                texts[i : i + _ENCODE_SLICE],
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            ids.extend(list(x) for x in encoded)
        return ids

    def __call__(self, records: list[ExpertRecord]) -> list[TokenizedRow]:
        """Tokenise `records` (one batched call per side); checks `ref_logp` lengths."""
        if not records:
            return []
        prompts = self._encode([self.render_prompt(r) for r in records])
        responses = self._encode([r.response for r in records])
        rows = []
        for record, prompt_ids, response_ids in zip(records, prompts, responses, strict=True):
            if not response_ids or response_ids[-1] != self.eos_token_id:
                response_ids.append(self.eos_token_id)
            if record.ref_logp is not None and len(record.ref_logp) != len(response_ids):
                raise ExpertDataError(
                    f"ref_logp has {len(record.ref_logp)} values but the response has "
                    f"{len(response_ids)} tokens (EOS included)",
                    file=record.file,
                    row=record.row,
                    column="ref_logp",
                )
            rows.append(
                TokenizedRow(
                    prompt_ids=prompt_ids,
                    response_ids=response_ids,
                    ref_logp=record.ref_logp,
                    quality=record.quality,
                    data_source=record.data_source,
                    file=record.file,
                    row=record.row,
                )
            )
        return rows


def apply_limits(
    row: TokenizedRow, max_prompt_length: int, max_response_length: int, overflow: str = "truncate"
) -> LimitOutcome:
    """Fit `row` into the limits by the `overflow` rule (see the module docstring)."""
    over_prompt = len(row.prompt_ids) > max_prompt_length
    over_response = len(row.response_ids) > max_response_length
    if not (over_prompt or over_response):
        return LimitOutcome(row)
    if overflow == "drop":
        return LimitOutcome(None, over_prompt, over_response)
    if overflow != "truncate":
        raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
    cut = replace(
        row,
        prompt_ids=row.prompt_ids[len(row.prompt_ids) - max_prompt_length :]
        if over_prompt
        else row.prompt_ids,
        response_ids=row.response_ids[:max_response_length],
        ref_logp=None if row.ref_logp is None else row.ref_logp[:max_response_length],
    )
    return LimitOutcome(cut, over_prompt, over_response)
