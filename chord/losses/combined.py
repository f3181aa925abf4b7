"""Objectives over a batch that mixes on-policy and expert rows: CHORD and LUFFY.

- :func:`chord_loss`: ``(1 - mu) * (GRPO - c_ent * H + c_kl * KL)(on-policy rows) + mu * SFT(expert rows)``,
  each term over its own rows;
- :func:`luffy_loss`: expert traces as off-policy members of the GRPO groups, ``f(p) = p / (p + gamma)``.

These are the public boundary of a trainer's loss: inputs are validated here once, the formula
helpers of :mod:`chord.losses.policy` and :mod:`chord.losses.sft` trust them.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from chord.losses._common import masked_mean, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.losses.policy import (
    ClipConfig,
    broadcast_advantages,
    check_policy_inputs,
    clipped_surrogate,
    policy_core,
    surrogate_metrics,
)
from chord.losses.sft import check_sft_inputs, iw_normalize_scale, make_iw_options, sft_core
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number, check_row_flags

__all__ = ["chord_loss", "chord_normalizers", "luffy_loss", "split_rows"]


def split_rows(m: torch.Tensor, is_expert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(on_policy_mask, expert_mask)``: the float ``[B, T]`` mask restricted to each kind of row."""
    expert_rows = is_expert.to(m.dtype).unsqueeze(-1)
    return m * (1.0 - expert_rows), m * expert_rows


def chord_normalizers(
    mask: torch.Tensor, is_expert: torch.Tensor, agg: str = "token-mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local ``(pg_normalizer, sft_normalizer)`` counts of ``agg`` for the two parts of a batch.

    Sum each over the micro-batches and data-parallel ranks of a mini-batch, then pass the sums
    to every :func:`chord_loss` call of that mini-batch: the micro-batch losses then add up to the
    full mini-batch loss (token counts for ``token-mean``, row counts for ``seq-*``).
    """
    check_choice("agg", agg, AGG_MODES)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"mask: expected a [B, T] tensor, got {getattr(mask, 'shape', type(mask))}")
    m = check_mask("mask", mask, tuple(mask.shape))
    expert = check_row_flags("is_expert", is_expert, m.shape[0])
    on_mask, ex_mask = split_rows(m, expert)
    count = AGG_MODES[agg][1]
    return count(on_mask), count(ex_mask)


def _check_regularizer(
    name: str, x: torch.Tensor | None, coef: float, shape: tuple[int, ...]
) -> torch.Tensor | None:
    """A per-token regulariser ``[B, T]`` (with grad), or None when not given."""
    check_number(f"{name}_coef", coef)
    if x is None:
        return None
    return check_float_tensor(name, x, shape=shape, like="logp")


def _check_token_weights(w: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """Per-token weights of the on-policy surrogate ``[B, T]`` (detached), or None."""
    if w is None:
        return None
    return check_float_tensor("pg_token_weights", w, shape=shape, like="logp").detach()


def _check_horizon(horizon: int | None) -> int | None:
    if horizon is not None:
        check_number("horizon", horizon, low=0.0, low_open=True)
    return horizon


def _check_iw_sums(iw_sums: tuple[float, float] | None) -> float | None:
    """The global iw normalisation scale ``count / sum`` from ``(sum, count)``, or None."""
    if iw_sums is None:
        return None
    if len(iw_sums) != 2:
        raise ValueError(f"iw_sums: expected (weight_sum, count), got {iw_sums!r}")
    return iw_normalize_scale(*iw_sums)


def _add_regularizers(
    loss: torch.Tensor,
    entropy: torch.Tensor | None,
    entropy_coeff: float,
    kl: torch.Tensor | None,
    kl_coef: float,
    on_mask: torch.Tensor,
    agg: str,
    normalizer: Normalizer,
    scale: float,
    horizon: int | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``loss - scale * c_ent * H + scale * c_kl * KL``, both aggregated over on-policy tokens."""
    metrics: dict[str, torch.Tensor] = {}
    if entropy is not None:
        term = aggregate_checked(entropy, on_mask, agg, normalizer, horizon=horizon)
        loss = loss - scale * entropy_coeff * term
        metrics["entropy_loss"] = term.detach()
    if kl is not None:
        term = aggregate_checked(kl, on_mask, agg, normalizer, horizon=horizon)
        loss = loss + scale * kl_coef * term
        metrics["kl_loss"] = term.detach()
    return loss, metrics


def chord_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    is_expert: torch.Tensor,
    *,
    mu: float,
    sft_weighting: str = "phi",
    ref_logp: torch.Tensor | None = None,
    quality: torch.Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    pg_normalizer: Normalizer = None,
    sft_normalizer: Normalizer = None,
    cutoff_prob: float = 1.0,
    iw_temp: float = 1.0,
    iw_w_max: float = 16.0,
    iw_normalize: bool = False,
    iw_sums: tuple[float, float] | None = None,
    q_logp: torch.Tensor | None = None,
    iw_token_clip: tuple[float, float] = (0.2, 1.8),
    entropy: torch.Tensor | None = None,
    entropy_coeff: float = 0.0,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    horizon: int | None = None,
    pg_token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L = (1 - mu) * (L_GRPO - c_ent * H + c_kl * KL) + mu * L_SFT``, each term over its own rows.

    Shapes: ``logp``, ``old_logp``, ``mask`` (``ref_logp``, ``q_logp``) ``[B, T]``;
    ``advantages`` ``[B]`` or ``[B, T]``; ``is_expert`` and ``quality`` ``[B]``.
    ``L_GRPO`` is :func:`chord.losses.policy_loss` with ``mask * ~is_expert`` (normaliser
    ``pg_normalizer``); ``L_SFT`` is :func:`chord.losses.sft_loss` with ``weighting=sft_weighting``
    and ``mask * is_expert`` (normaliser ``sft_normalizer``). A part with no rows is exactly 0.
    Metrics: ``chord_loss``, ``mu``, ``pg_loss``, ``pg_clipfrac``, ``pg_clipfrac_lower``,
    ``ppo_kl``, ``sft_loss``, ``expert_p_mean``, ``sft_weight_mean``, ``sft_weight_max``,
    ``phi_mean``, ``expert_rows``, ``on_policy_rows``, ``expert_tokens``, ``on_policy_tokens``
    (``pg_loss`` / ``sft_loss`` are the unscaled terms, before the ``1 - mu`` / ``mu`` factors).
    ``entropy`` / ``kl`` (``[B, T]``, with grad; e.g. the policy's token entropy and a KL
    estimate against the reference) are the GRPO term's regularisers: aggregated over on-policy
    tokens with ``pg_normalizer`` and logged (also with a zero coefficient) as
    ``entropy_loss`` / ``kl_loss``. Expert rows take no part in them.
    ``iw_normalize`` rescales the iw weights to mean 1 over this call's expert rows, or, with
    ``iw_sums = (sum of raw weights, count)`` over the whole mini-batch
    (:func:`chord.losses.sft.iw_weight_sums` summed over micro-batches and ranks), by
    ``count / sum``: then the update does not depend on how rows fall into micro-batches.
    ``horizon``: ``T`` of ``seq-mean-token-sum-norm`` (verl's ``loss_scale_factor``; default the
    padded width). ``pg_token_weights`` ``[B, T]``: per-token weights of the GRPO surrogate
    (verl's rollout-correction ``rollout_is_weights``).
    """
    mu = check_number("mu", mu, low=0.0, high=1.0)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    check_number("cutoff_prob", cutoff_prob, low=0.0, high=1.0, low_open=True)
    iw = make_iw_options(iw_temp, iw_w_max, iw_normalize, iw_token_clip, prefix="iw_")
    iw_scale = _check_iw_sums(iw_sums)
    if iw_normalize and iw_scale is not None:
        iw = replace(iw, normalize=False, scale=iw_scale)
    horizon = _check_horizon(horizon)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    is_w = _check_token_weights(pg_token_weights, tuple(lp.shape))
    expert = check_row_flags("is_expert", is_expert, lp.shape[0])
    ent = _check_regularizer("entropy", entropy, entropy_coeff, tuple(lp.shape))
    kld = _check_regularizer("kl", kl, kl_coef, tuple(lp.shape))
    on_mask, ex_mask = split_rows(m, expert)
    x = check_sft_inputs(
        sft_weighting,
        lp,
        ex_mask,
        ref_logp=ref_logp,
        q_logp=q_logp,
        quality=quality,
        iw=iw,
        weighting_name="sft_weighting",
    )

    pg, pg_metrics = policy_core(
        lp, old, adv, on_mask, clip, agg, pg_normalizer, "pg_normalizer", horizon=horizon, token_weights=is_w
    )
    sft, sft_metrics = sft_core(
        x,
        sft_weighting,
        cutoff_prob=cutoff_prob,
        agg=agg,
        normalizer=sft_normalizer,
        normalizer_name="sft_normalizer",
        horizon=horizon,
    )
    loss = (1.0 - mu) * pg + mu * sft
    objective = loss.detach()  # logged without the regularisers
    loss, reg_metrics = _add_regularizers(
        loss, ent, entropy_coeff, kld, kl_coef, on_mask, agg, pg_normalizer, 1.0 - mu, horizon
    )
    metrics = {
        "chord_loss": objective,
        "mu": mu,
        **pg_metrics,
        **sft_metrics,
        "expert_rows": expert.sum(),
        "on_policy_rows": (~expert).sum(),
        "expert_tokens": ex_mask.sum(),
        "on_policy_tokens": on_mask.sum(),
        **reg_metrics,
    }
    return loss, to_floats(metrics)


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
    entropy: torch.Tensor | None = None,
    entropy_coeff: float = 0.0,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    regularizer_normalizer: Normalizer = None,
    horizon: int | None = None,
    pg_token_weights: torch.Tensor | None = None,
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
    tokens), ``expert_p_mean``, ``expert_rows``, ``on_policy_rows``, ``expert_tokens``,
    ``on_policy_tokens``.
    ``entropy`` / ``kl`` as in :func:`chord_loss` (``- c_ent * H + c_kl * KL`` over on-policy
    tokens), divided by ``regularizer_normalizer`` (the on-policy count of the whole mini-batch).
    ``horizon`` and ``pg_token_weights`` (on-policy surrogate only) as in :func:`chord_loss`.
    """
    gamma = check_number("gamma", gamma, low=0.0, low_open=True)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    horizon = _check_horizon(horizon)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    is_w = _check_token_weights(pg_token_weights, tuple(lp.shape))
    expert = check_row_flags("is_expert", is_expert, lp.shape[0])
    ent = _check_regularizer("entropy", entropy, entropy_coeff, tuple(lp.shape))
    kld = _check_regularizer("kl", kl, kl_coef, tuple(lp.shape))
    on_mask, ex_mask = split_rows(m, expert)
    adv = broadcast_advantages(adv, tuple(lp.shape))

    terms = clipped_surrogate(lp, old, adv, on_mask, clip)
    p = torch.exp(zero_masked(lp, ex_mask))
    off = -zero_masked(adv, ex_mask) * (p / (p + gamma))
    # One denominator for both parts: the expert traces are members of the same GRPO batch.
    n = AGG_MODES[agg][1](m) if normalizer is None else normalizer
    surrogate = terms.loss if is_w is None else terms.loss * is_w
    pg = aggregate_checked(surrogate, on_mask, agg, n, horizon=horizon)
    off_loss = aggregate_checked(off, ex_mask, agg, n, horizon=horizon)
    loss = pg + off_loss
    objective = loss.detach()  # logged without the regularisers
    loss, reg_metrics = _add_regularizers(
        loss, ent, entropy_coeff, kld, kl_coef, on_mask, agg, regularizer_normalizer, 1.0, horizon
    )
    metrics = {
        "luffy_loss": objective,
        "pg_loss": pg.detach(),
        "offpolicy_loss": off_loss.detach(),
        **surrogate_metrics(terms, on_mask),
        "expert_p_mean": masked_mean(p, ex_mask),
        "expert_rows": expert.sum(),
        "on_policy_rows": (~expert).sum(),
        "expert_tokens": ex_mask.sum(),
        "on_policy_tokens": on_mask.sum(),
        **reg_metrics,
    }
    return loss, to_floats(metrics)
