"""The driver's expert rows, without Ray: prompts rendered like verl's RL prompts, LUFFY rows.

- `build_expert_buffer` (what `ChordRayTrainer` builds) renders an expert prompt with
  `data.apply_chat_template_kwargs`, token for token as verl's rollout path (the agent loop's
  Continuous Token builder) renders an RL prompt with the same messages.
- `_luffy_rows` scores the rollouts by `token_level_rewards` (a KL-in-reward penalty counts),
  writes the LUFFY advantages back where verl's `critic/advantages/*` read them, and appends EOS
  only to a response that does not already end with it; a prompt without one stops the run
  naming its row.
"""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder  # noqa: E402

from chord.advantages import grpo_outcome_advantages  # noqa: E402
from recipe.train.config import load_chord_config  # noqa: E402
from recipe.train.trainer import ChordRayTrainer, build_expert_buffer  # noqa: E402

# ChatML with Qwen3's `enable_thinking` switch: off adds an empty think block to the generation prompt.
THINKING_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3="}]


def test_expert_prompt_tokenises_like_verls_rl_prompt(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = THINKING_TEMPLATE
    path = tmp_path / "expert.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"messages": [*MESSAGES, {"role": "assistant", "content": "5"}]}]), path
    )
    kwargs = {"enable_thinking": False}
    config = OmegaConf.create(
        {"data": {"max_prompt_length": 128, "max_response_length": 8, "apply_chat_template_kwargs": kwargs}}
    )
    chord = load_chord_config({"variant": "chord_phi", "expert": {"files": [str(path)], "rows_per_step": 1}})
    expert_ids = build_expert_buffer(config, chord, tok).next_batch(1).prompt_ids[0]

    rl_ids = create_continuous_token_builder(
        tok, hf_model_type="qwen2", chat_template_kwargs=kwargs
    ).build_initial_tokens(MESSAGES)
    assert list(expert_ids) == list(rl_ids)
    assert "</think>" in tok.decode(expert_ids)
    # the kwargs matter: without them verl renders another prompt
    plain = create_continuous_token_builder(tok, hf_model_type="qwen2").build_initial_tokens(MESSAGES)
    assert list(plain) != list(rl_ids)


def _luffy_batch(tok, prompts=("1+1=", "2+2="), n=2, width=6):
    rows = len(prompts) * n
    p_width = 8
    prompt_ids = torch.full((rows, p_width), tok.pad_token_id)
    attention = torch.zeros(rows, p_width + width, dtype=torch.long)
    for i in range(rows):
        ids = tok.encode(prompts[i // n], add_special_tokens=False)
        prompt_ids[i, p_width - len(ids) :] = torch.tensor(ids)
        attention[i, p_width - len(ids) : p_width + 2] = 1
    response_mask = torch.zeros(rows, width, dtype=torch.long)
    response_mask[:, :2] = 1
    scores = torch.zeros(rows, width)
    scores[:, 1] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    rewards = scores.clone()
    rewards[:, 0] = torch.tensor([-0.5, 0.0, 0.2, -0.1])  # a KL-in-reward penalty
    tensors = {
        "prompts": prompt_ids,
        "responses": torch.full((rows, width), tok.pad_token_id),
        "input_ids": torch.cat([prompt_ids, torch.full((rows, width), tok.pad_token_id)], dim=1),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
        "response_mask": response_mask,
        "old_log_probs": torch.zeros(rows, width),
        "advantages": torch.full((rows, width), 7.0),  # verl's GRPO advantages, to be replaced
        "token_level_scores": scores,
        "token_level_rewards": rewards,
    }
    extra = [
        {"expert_response": "ab<|im_end|>" if i // n == 0 else "cd", "index": i // n} for i in range(rows)
    ]
    non_tensors = {
        "uid": np.array([f"u{i // n}" for i in range(rows)], dtype=object),
        "extra_info": np.array(extra),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def test_luffy_rows_use_rewards_log_their_advantages_and_end_with_one_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    trainer = ChordRayTrainer.__new__(ChordRayTrainer)  # only the driver-side helpers are used
    trainer.tokenizer = tok
    trainer.chord = load_chord_config({"variant": "luffy"})
    trainer.config = OmegaConf.create({"algorithm": {"norm_adv_by_std_in_grpo": True}})
    batch = _luffy_batch(tok)
    on_policy = batch.select(batch_keys=[k for k in batch.batch.keys() if not k.startswith("token_level")])

    expert, metrics = trainer._luffy_rows(batch, on_policy)

    eos = tok.eos_token_id
    lengths = expert.batch["response_mask"].sum(-1).tolist()
    assert lengths == [3, 3]  # "ab" + the EOS already in the text; "cd" + an appended EOS
    for row in range(2):
        ids = expert.batch["responses"][row][:3].tolist()
        assert ids[-1] == eos and ids.count(eos) == 1
    uids = list(batch.non_tensor_batch["uid"])
    is_expert = torch.tensor([False] * 4 + [True] * 2)
    rewards = torch.cat([batch.batch["token_level_rewards"].sum(-1), torch.ones(2)])
    scores = torch.cat([batch.batch["token_level_scores"].sum(-1), torch.ones(2)])
    want = grpo_outcome_advantages(rewards, uids + ["u0", "u1"], is_expert, expert_in_groups=True)
    from_scores = grpo_outcome_advantages(scores, uids + ["u0", "u1"], is_expert, expert_in_groups=True)
    got = on_policy.batch["advantages"][:, 0]
    torch.testing.assert_close(got, want[:4])
    assert not torch.allclose(got, from_scores[:4])
    torch.testing.assert_close(expert.batch["advantages"][:, 0], want[4:])
    # verl's critic/advantages/* read batch.batch["advantages"]: the LUFFY ones, on real tokens
    torch.testing.assert_close(batch.batch["advantages"], on_policy.batch["advantages"])
    assert metrics["chord/expert_rows"] == 2


@pytest.mark.parametrize("missing", [None, "", 7])
def test_luffy_rows_without_an_expert_response_stop_naming_the_row(tiny_tokenizer, missing):
    trainer = ChordRayTrainer.__new__(ChordRayTrainer)
    trainer.tokenizer = tiny_tokenizer
    trainer.chord = load_chord_config({"variant": "luffy"})
    trainer.global_steps = 3
    batch = _luffy_batch(tiny_tokenizer)
    for row in (2, 3):  # prompt u1 (dataset index 1)
        info = dict(batch.non_tensor_batch["extra_info"][row])
        if missing is None:
            del info["expert_response"]
        else:
            info["expert_response"] = missing
        batch.non_tensor_batch["extra_info"][row] = info
    on_policy = batch.select(batch_keys=[k for k in batch.batch.keys() if not k.startswith("token_level")])
    with pytest.raises(ValueError, match=r"chord\.luffy\.response_key: RL row 1 \(.*step 3\) has no string"):
        trainer._luffy_rows(batch, on_policy)


def test_rollout_is_weights_reach_the_actor_batch_with_weight_one_on_expert_rows(tiny_tokenizer):
    """verl's rollout correction puts `rollout_is_weights` in the batch; the merged actor batch
    keeps them on rollout rows (the loss multiplies the GRPO surrogate) and gives expert rows 1."""
    trainer = ChordRayTrainer.__new__(ChordRayTrainer)
    trainer.tokenizer = tiny_tokenizer
    trainer.chord = load_chord_config({"variant": "luffy"})
    trainer.expert_rows = 2
    trainer._merge_timing = {}  # set by __init__ (and verl), which this driver-side test skips
    trainer._expert_row_names = []
    trainer.global_steps = 1
    trainer.config = OmegaConf.create(
        {
            "algorithm": {"norm_adv_by_std_in_grpo": True},
            "actor_rollout_ref": {
                "rollout": {"n": 2},
                "actor": {
                    "ppo_mini_batch_size": 2,
                    "use_dynamic_bsz": False,
                    "ppo_micro_batch_size_per_gpu": 3,
                },
            },
        }
    )
    trainer._get_dp_size = lambda *args: 1
    trainer.actor_rollout_wg = None
    batch = _luffy_batch(tiny_tokenizer)
    weights = torch.rand(4, batch.batch["responses"].shape[1]) + 0.5
    batch.batch["rollout_is_weights"] = weights

    merged, _ = trainer._merge_expert_rows(batch, mu=0.0)

    is_expert = merged.batch["is_expert"]
    assert int(is_expert.sum()) == 2 and len(merged) == 6
    torch.testing.assert_close(merged.batch["rollout_is_weights"][~is_expert], weights)
    assert bool((merged.batch["rollout_is_weights"][is_expert] == 1).all())
