"""The `chord:` section: defaults, validation naming the key, and the expert-row arithmetic."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from recipe.train.config import (
    check_batch_arithmetic,
    check_verl_settings,
    expert_rows_per_step,
    load_chord_config,
)

EXPERT = {"files": ["expert.parquet"], "rows_per_step": 32}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"expert": {"rows_per_stp": 3}}, r"chord\.expert\.rows_per_stp"),
        ({"variant": "chrd"}, r"chord\.variant: unknown variant 'chrd'"),
        ({"mu": {"schedule": "cosine", "peak": 1.5}, "expert": EXPERT}, r"chord\.mu: peak"),
        ({"mu": {"schedule": "exp"}}, r"chord\.mu\.schedule: unknown schedule 'exp'"),
        ({"variant": "chord_phi"}, r"chord\.expert\.files: variant 'chord_phi' needs expert parquet files"),
        ({"expert": {"files": ["e.parquet"], "rows_per_step": 4, "ratio": 0.5}}, "set exactly one of them"),
        (
            {"expert": {"files": ["e.parquet"], "rows_per_step": 4, "overflow": "clip"}},
            r"chord\.expert\.overflow",
        ),
        ({"variant": "grpo", "sft": {"cutoff_prob": 0.0}}, r"chord\.sft\.cutoff_prob"),
        ({"variant": "luffy", "luffy": {"gamma": 0}}, r"chord\.luffy\.gamma"),
    ],
)
def test_bad_chord_section_names_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        load_chord_config(section)


def test_grpo_needs_no_expert_data_and_defaults_fill_in():
    chord = load_chord_config({"variant": "grpo"})
    assert chord.spec.sft_weighting is None and chord.expert_rows(64) == 0
    assert chord.mu.schedule == "constant" and chord.iw.w_max == 16.0


def _ratio(ratio: float):
    return load_chord_config({"variant": "mix", "expert": {"files": ["e.parquet"], "ratio": ratio}})


def test_expert_ratio_is_the_expert_share_of_the_whole_step():
    # CHORD's reference: 0.2 of 320 rows = 64 expert rows next to 256 rollout rows
    assert _ratio(0.2).expert_rows(256) == 64
    assert _ratio(0.5).expert_rows(64) == 64
    assert _ratio(0.3).expert_rows(64) == 27  # round(0.3 * 64 / 0.7) = round(27.43)
    with pytest.raises(ValueError, match=r"chord\.expert\.ratio: .* must be in \(0, 1\)"):
        _ratio(1.0)
    with pytest.raises(ValueError, match=r"chord\.expert\.ratio: 0\.001 .* is no expert row"):
        _ratio(0.001).expert_rows(64)


def _verl_config(prompts=16, n=4, mini=4, gpus=2, micro=None, dynamic=False):
    return OmegaConf.create(
        {
            "data": {"train_batch_size": prompts},
            "trainer": {"n_gpus_per_node": gpus, "nnodes": 1},
            "actor_rollout_ref": {
                "rollout": {"n": n},
                "actor": {
                    "ppo_mini_batch_size": mini,
                    "ppo_micro_batch_size_per_gpu": micro,
                    "use_dynamic_bsz": dynamic,
                },
            },
        }
    )


def test_expert_rows_must_split_over_ranks_and_mini_batches():
    chord = load_chord_config(
        {"variant": "chord_phi", "expert": {"files": ["e.parquet"], "rows_per_step": 12}}
    )
    # 2 ranks x 4 mini-batches = 8 blocks: 12 expert rows do not divide
    with pytest.raises(ValueError, match=r"chord\.expert\.rows_per_step: 12 expert rows .* 2 data-parallel"):
        check_batch_arithmetic(_verl_config(), chord)
    check_batch_arithmetic(_verl_config(mini=16), chord)  # 2 ranks x 1 mini-batch: 6 rows each


def test_indivisible_expert_rows_name_the_nearby_values_that_divide():
    rows = load_chord_config(
        {"variant": "chord_phi", "expert": {"files": ["e.parquet"], "rows_per_step": 12}}
    )
    with pytest.raises(
        ValueError, match=r"chord\.expert\.rows_per_step=8 or chord\.expert\.rows_per_step=16 would"
    ):
        check_batch_arithmetic(_verl_config(), rows)  # 8 blocks
    ratio = _ratio(0.2)  # 64 rollout rows -> 16 expert rows; 3 ranks x 4 mini-batches = 12 blocks
    message = (
        r"chord\.expert\.ratio: 16 expert rows .* "
        r"chord\.expert\.ratio=0\.157895 \(12 rows\) or chord\.expert\.ratio=0\.272727 \(24 rows\) would"
    )
    with pytest.raises(ValueError, match=message):
        check_batch_arithmetic(_verl_config(gpus=3), ratio)
    check_batch_arithmetic(_verl_config(gpus=3), _ratio(0.157895))  # the suggested value works
    assert _ratio(0.157895).expert_rows(64) == 12


def _settings(**overrides):
    cfg = {
        "actor_rollout_ref": {
            "actor": {"policy_loss": {"loss_mode": "vanilla"}, "loss_agg_mode": "token-mean"}
        },
        "algorithm": {"adv_estimator": "grpo", "rollout_correction": {"bypass_mode": False}},
        "distillation": {"enabled": False},
    }
    config = OmegaConf.create(cfg)
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    return config


@pytest.mark.parametrize(
    ("key", "value", "variant"),
    [
        ("actor_rollout_ref.actor.policy_loss.loss_mode", "gspo", "chord_phi"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode", "clip_cov", "grpo"),
        ("actor_rollout_ref.actor.loss_agg_mode", "token-sum", "chord_phi"),
        ("algorithm.rollout_correction.bypass_mode", True, "grpo"),
        ("distillation.enabled", True, "chord_phi"),
        ("algorithm.adv_estimator", "gae", "luffy"),
    ],
)
def test_verl_settings_the_loss_would_ignore_are_refused_by_key(key, value, variant):
    chord = load_chord_config(
        {"variant": variant, "expert": EXPERT} if variant != "grpo" else {"variant": variant}
    )
    check_verl_settings(_settings(), chord)  # verl's defaults pass
    with pytest.raises(ValueError, match=rf"^{key.replace('.', r'[.]')}: {value!r} is not supported"):
        check_verl_settings(_settings(**{key: value}), chord)


def test_non_grpo_advantages_are_fine_for_chord():
    chord = load_chord_config({"variant": "chord_phi", "expert": EXPERT})
    check_verl_settings(_settings(**{"algorithm.adv_estimator": "rloo"}), chord)


def test_fixed_micro_batches_must_divide_a_ranks_share():
    chord = load_chord_config({"variant": "chord_phi", "expert": EXPERT})
    # (64 + 32) / 8 blocks = 12 rows per rank and mini-batch
    check_batch_arithmetic(_verl_config(micro=12), chord)
    with pytest.raises(ValueError, match="holds 12 rows .* not a multiple of 8"):
        check_batch_arithmetic(_verl_config(micro=8), chord)
    check_batch_arithmetic(_verl_config(micro=8, dynamic=True), chord)  # token-budget micro-batches


def test_luffy_adds_one_expert_row_per_prompt():
    chord = load_chord_config({"variant": "luffy"})
    assert expert_rows_per_step(_verl_config(prompts=16), chord) == 16


def test_expert_prefetch_is_on_by_default_and_can_be_switched_off():
    assert load_chord_config({"variant": "mix", "expert": EXPERT}).expert.prefetch is True
    off = load_chord_config({"variant": "mix", "expert": {**EXPERT, "prefetch": False}})
    assert off.expert.prefetch is False
