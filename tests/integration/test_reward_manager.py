"""The `chord` reward manager: verl's naive manager plus `extra_info["truncated"]`, so the
math reward can give an answer cut off at the length limit the paper's -1."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from verl import DataProto  # noqa: E402

from chord.rewards import compute_score  # noqa: E402
from recipe.plugins.reward_manager import ChordRewardManager, response_was_truncated  # noqa: E402


def _row(tokenizer, text: str, width: int, add_eos: bool, data_source: str, ground_truth: str) -> DataProto:
    ids = tokenizer.encode(text, add_special_tokens=False)[:width]
    if add_eos:
        ids = ids[: width - 1] + [tokenizer.eos_token_id]
    responses = torch.full((1, width), tokenizer.pad_token_id, dtype=torch.long)
    responses[0, : len(ids)] = torch.tensor(ids)
    prompt_mask = torch.ones(1, 3, dtype=torch.long)
    response_mask = (torch.arange(width) < len(ids)).long().unsqueeze(0)
    return DataProto.from_dict(
        tensors={"responses": responses, "attention_mask": torch.cat([prompt_mask, response_mask], dim=1)},
        non_tensors={
            "data_source": np.array([data_source], dtype=object),
            "reward_model": np.array([{"ground_truth": ground_truth}], dtype=object),
            "extra_info": np.array([{"index": 0}], dtype=object),
        },
    )


async def _score(tokenizer, data: DataProto) -> dict:
    manager = ChordRewardManager(config=None, tokenizer=tokenizer, compute_score=compute_score)
    return await manager.run_single(data)


def test_a_math_answer_cut_off_at_the_length_limit_scores_minus_one(tiny_tokenizer):
    cut = _row(tiny_tokenizer, "Let me think step by step about", 12, False, "openr1", "4")
    result = asyncio.run(_score(tiny_tokenizer, cut))
    assert result["reward_score"] == -1.0
    assert cut.non_tensor_batch["extra_info"][0]["truncated"] is True


def test_a_finished_unformatted_answer_keeps_minus_point_one(tiny_tokenizer):
    done = _row(tiny_tokenizer, "four", 12, True, "openr1", "4")
    result = asyncio.run(_score(tiny_tokenizer, done))
    assert result["reward_score"] == pytest.approx(-0.1)
    assert done.non_tensor_batch["extra_info"][0]["truncated"] is False


def test_tiny_task_reward_is_unaffected(tiny_tokenizer):
    result = asyncio.run(_score(tiny_tokenizer, _row(tiny_tokenizer, "7", 8, True, "chord/tiny_arith", "7")))
    assert result["reward_score"] == 1.0


def test_response_was_truncated_rules():
    eos = {9}
    full = torch.tensor([1, 2, 3])
    assert response_was_truncated(full, torch.tensor([1, 1, 1, 1]), eos) is True  # full, no EOS
    assert response_was_truncated(torch.tensor([1, 2, 9]), torch.tensor([1, 1, 1, 1]), eos) is False
    assert response_was_truncated(torch.tensor([1, 2, 0]), torch.tensor([1, 1, 1, 0]), eos) is False
