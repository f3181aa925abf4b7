"""The shared core of every SFT variant: a weighted, optionally cut-off, negative log-likelihood."""

from __future__ import annotations

import math

import torch

from chord.losses._common import masked_max, masked_mean, zero_masked
from chord.losses.aggregation import Normalizer, aggregate_checked

__all__ = ["weighted_nll_core"]


def weighted_nll_core(
    logp: torch.Tensor,
    m: torch.Tensor,
    weight: torch.Tensor,
    *,
    cutoff_prob: float,
    agg: str,
    normalizer: Normalizer,
    normalizer_name: str = "normalizer",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``l_t = -w * min(logp_t, log c)`` aggregated over ``m``; validated float32 inputs.

    ``logp``/``m`` ``[B, T]``; ``weight`` detached, broadcastable to ``[B, T]`` (``[B, 1]`` for
    sequence weights). ``cutoff_prob`` c = 1 leaves ``logp`` untouched; c < 1 stops the gradient
    of tokens the policy already gives p > c. Metrics (over counted tokens): ``sft_loss``,
    ``expert_p_mean``, ``sft_weight_mean``, ``sft_weight_max``, ``phi_mean`` (mean of
    ``p (1 - p)``, reported for every weighting as a diagnostic).
    """
    logp = zero_masked(logp, m)
    log_factor = logp if cutoff_prob >= 1.0 else logp.clamp(max=math.log(cutoff_prob))
    weight = weight.detach().expand_as(logp)
    loss = aggregate_checked(-weight * log_factor, m, agg, normalizer, normalizer_name=normalizer_name)
    p = torch.exp(logp.detach())
    metrics = {
        "sft_loss": loss.detach(),
        "expert_p_mean": masked_mean(p, m),
        "sft_weight_mean": masked_mean(weight, m),
        "sft_weight_max": masked_max(weight, m),
        "phi_mean": masked_mean(p * (1.0 - p), m),
    }
    return loss, metrics
