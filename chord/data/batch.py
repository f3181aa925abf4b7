"""`ExpertBatch`: expert rows as token lists, and their padded tensors in verl's layout."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ExpertBatch:
    """n expert rows, ready to be appended to an on-policy batch.

    - `prompt_ids[i]`: prompt tokens (no loss); `response_ids[i]`: response tokens incl. the EOS
      (unless truncation cut it), all of which count in the SFT loss.
    - `quality`: [n] float scores, or None when the data has no `quality` column.
    - `ref_logp[i]`: reference log-probs aligned with `response_ids[i]`, or None.
    - `data_source[i]`: the row's `data_source` ("expert" by default).
    - `row_ids[i]`: (file, row index within the file), for tests and debugging.
    - `metrics`: this batch's figures: `expert_rows`, `expert_tokens` (response tokens),
      `expert_prompt_tokens`, `expert_truncated` (served rows that were cut), `expert_dropped`
      (rows skipped to fill this batch under overflow="drop"), `expert_epoch` (passes over the
      data so far, fractional: 2.25 = a quarter into the third epoch).
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    quality: torch.Tensor | None
    ref_logp: list[list[float]] | None
    data_source: list[str]
    row_ids: list[tuple[str, int]]
    metrics: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def to_padded(
        self, prompt_length: int, response_length: int, pad_token_id: int
    ) -> dict[str, torch.Tensor]:
        """Pad to verl's layout; P = prompt_length, R = response_length.

        Returns int64 tensors `prompts` [n, P] (LEFT-padded), `responses` [n, R] (RIGHT-padded),
        `input_ids` = cat(prompts, responses) [n, P+R], `attention_mask` [n, P+R] (1 on real
        tokens), `position_ids` [n, P+R] = clip(cumsum(attention_mask) - 1, min=0) as verl
        computes them, `response_mask` [n, R] (1 on response tokens); plus float32 `quality` [n]
        and `ref_logp` [n, R] (0 on padding) when the batch has them.
        Raises ValueError if a row is longer than P (prompt) or R (response).
        """
        n = len(self)
        prompts = torch.full((n, prompt_length), pad_token_id, dtype=torch.long)
        responses = torch.full((n, response_length), pad_token_id, dtype=torch.long)
        prompt_mask = torch.zeros((n, prompt_length), dtype=torch.long)
        response_mask = torch.zeros((n, response_length), dtype=torch.long)
        ref_logp = (
            torch.zeros((n, response_length), dtype=torch.float32) if self.ref_logp is not None else None
        )
        for i, (p, r) in enumerate(zip(self.prompt_ids, self.response_ids, strict=True)):
            if len(p) > prompt_length:
                raise ValueError(
                    f"expert row {i} {self.row_ids[i]}: prompt has {len(p)} tokens > {prompt_length}"
                )
            if len(r) > response_length:
                raise ValueError(
                    f"expert row {i} {self.row_ids[i]}: response has {len(r)} tokens > {response_length}"
                )
            if p:
                prompts[i, prompt_length - len(p) :] = torch.tensor(p, dtype=torch.long)
                prompt_mask[i, prompt_length - len(p) :] = 1
            if r:
                responses[i, : len(r)] = torch.tensor(r, dtype=torch.long)
                response_mask[i, : len(r)] = 1
            if ref_logp is not None and self.ref_logp is not None and r:
                values = self.ref_logp[i]
                if len(values) != len(r):
                    raise ValueError(
                        f"expert row {i} {self.row_ids[i]}: {len(values)} ref_logp values "
                        f"for {len(r)} response tokens"
                    )
                ref_logp[i, : len(r)] = torch.tensor(values, dtype=torch.float32)
        attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
        out = {
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention_mask,
            "position_ids": torch.clamp(torch.cumsum(attention_mask, dim=1) - 1, min=0),
            "response_mask": response_mask,
        }
        if self.quality is not None:
            out["quality"] = self.quality.to(torch.float32)
        if ref_logp is not None:
            out["ref_logp"] = ref_logp
        return out
