"""The hybrids' driver side without Ray: HPT's gate and flags, SRFT's flags, ReLIFT's buffer and
its SFT-only batch, and the stop naming a prompt without its paired demonstration."""

from __future__ import annotations

import pytest

pytest.importorskip("verl")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402

from recipe.train.actor_loss import IS_EXPERT, MU  # noqa: E402
from recipe.train.config import load_chord_config  # noqa: E402
from recipe.train.hybrid_loss import ACTIVE, CORRECT, SFT_ONLY  # noqa: E402
from recipe.train.hybrids import ReliftBuffer  # noqa: E402
from recipe.train.trainer import ChordRayTrainer  # noqa: E402
from tests.integration.test_trainer_expert_rows import _luffy_batch  # noqa: E402

# _luffy_batch: prompts u0 (rows 0, 1; scores 1, 0) and u1 (rows 2, 3; scores 1, 1)


def _trainer(tok, chord: dict) -> ChordRayTrainer:
    trainer = ChordRayTrainer.__new__(ChordRayTrainer)  # only the driver-side helpers are used
    trainer.tokenizer = tok
    trainer.chord = load_chord_config(chord)
    trainer.global_steps = 5
    trainer.config = OmegaConf.create(
        {
            "data": {"max_response_length": 6},
            "actor_rollout_ref": {"actor": {}},
            "algorithm": {"norm_adv_by_std_in_grpo": False},
        }
    )
    trainer._init_hybrids()
    return trainer


def _split(batch: DataProto) -> DataProto:
    return batch.select(batch_keys=[k for k in batch.batch.keys() if not k.startswith("token_level")])


def test_hpt_gates_prompts_with_at_most_gate_correct_rollouts(tiny_tokenizer):
    trainer = _trainer(tiny_tokenizer, {"variant": "hpt", "hpt": {"gate": 1}})
    batch = _luffy_batch(tiny_tokenizer)
    on_policy = _split(batch)
    expert, metrics = trainer._hybrid_rows(batch, on_policy)
    # u0 has 1 correct rollout (<= gate 1): its rollouts leave GRPO, its demonstration trains
    assert on_policy.batch[ACTIVE].tolist() == [False, False, True, True]
    assert expert.batch[ACTIVE].tolist() == [True, False]
    assert expert.batch[IS_EXPERT].tolist() == [True, True]
    assert metrics["hpt/gated_prompts"] == 1 and metrics["hpt/gated_fraction"] == 0.5
    assert metrics["chord/expert_tokens"] == 3  # "ab" + EOS of the gated prompt only


def test_hpt_stops_naming_a_gated_prompt_without_a_demonstration(tiny_tokenizer):
    trainer = _trainer(tiny_tokenizer, {"variant": "hpt", "hpt": {"gate": 1}})
    batch = _luffy_batch(tiny_tokenizer)
    for i in (0, 1, 2, 3):  # both prompts lose their demonstration; only u0 (index 0) is gated
        batch.non_tensor_batch["extra_info"][i] = {"index": i // 2}
    with pytest.raises(
        ValueError, match=r"chord.hpt.response_key: RL row 0 \(1 of 2 rollouts correct, gated"
    ):
        trainer._hybrid_rows(batch, _split(batch))
    # gate 0: no prompt is gated, so missing demonstrations are no error
    trainer = _trainer(tiny_tokenizer, {"variant": "hpt", "hpt": {"gate": 0}})
    expert, metrics = trainer._hybrid_rows(batch, _split(batch))
    assert metrics["hpt/gated_prompts"] == 0 and expert.batch[ACTIVE].tolist() == [False, False]


def test_srft_marks_correct_rollouts_and_pairs_every_prompt(tiny_tokenizer):
    trainer = _trainer(tiny_tokenizer, {"variant": "srft"})
    batch = _luffy_batch(tiny_tokenizer)
    on_policy = _split(batch)
    expert, metrics = trainer._hybrid_rows(batch, on_policy)
    assert on_policy.batch[CORRECT].tolist() == [True, False, True, True]
    assert expert.batch[CORRECT].tolist() == [False, False] and len(expert) == 2
    assert metrics["srft/correct_rollouts"] == 3
    # each demonstration (reward 1) joins its group; rewards (scores minus the KL-in-reward
    # penalty): u0 rollouts 0.5, 0 -> mean with the demo 0.5, A = 0.5; u1 1.2, 0.9 -> mean 31/30
    demo_adv = expert.batch["advantages"][:, 0].tolist()
    assert demo_adv == pytest.approx([0.5, 1.0 - 31 / 30], rel=1e-5)
    mask = expert.batch["response_mask"].bool()
    assert (expert.batch["advantages"][~mask] == 0).all()
    assert on_policy.batch["advantages"].eq(7.0).all()  # verl's, untouched (SRFT does not read them)
    assert metrics["srft/demo_advantage_mean"] == pytest.approx((0.5 + 1.0 - 31 / 30) / 2, rel=1e-5)


def test_relift_buffers_failed_prompts_and_runs_an_sft_only_update_when_full(tiny_tokenizer):
    trainer = _trainer(tiny_tokenizer, {"variant": "relift", "relift": {"buffer_size": 2}})
    assert isinstance(trainer.relift_buffer, ReliftBuffer)
    batch = _luffy_batch(tiny_tokenizer)
    batch.batch["token_level_scores"][0:2] = 0.0  # u0: both rollouts fail
    updates: list[DataProto] = []

    def fake_update(sft: DataProto) -> DataProto:
        updates.append(sft)
        return DataProto.from_single_dict(data={}, meta_info={"metrics": {"actor/sft_loss": [0.75]}})

    trainer._verl_update_actor = fake_update
    trainer._count_skipped = lambda metrics, optimizer_steps: {}
    merged = _split(batch)
    first = trainer._relift_after_update(batch, merged)
    assert first == {"relift/failed_prompts": 1.0, "relift/buffer_size": 1.0, "relift/sft_rounds": 0.0}
    assert not updates
    trainer.global_steps = 6
    second = trainer._relift_after_update(batch, merged)
    assert second["relift/sft_rounds"] == 1 and second["relift/buffer_size"] == 0
    assert second["relift/sft_loss"] == 0.75
    (sft,) = updates
    assert sft.batch[IS_EXPERT].all() and len(sft) == 2
    assert sft.meta_info[MU] == 1.0 and sft.meta_info[SFT_ONLY] is True
    assert sft.batch["advantages"].abs().sum() == 0
    # the demonstration "ab<|im_end|>" of prompt u0, from both steps
    assert sft.batch["response_mask"].sum(-1).tolist() == [3, 3]
