"""The `chord.hpt`, `chord.srft` and `chord.relift` sections, and the verl settings the hybrids need.

Each coefficient is a key with the authors' default (ALGORITHMS.md, "Newer hybrids"); the
method presets (`conf/method/{hpt,srft,relift}.yaml`) select the variant. `check_hybrid_settings`
refuses, by key, a verl setting the hybrid losses (`recipe.train.hybrid_loss`) would ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf, open_dict

# The variants of this family, by the `loss` of their VariantSpec.
HYBRID_LOSSES = ("hpt", "srft", "relift")
# Variants whose demonstrations are the RL rows' paired responses, one per prompt and step.
PAIRED_LOSSES = ("luffy", "hpt", "srft")


@dataclass
class HptConfig:
    """HPT: a prompt with at most `gate` rollouts scoring >= `correct_threshold` trains on its
    demonstration (`extra_info[response_key]`) with weight `sft_coef`; the others get GRPO."""

    gate: int = 0  # authors: 0 for Qwen models, 2 for Llama
    correct_threshold: float = 1.0
    sft_coef: float = 1.0
    response_key: str = "expert_response"


@dataclass
class SrftConfig:
    """SRFT: demonstrations' NLL weighted `demo_coef * exp(-H)` plus `demo_pg_coef` times their
    policy-gradient term (`-A * p / (p + demo_gamma)`, `A` the demonstration's advantage in its
    prompt's group, where it scores `demo_reward`); correct rollouts' likelihood weighted
    `positive_coef * exp(positive_entropy_sign * H)`, incorrect ones' pushed down with
    `negative_coef` (`chord.losses.hybrids.srft_loss`)."""

    demo_coef: float = 0.5
    demo_pg_coef: float = 1.0
    demo_gamma: float = 0.1  # LUFFY's shaping constant: the demonstrator's probability is unknown
    demo_reward: float = 1.0
    positive_coef: float = 0.1
    negative_coef: float = 1.0
    # The sign of the exponent on correct rollouts: +1 unverified against the paper's text, which
    # could not be read here (chord.losses.hybrids); -1 gives the other reading.
    positive_entropy_sign: int = 1
    correct_threshold: float = 1.0
    response_key: str = "expert_response"


@dataclass
class ReliftConfig:
    """ReLIFT: prompts whose rollouts all score below `correct_threshold` wait with their
    demonstration; every `buffer_size` of them make one SFT-only update after the RL update."""

    buffer_size: int = 128
    correct_threshold: float = 1.0
    response_key: str = "expert_response"


def validate_hybrid_config(chord: Any) -> None:
    """Range checks of the three sections (called from `load_chord_config`)."""
    if chord.hpt.gate < 0:
        raise ValueError(f"chord.hpt.gate: must be >= 0, got {chord.hpt.gate}")
    for key, value in (
        ("chord.hpt.sft_coef", chord.hpt.sft_coef),
        ("chord.srft.demo_coef", chord.srft.demo_coef),
        ("chord.srft.demo_pg_coef", chord.srft.demo_pg_coef),
        ("chord.srft.positive_coef", chord.srft.positive_coef),
        ("chord.srft.negative_coef", chord.srft.negative_coef),
    ):
        if value < 0:
            raise ValueError(f"{key}: must be >= 0, got {value}")
    if chord.srft.demo_gamma <= 0:
        raise ValueError(f"chord.srft.demo_gamma: must be > 0, got {chord.srft.demo_gamma}")
    if chord.srft.positive_entropy_sign not in (1, -1):
        raise ValueError(
            f"chord.srft.positive_entropy_sign: expected 1 or -1, got {chord.srft.positive_entropy_sign}"
        )
    if chord.relift.buffer_size < 1:
        raise ValueError(f"chord.relift.buffer_size: must be >= 1, got {chord.relift.buffer_size}")


def response_key(chord: Any) -> str:
    """The RL rows' `extra_info` key holding the paired demonstration, for the run's variant."""
    return getattr(chord, chord.spec.loss).response_key


# verl settings the hybrid losses do not honour: only these values are accepted (None: absent).
# (Rollout correction's IS weights and rejection would apply to rollouts that HPT/SRFT/ReLIFT
# train with other terms; `loss_scale_factor` is honoured: `horizon` of every hybrid term.)
SUPPORTED_HYBRID_SETTINGS: dict[str, tuple[Any, ...]] = {
    "algorithm.rollout_correction.rollout_is": (None,),
    "algorithm.rollout_correction.rollout_rs": (None,),
}


def apply_hybrid_settings(config: Any, chord: Any) -> None:
    """The verl settings a hybrid implies: SRFT's weights need the policy's token entropy."""
    if chord.spec.loss == "srft":
        actor = config.actor_rollout_ref.actor
        if not actor.get("calculate_entropy", False):
            with open_dict(config):
                actor.calculate_entropy = True


def check_hybrid_settings(config: Any, chord: Any) -> None:
    """Refuse, naming the key, a verl setting a hybrid's loss would otherwise ignore."""
    if chord.spec.loss not in HYBRID_LOSSES:
        return
    for key, allowed in SUPPORTED_HYBRID_SETTINGS.items():
        value = OmegaConf.select(config, key, default=None)
        if value not in allowed:
            raise ValueError(
                f"{key}: {value!r} is not supported by the {chord.variant!r} loss "
                "(recipe.train.hybrid_loss); leave it unset"
            )
    if chord.spec.loss == "relift":
        dp = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
        dp //= int(config.actor_rollout_ref.actor.get("ulysses_sequence_parallel_size", 1) or 1)
        if chord.relift.buffer_size % dp:
            raise ValueError(
                f"chord.relift.buffer_size: {chord.relift.buffer_size} rows of the SFT-only update must "
                f"divide over {dp} data-parallel ranks"
            )
        actor = config.actor_rollout_ref.actor
        micro = actor.get("ppo_micro_batch_size_per_gpu")
        if not actor.use_dynamic_bsz and micro and (chord.relift.buffer_size // dp) % micro:
            raise ValueError(
                "chord.relift.buffer_size / actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu: each "
                f"rank's {chord.relift.buffer_size // dp} rows of the SFT-only update are not a multiple "
                f"of {micro}"
            )
