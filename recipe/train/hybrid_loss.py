"""The hybrids' actor loss on one micro-batch (`chord_actor_loss` hands over for HPT, SRFT, ReLIFT).

Per-row flags the driver (`recipe.train.hybrids`) puts in the batch: `is_expert`, `chord_active`
(HPT: a gated prompt's rollouts and an ungated prompt's demonstration are carried along but take
part in no term) and `chord_correct` (SRFT: own rollouts that scored >= the threshold). Their
normalisers come from `recipe.train.actor_loss.mini_batch_sums` like every other term's.

- HPT: `chord.losses.hybrids.hpt_loss` (GRPO over active rollouts + `c_sft` NLL over active
  demonstrations), with verl's entropy bonus and KL loss over the active rollouts.
- SRFT: `chord.losses.hybrids.srft_loss`; the entropy weights need the model's token entropy
  (`actor.calculate_entropy`, switched on at start-up by `recipe.train.hybrid_config`); the
  demonstrations' policy-gradient term reads their group advantages from `advantages`.
- ReLIFT: `chord.losses.chord_loss` with plain NLL: the RL update has no expert rows (mu = 0,
  i.e. GRPO), the SFT-only update only expert rows (mu = 1, token-mean NLL).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict

from chord.losses import chord_loss
from chord.losses.hybrids import hpt_loss, srft_loss

ACTIVE = "chord_active"
CORRECT = "chord_correct"
POS_NORMALIZER = "chord_positive_normalizer"
NEG_NORMALIZER = "chord_negative_normalizer"
POS_TOKENS = "chord_positive_tokens"
SFT_ONLY = "chord_sft_only"  # meta flag of ReLIFT's SFT-only update: the worker skips the LR scheduler


def hybrid_loss(
    chord: Any,
    log_prob: torch.Tensor,
    entropy: torch.Tensor | None,
    batch: TensorDict,
    data: TensorDict,
    *,
    mu: float,
    pg_norm: float,
    sft_norm: float,
    common: dict,
    regularizers: dict,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, raw metrics) of the run's hybrid for this micro-batch; `batch` is the padded fields."""
    mask = batch["response_mask"].to(torch.float32)
    is_expert = batch["is_expert"].to(torch.bool)
    loss_name = chord.spec.loss
    if loss_name == "hpt":
        active = batch[ACTIVE].to(torch.bool)
        return hpt_loss(
            log_prob,
            batch["old_log_probs"],
            batch["advantages"],
            mask,
            is_expert,
            active,
            sft_coef=chord.hpt.sft_coef,
            clip_low=common["clip_low"],
            clip_high=common["clip_high"],
            clip_c=common["clip_c"],
            agg=common["agg"],
            pg_normalizer=pg_norm,
            sft_normalizer=sft_norm,
            horizon=common["horizon"],
            **regularizers,
        )
    if loss_name == "srft":
        if entropy is None:
            raise ValueError(
                "actor_rollout_ref.actor.calculate_entropy: SRFT's weights need the policy's token entropy"
            )
        cfg = chord.srft
        return srft_loss(
            log_prob,
            mask,
            is_expert,
            batch[CORRECT].to(torch.bool),
            entropy,
            advantages=batch["advantages"],
            demo_coef=cfg.demo_coef,
            demo_pg_coef=cfg.demo_pg_coef,
            demo_gamma=cfg.demo_gamma,
            positive_coef=cfg.positive_coef,
            negative_coef=cfg.negative_coef,
            positive_entropy_sign=float(cfg.positive_entropy_sign),
            agg=common["agg"],
            sft_normalizer=sft_norm,
            positive_normalizer=float(data[POS_NORMALIZER]),
            negative_normalizer=float(data[NEG_NORMALIZER]),
            regularizer_normalizer=pg_norm,
            entropy_coeff=regularizers["entropy_coeff"],
            kl=regularizers["kl"],
            kl_coef=regularizers["kl_coef"],
            horizon=common["horizon"],
        )
    if loss_name == "relift":
        return chord_loss(
            log_prob,
            batch["old_log_probs"],
            batch["advantages"],
            mask,
            is_expert,
            mu=mu,
            sft_weighting="nll",
            pg_normalizer=pg_norm,
            sft_normalizer=sft_norm,
            **common,
            **regularizers,
        )
    raise ValueError(f"chord.variant: {chord.variant!r} is not a hybrid")
