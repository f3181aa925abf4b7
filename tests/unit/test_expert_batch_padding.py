"""ExpertBatch.to_padded: verl's layout on a hand-made example."""

from __future__ import annotations

import pytest
import torch

from chord.data import ExpertBatch

PAD = 0


def _batch(**kw) -> ExpertBatch:
    args = dict(
        prompt_ids=[[5, 6], [1, 2, 3]],
        response_ids=[[7, 8, 9], [4]],
        quality=torch.tensor([0.5, 2.0]),
        ref_logp=[[-1.0, -2.0, -3.0], [-4.0]],
        data_source=["expert", "expert"],
        row_ids=[("f.parquet", 0), ("f.parquet", 1)],
    )
    args.update(kw)
    return ExpertBatch(**args)


def test_to_padded_left_pads_prompts_right_pads_responses():
    out = _batch().to_padded(prompt_length=4, response_length=3, pad_token_id=PAD)
    assert out["prompts"].tolist() == [[0, 0, 5, 6], [0, 1, 2, 3]]
    assert out["responses"].tolist() == [[7, 8, 9], [4, 0, 0]]
    assert out["input_ids"].tolist() == [[0, 0, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 0, 0]]
    assert out["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0, 0]]
    assert out["position_ids"].tolist() == [[0, 0, 0, 1, 2, 3, 4], [0, 0, 1, 2, 3, 3, 3]]
    assert out["response_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["quality"].tolist() == [0.5, 2.0]
    assert out["ref_logp"].tolist() == [[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]
    assert out["input_ids"].dtype == torch.long and out["ref_logp"].dtype == torch.float32


def test_to_padded_without_optional_fields_and_with_custom_pad():
    out = _batch(quality=None, ref_logp=None).to_padded(prompt_length=3, response_length=4, pad_token_id=99)
    assert "quality" not in out and "ref_logp" not in out
    assert out["prompts"].tolist() == [[99, 5, 6], [1, 2, 3]]
    assert out["responses"].tolist() == [[7, 8, 9, 99], [4, 99, 99, 99]]
    assert sorted(out) == [
        "attention_mask",
        "input_ids",
        "position_ids",
        "prompts",
        "response_mask",
        "responses",
    ]


def test_to_padded_refuses_rows_that_do_not_fit():
    with pytest.raises(ValueError, match=r"expert row 1 \('f.parquet', 1\): prompt has 3 tokens > 2"):
        _batch().to_padded(prompt_length=2, response_length=3, pad_token_id=PAD)
    with pytest.raises(ValueError, match=r"expert row 0 .*response has 3 tokens > 2"):
        _batch().to_padded(prompt_length=4, response_length=2, pad_token_id=PAD)
    with pytest.raises(ValueError, match=r"expert row 1 .*2 ref_logp values for 1 response tokens"):
        _batch(ref_logp=[[-1.0, -2.0, -3.0], [-4.0, -5.0]]).to_padded(4, 3, PAD)
