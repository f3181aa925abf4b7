"""LUFFY baseline: expert traces join the GRPO group; off-policy tokens are shaped by ``p / (p + gamma)``."""

from __future__ import annotations

import torch

from chord.losses._common import masked_mean, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.losses.combined import split_rows
from chord.losses.policy import (
    ClipConfig,
    broadcast_advantages,
    check_policy_inputs,
    clipped_surrogate,
    surrogate_metrics,
)
from chord.tensor_checks import check_choice, check_number, check_row_flags

__all__ = ["luffy_loss"]


def luffy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    is_expert: torch.Tensor,
    *,
    gamma: float = 0.1,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """LUFFY policy loss over all rows, aggregated together with one ``normalizer``.

    On-policy rows: the clipped surrogate of :func:`chord.losses.policy_loss`.
    Expert (off-policy) rows: ``l_t = -A * f(p_t)``, ``f(p) = p / (p + gamma)``, ``p = exp(logp)``
    WITH gradient, no ratio and no clipping (``old_logp`` is ignored there). Advantages for expert
    rows come from group statistics that include them
    (``grpo_outcome_advantages(..., expert_in_groups=True)``).
    Shapes: ``logp``, ``old_logp``, ``mask`` ``[B, T]``; ``advantages`` ``[B]`` or ``[B, T]``;
    ``is_expert`` ``[B]``. Metrics: ``luffy_loss``, ``pg_loss`` and ``offpolicy_loss`` (the two
    parts; they sum to the loss), ``pg_clipfrac``, ``pg_clipfrac_lower``, ``ppo_kl`` (on-policy
    tokens), ``expert_p_mean``, ``expert_rows``, ``on_policy_rows``.
    """
    gamma = check_number("gamma", gamma, low=0.0, low_open=True)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    expert = check_row_flags("is_expert", is_expert, lp.shape[0])
    on_mask, ex_mask = split_rows(m, expert)
    adv = broadcast_advantages(adv, tuple(lp.shape))

    terms = clipped_surrogate(lp, old, adv, on_mask, clip)
    p = torch.exp(zero_masked(lp, ex_mask))
    off = -zero_masked(adv, ex_mask) * (p / (p + gamma))
    # One denominator for both parts: the expert traces are members of the same GRPO batch.
    n = AGG_MODES[agg][1](m) if normalizer is None else normalizer
    pg = aggregate_checked(terms.loss, on_mask, agg, n)
    off_loss = aggregate_checked(off, ex_mask, agg, n)
    loss = pg + off_loss
    metrics = {
        "luffy_loss": loss.detach(),
        "pg_loss": pg.detach(),
        "offpolicy_loss": off_loss.detach(),
        **surrogate_metrics(terms, on_mask),
        "expert_p_mean": masked_mean(p, ex_mask),
        "expert_rows": expert.sum(),
        "on_policy_rows": (~expert).sum(),
    }
    return loss, to_floats(metrics)
