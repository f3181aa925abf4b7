"""Prefix-guided objectives (UFT, TRAPO): GRPO on generated tokens, an SFT term on prefix tokens.

A guided row's response is ``expert prefix + policy continuation``. Two disjoint token masks:
``mask`` (the policy's tokens: continuations of guided rows and whole plain rows) and
``prefix_mask`` (the expert's prefix tokens). With ``p_t = exp(logp_t)``:

    L = (L_GRPO - c_ent * H + c_kl * KL)(mask) + coef * L_prefix(prefix_mask)

- ``L_GRPO``: :func:`chord.losses.policy_loss` on ``mask`` only (prefix tokens take no part in
  the surrogate, its clip statistics or the regularisers), aggregated with ``agg`` and
  ``pg_normalizer``;
- ``L_prefix`` is a token mean over prefix tokens, ``sum_t l_t * prefix_mask_t / prefix_normalizer``
  (``prefix_normalizer`` = prefix tokens of the whole mini-batch; default: of this call), with

  * ``weighting="nll"`` (UFT, coef beta = 0.001): ``l_t = -logp_t``, so ``dl/dlogp = -1``;
  * ``weighting="trust_region"`` (TRAPO, alpha 0.1): ``l_t = -p_t / max(sg(p_t), alpha)``, so
    ``dl/dlogp = -p_t / max(p_t, alpha)``: the NLL gradient where ``p_t >= alpha``, damped by
    ``p_t / alpha`` below it (an unlikely expert token cannot pull the policy hard). Its value
    is ``-1`` on tokens with ``p_t >= alpha`` and ``-p_t / alpha`` otherwise.

Metrics: ``prefix_objective`` (L without the regularisers), ``pg_loss``, ``pg_clipfrac``,
``pg_clipfrac_lower``, ``ppo_kl``, ``prefix_loss`` (``L_prefix``, before ``coef``),
``prefix_p_mean`` (mean ``p_t`` over prefix tokens), ``prefix_tokens``, ``on_policy_tokens``,
and ``entropy_loss`` / ``kl_loss`` when given.
"""

from __future__ import annotations

import torch

from chord.losses._common import masked_mean, to_floats
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.losses.combined import _add_regularizers, _check_horizon, _check_regularizer, _check_token_weights
from chord.losses.policy import ClipConfig, check_policy_inputs, policy_core
from chord.tensor_checks import check_choice, check_mask, check_number

__all__ = ["PREFIX_WEIGHTINGS", "prefix_loss", "prefix_token_loss"]

PREFIX_WEIGHTINGS = ("nll", "trust_region")


def prefix_token_loss(logp: torch.Tensor, weighting: str, alpha: float = 0.1) -> torch.Tensor:
    """Per-token prefix loss ``l_t`` (module doc) of float32 ``logp`` ``[B, T]``, with grad."""
    if weighting == "nll":
        return -logp
    p = torch.exp(logp)
    return -p / p.detach().clamp(min=alpha)


def prefix_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    prefix_mask: torch.Tensor,
    *,
    weighting: str = "nll",
    coef: float = 0.001,
    alpha: float = 0.1,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    pg_normalizer: Normalizer = None,
    prefix_normalizer: Normalizer = None,
    entropy: torch.Tensor | None = None,
    entropy_coeff: float = 0.0,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    horizon: int | None = None,
    pg_token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L = (L_GRPO - c_ent H + c_kl KL)(mask) + coef * L_prefix(prefix_mask)`` (module doc).

    Shapes: ``logp``, ``old_logp``, ``mask``, ``prefix_mask`` (``entropy``, ``kl``,
    ``pg_token_weights``) ``[B, T]``; ``advantages`` ``[B]`` or ``[B, T]``. The two masks must
    not overlap (a token is either the expert's or the policy's).
    """
    check_choice("weighting", weighting, PREFIX_WEIGHTINGS)
    check_number("coef", coef, low=0.0)
    check_number("alpha", alpha, low=0.0, high=1.0, low_open=True)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    horizon = _check_horizon(horizon)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    shape = tuple(lp.shape)
    pm = check_mask("prefix_mask", prefix_mask, shape, like="logp")
    if bool(((m > 0) & (pm > 0)).any()):
        raise ValueError("prefix_mask: overlaps mask (a prefix token cannot also be a policy token)")
    is_w = _check_token_weights(pg_token_weights, shape)
    ent = _check_regularizer("entropy", entropy, entropy_coeff, shape)
    kld = _check_regularizer("kl", kl, kl_coef, shape)

    pg, pg_metrics = policy_core(
        lp, old, adv, m, clip, agg, pg_normalizer, "pg_normalizer", horizon=horizon, token_weights=is_w
    )
    per_token = prefix_token_loss(lp, weighting, alpha)
    sft = aggregate_checked(
        per_token, pm, "token-mean", prefix_normalizer, normalizer_name="prefix_normalizer"
    )
    loss = pg + coef * sft
    objective = loss.detach()
    loss, reg_metrics = _add_regularizers(
        loss, ent, entropy_coeff, kld, kl_coef, m, agg, pg_normalizer, 1.0, horizon
    )
    metrics = {
        "prefix_objective": objective,
        **pg_metrics,
        "prefix_loss": sft.detach(),
        "prefix_p_mean": masked_mean(torch.exp(lp), pm),
        "prefix_tokens": pm.sum(),
        "on_policy_tokens": m.sum(),
        **reg_metrics,
    }
    return loss, to_floats(metrics)
