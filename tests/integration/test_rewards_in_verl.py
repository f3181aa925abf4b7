"""`chord.rewards.compute_score` loaded and called the way verl does it: `get_custom_reward_fn`
with `pkg://chord.rewards`, then the naive reward-loop manager, which decodes the response and
calls the function in an executor thread (math-verify must work off the main thread)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

CASES = [
    # data_source, response text, ground truth, expected score
    ("openr1", "2 + 2 is \\boxed{4}", "4", 1.0),
    ("openr1", "2 + 2 is \\boxed{5}", "4", 0.0),
    ("aime24", "I am not sure", "4", -0.1),
    ("toolace", '[Get Weather(unit="c", city="Paris")]', '[Get Weather(city="Paris", unit="c")]', 1.0),
    ("toolace", "I cannot call tools", "[f(a=1)]", 0.0),
    ("chord/tiny_arith", "7", "7", 1.0),
]


def _row(tokenizer, data_source: str, response: str, ground_truth: str, response_len: int = 96):
    from verl import DataProto

    prompt_ids = tokenizer.encode("question", add_special_tokens=False)
    resp_ids = tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id]
    assert len(resp_ids) <= response_len
    pad = [tokenizer.pad_token_id] * (response_len - len(resp_ids))
    prompts = torch.tensor([prompt_ids])
    responses = torch.tensor([resp_ids + pad])
    mask = torch.tensor([[1] * len(prompt_ids) + [1] * len(resp_ids) + [0] * len(pad)])
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask},
        non_tensors={
            "data_source": np.array([data_source], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": ground_truth}], dtype=object),
            "extra_info": np.array([{"split": "test", "index": 0}], dtype=object),
        },
    )


@pytest.fixture(scope="module")
def reward_manager(tiny_tokenizer):
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://chord.rewards",
                    "name": "compute_score",
                    "reward_kwargs": {"timeout_s": 30.0},
                }
            }
        }
    )
    fn = get_custom_reward_fn(config)
    assert fn is not None
    return NaiveRewardManager(config, tiny_tokenizer, fn)


@pytest.mark.parametrize(("data_source", "response", "ground_truth", "expected"), CASES)
def test_naive_reward_manager_scores_with_chord_rewards(
    reward_manager, tiny_tokenizer, data_source, response, ground_truth, expected
):
    data = _row(tiny_tokenizer, data_source, response, ground_truth)
    out = reward_manager.loop.run_until_complete(reward_manager.run_single(data))
    assert out["reward_score"] == pytest.approx(expected)
    assert set(out["reward_extra_info"]) == {"score", "acc", "pred", "reason", "parse_error"}
