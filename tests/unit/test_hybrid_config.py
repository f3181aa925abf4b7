"""The hybrids' config sections: defaults, range checks, verl settings refused by key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from recipe.train.config import check_verl_settings, expert_rows_per_step, load_chord_config
from recipe.train.hybrid_config import apply_hybrid_settings


def test_defaults_are_the_papers():
    chord = load_chord_config({"variant": "srft"})
    assert (chord.srft.demo_coef, chord.srft.positive_coef, chord.srft.negative_coef) == (0.5, 0.1, 1.0)
    assert chord.srft.positive_entropy_sign == 1
    assert (chord.srft.demo_pg_coef, chord.srft.demo_gamma, chord.srft.demo_reward) == (1.0, 0.1, 1.0)
    assert (chord.hpt.gate, chord.hpt.sft_coef, chord.hpt.correct_threshold) == (0, 1.0, 1.0)
    assert chord.relift.buffer_size == 128


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"variant": "hpt", "hpt": {"gate": -1}}, "chord.hpt.gate"),
        ({"variant": "srft", "srft": {"positive_entropy_sign": 2}}, "chord.srft.positive_entropy_sign"),
        ({"variant": "srft", "srft": {"demo_coef": -0.5}}, "chord.srft.demo_coef"),
        ({"variant": "srft", "srft": {"demo_pg_coef": -1.0}}, "chord.srft.demo_pg_coef"),
        ({"variant": "srft", "srft": {"demo_gamma": 0.0}}, "chord.srft.demo_gamma"),
        ({"variant": "relift", "relift": {"buffer_size": 0}}, "chord.relift.buffer_size"),
    ],
)
def test_bad_values_are_refused_by_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        load_chord_config(cfg)


def _verl(**overrides) -> OmegaConf:
    cfg = {
        "data": {"train_batch_size": 16},
        "trainer": {"n_gpus_per_node": 2, "nnodes": 1},
        "actor_rollout_ref": {"rollout": {"n": 4}, "actor": {"use_dynamic_bsz": True}},
        "algorithm": {"rollout_correction": {"rollout_is": None, "rollout_rs": None}},
    }
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))


@pytest.mark.parametrize("variant", ["hpt", "srft", "relift"])
@pytest.mark.parametrize(
    "key", ["algorithm.rollout_correction.rollout_is", "algorithm.rollout_correction.rollout_rs"]
)
def test_rollout_correction_is_refused_for_the_hybrids(variant, key):
    chord = load_chord_config({"variant": variant})
    check_verl_settings(_verl(), chord)
    with pytest.raises(ValueError, match=key):
        check_verl_settings(_verl(**{key: "token"}), chord)
    # other methods keep honouring it
    check_verl_settings(_verl(**{key: "token"}), load_chord_config({"variant": "grpo"}))


def test_relift_buffer_must_divide_over_ranks_and_srft_switches_entropy_on():
    with pytest.raises(ValueError, match="chord.relift.buffer_size"):
        check_verl_settings(_verl(), load_chord_config({"variant": "relift", "relift": {"buffer_size": 5}}))
    cfg = _verl()
    apply_hybrid_settings(cfg, load_chord_config({"variant": "srft"}))
    assert cfg.actor_rollout_ref.actor.calculate_entropy is True


def test_hpt_and_srft_add_one_demonstration_row_per_prompt_relift_none():
    cfg = _verl()
    assert expert_rows_per_step(cfg, load_chord_config({"variant": "hpt"})) == 16
    assert expert_rows_per_step(cfg, load_chord_config({"variant": "srft"})) == 16
    assert expert_rows_per_step(cfg, load_chord_config({"variant": "relift"})) == 0
