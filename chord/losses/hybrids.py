"""Objectives of the newer SFT/RL hybrids over mixed batches: HPT and SRFT (ReLIFT reuses
:func:`chord.losses.chord_loss`: ``mu = 0`` for its RL update, ``mu = 1`` for its SFT-only one).

Notation (``[B, T]`` unless said): ``logp`` the policy's token log-probs (with grad), ``m`` the
0/1 response mask, ``is_expert`` ``[B]`` demonstration rows, ``active`` ``[B]`` rows that take
part in a term at all (the others are carried along so every step has the same row count),
``correct`` ``[B]`` own rollouts whose reward reached the threshold. Every term is aggregated
over its OWN rows with ``agg`` (``loss_agg_mode``) and its own normaliser (the count of the whole
mini-batch, summed over micro-batches and ranks, as in :func:`chord.losses.chord_loss`), so the
update does not depend on how rows fall into micro-batches or ranks.

- :func:`hpt_loss` (HPT, arXiv 2509.04419)::

      L = L_GRPO(active rollouts) + c_sft * NLL(active demonstrations) - c_ent * H + c_kl * KL

  The authors add a token-mean NLL to a surrogate summed over tokens and divided by the fixed
  max response length, so their two terms are on different scales (the GRPO term shrinks with
  short answers). Here each term is normalised over its own tokens (``token-mean``: its own
  token count), as all our terms are: ``c_sft`` = 1 weighs the two terms equally per token.
- :func:`srft_loss` (SRFT, arXiv 2506.19767), with ``H_b`` the detached mean token entropy of
  row ``b``'s response under the current policy (per sequence; within a row, so exact in any
  micro-batching), ``A_b`` a demonstration's GRPO advantage with the demonstration counted in its
  prompt's group (LUFFY's path) and ``p = exp(logp)``::

      L =   agg(-c_demo * exp(-H_b) * logp, demonstrations)                 (SFT on demos)
          + c_dpg * agg(-A_b * p / (p + gamma), demonstrations)             (RL on demos)
          + agg(-c_pos * exp(s * H_b) * logp, correct own rollouts)         (RL on own rollouts)
          + c_neg * agg(logp, incorrect own rollouts)
          - c_ent * H + c_kl * KL  (own rollouts)

  with defaults ``c_demo = 0.5``, ``c_dpg = 1``, ``gamma = 0.1``, ``c_pos = 0.1``,
  ``c_neg = 1`` and ``s = +1`` (``chord.srft.positive_entropy_sign``). Source: the paper's text
  could not be read from here (the stored copies hold its abstract and introduction), so no
  section is cited; the method comes from the one transcription found (a reader's notes on the
  v1 HTML): ``L = L_SFT(demo) + L_RL(demo) + L_RL(own rollouts)`` with
  ``w_SFT = 0.5 * sg(exp(-H))``, ``L_RL(own) = w_RL * (-log p(y+)) + log p(y-)`` and
  ``L_RL(demo)`` the policy-gradient surrogate on the demonstration with its group advantage.
  Two choices are ours and are keys: (1) the demonstration's behaviour probability is unknown
  (it came from another policy), so its surrogate is LUFFY's ratio-free shaped term
  ``-A * p / (p + gamma)`` (``chord.srft.demo_pg_coef``, ``chord.srft.demo_gamma``; 0 switches
  it off); (2) the transcription writes ``w_RL = 0.1 * sg(exp(-H))`` while its prose says the
  positive-rollout weight *rises* with entropy (to pull entropy down), i.e. ``exp(+H)``: the
  sign is ``chord.srft.positive_entropy_sign``, default +1. ``H`` is taken per sequence. The
  demonstration terms share one normaliser (the demonstrations' count); incorrect rollouts have
  their likelihood pushed down (``+log p`` minimised), correct ones pulled up.
"""

from __future__ import annotations

import torch

from chord.losses._common import masked_mean, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.losses.combined import _add_regularizers, _check_horizon, _check_regularizer
from chord.losses.policy import ClipConfig, broadcast_advantages, check_policy_inputs, policy_core
from chord.losses.sft import weighted_nll_core
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number, check_row_flags

__all__ = ["hpt_loss", "row_entropy", "srft_loss", "srft_row_masks"]


def _row_mask(m: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``m`` restricted to the rows where ``rows`` ``[B]`` is true."""
    return m * rows.to(m.dtype).unsqueeze(-1)


def row_entropy(entropy: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` detached mean token entropy of each row over its counted tokens (0 for an empty row)."""
    ent = zero_masked(entropy.detach().float(), m)
    return (ent.sum(-1) / m.sum(-1).clamp(min=1.0)).unsqueeze(-1)


def hpt_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    is_expert: torch.Tensor,
    active: torch.Tensor,
    *,
    sft_coef: float = 1.0,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    pg_normalizer: Normalizer = None,
    sft_normalizer: Normalizer = None,
    entropy: torch.Tensor | None = None,
    entropy_coeff: float = 0.0,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    horizon: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """HPT: ``L_GRPO(active rollouts) + sft_coef * NLL(active demonstrations)`` (module doc).

    Shapes: ``logp``, ``old_logp``, ``mask`` ``[B, T]``; ``advantages`` ``[B]`` or ``[B, T]``;
    ``is_expert``, ``active`` ``[B]``. The driver marks a gated prompt's rollouts inactive and its
    demonstration active, and the other way round for the other prompts. ``pg_normalizer`` /
    ``sft_normalizer``: counts of ``agg`` over the active rollouts / demonstrations of the whole
    mini-batch (default: this call's). Metrics: ``hpt_loss``, ``pg_loss``, ``sft_loss`` (unscaled),
    ``pg_clipfrac``, ``pg_clipfrac_lower``, ``ppo_kl``, ``expert_p_mean``, ``sft_weight_mean``,
    ``sft_weight_max``, ``phi_mean``, ``expert_rows``, ``on_policy_rows``, ``expert_tokens``,
    ``on_policy_tokens`` (active rows only), ``entropy_loss`` / ``kl_loss`` when given.
    """
    sft_coef = check_number("sft_coef", sft_coef, low=0.0)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    expert = check_row_flags("is_expert", is_expert, lp.shape[0])
    act = check_row_flags("active", active, lp.shape[0])
    ent = _check_regularizer("entropy", entropy, entropy_coeff, tuple(lp.shape))
    kld = _check_regularizer("kl", kl, kl_coef, tuple(lp.shape))
    on_rows, ex_rows = act & ~expert, act & expert
    on_mask, ex_mask = _row_mask(m, on_rows), _row_mask(m, ex_rows)

    horizon = _check_horizon(horizon)
    pg, pg_metrics = policy_core(
        lp, old, adv, on_mask, clip, agg, pg_normalizer, "pg_normalizer", horizon=horizon
    )
    sft, sft_metrics = weighted_nll_core(
        lp,
        ex_mask,
        torch.ones_like(lp),
        cutoff_prob=1.0,
        agg=agg,
        normalizer=sft_normalizer,
        normalizer_name="sft_normalizer",
        horizon=horizon,
    )
    loss = pg + sft_coef * sft
    objective = loss.detach()
    loss, reg_metrics = _add_regularizers(
        loss, ent, entropy_coeff, kld, kl_coef, on_mask, agg, pg_normalizer, 1.0, horizon
    )
    metrics = {
        "hpt_loss": objective,
        **pg_metrics,
        **sft_metrics,
        "expert_rows": ex_rows.sum(),
        "on_policy_rows": on_rows.sum(),
        "expert_tokens": ex_mask.sum(),
        "on_policy_tokens": on_mask.sum(),
        **reg_metrics,
    }
    return loss, to_floats(metrics)


def srft_row_masks(
    m: torch.Tensor, is_expert: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(demo_mask, correct_mask, incorrect_mask)``: ``m`` restricted to each of SRFT's row kinds."""
    return _row_mask(m, is_expert), _row_mask(m, ~is_expert & correct), _row_mask(m, ~is_expert & ~correct)


def srft_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    is_expert: torch.Tensor,
    correct: torch.Tensor,
    entropy: torch.Tensor,
    *,
    advantages: torch.Tensor | None = None,
    demo_coef: float = 0.5,
    demo_pg_coef: float = 1.0,
    demo_gamma: float = 0.1,
    positive_coef: float = 0.1,
    negative_coef: float = 1.0,
    positive_entropy_sign: float = 1.0,
    agg: str = "token-mean",
    sft_normalizer: Normalizer = None,
    positive_normalizer: Normalizer = None,
    negative_normalizer: Normalizer = None,
    regularizer_normalizer: Normalizer = None,
    entropy_coeff: float = 0.0,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    horizon: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SRFT's four terms over demonstrations, correct and incorrect own rollouts (module doc).

    Shapes: ``logp``, ``mask``, ``entropy`` (the policy's token entropy; detached for the
    weights, with grad for the ``entropy_coeff`` bonus) ``[B, T]``; ``is_expert``, ``correct``
    ``[B]`` (``correct`` is ignored on demonstration rows); ``advantages`` ``[B]`` or ``[B, T]``,
    read on demonstration rows only (their group advantages; required when ``demo_pg_coef > 0``).
    ``positive_entropy_sign`` is +1 or -1. Normalisers: counts of ``agg`` over each kind's rows
    in the whole mini-batch (default: this call's): ``sft_normalizer`` for both demonstration
    terms; ``regularizer_normalizer`` over all own rollouts. Metrics: ``srft_loss`` and its terms
    ``sft_loss``, ``srft_demo_pg_loss``, ``srft_positive_loss``, ``srft_negative_loss``
    (coefficients included), ``srft_demo_advantage_mean`` (over demonstration tokens),
    ``expert_p_mean``, ``sft_weight_mean`` / ``sft_weight_max`` (demonstration weights
    ``demo_coef * exp(-H_b)``), ``phi_mean``, ``srft_demo_entropy`` (mean of ``H_b`` over
    demonstration tokens), ``srft_positive_weight_mean`` (over correct-rollout tokens),
    ``expert_rows``, ``on_policy_rows``, ``positive_rows``, ``expert_tokens``,
    ``on_policy_tokens``, ``positive_tokens``, ``entropy_loss`` / ``kl_loss`` when used.
    """
    for name, value in (
        ("demo_coef", demo_coef),
        ("demo_pg_coef", demo_pg_coef),
        ("positive_coef", positive_coef),
        ("negative_coef", negative_coef),
    ):
        check_number(name, value, low=0.0)
    if positive_entropy_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"positive_entropy_sign: expected +1 or -1, got {positive_entropy_sign!r}")
    demo_gamma = check_number("demo_gamma", demo_gamma, low=0.0, low_open=True)
    check_choice("agg", agg, AGG_MODES)
    lp = check_float_tensor("logp", logp)
    if lp.dim() != 2:
        raise ValueError(f"logp: expected shape [B, T], got {tuple(lp.shape)}")
    shape = tuple(lp.shape)
    m = check_mask("mask", mask, shape, like="logp")
    if advantages is None:
        if demo_pg_coef != 0.0:
            raise ValueError(
                "advantages: SRFT's policy-gradient term on demonstrations (demo_pg_coef > 0) needs "
                "the demonstrations' group advantages"
            )
        adv = torch.zeros_like(lp)
    else:
        adv = check_float_tensor("advantages", advantages, shapes=[(shape[0],), shape], like="logp")
        adv = broadcast_advantages(adv, shape)
    ent = check_float_tensor("entropy", entropy, shape=shape, like="logp")
    expert = check_row_flags("is_expert", is_expert, shape[0])
    right = check_row_flags("correct", correct, shape[0])
    kld = _check_regularizer("kl", kl, kl_coef, shape)
    check_number("entropy_coeff", entropy_coeff)
    horizon = _check_horizon(horizon)
    demo_mask, pos_mask, neg_mask = srft_row_masks(m, expert, right)
    on_mask = pos_mask + neg_mask

    h = row_entropy(ent, m)
    demo_weight = demo_coef * torch.exp(-h)
    sft, sft_metrics = weighted_nll_core(
        lp,
        demo_mask,
        demo_weight,
        cutoff_prob=1.0,
        agg=agg,
        normalizer=sft_normalizer,
        normalizer_name="sft_normalizer",
        horizon=horizon,
    )
    p_demo = torch.exp(zero_masked(lp, demo_mask))
    demo_adv = zero_masked(adv.detach().float(), demo_mask)
    demo_pg = demo_pg_coef * aggregate_checked(
        -demo_adv * (p_demo / (p_demo + demo_gamma)),
        demo_mask,
        agg,
        sft_normalizer,
        horizon=horizon,
        normalizer_name="sft_normalizer",
    )
    pos_weight = positive_coef * torch.exp(float(positive_entropy_sign) * h)
    lp_pos = zero_masked(lp, pos_mask)
    positive = aggregate_checked(
        -pos_weight * lp_pos,
        pos_mask,
        agg,
        positive_normalizer,
        horizon=horizon,
        normalizer_name="positive_normalizer",
    )
    lp_neg = zero_masked(lp, neg_mask)
    negative = negative_coef * aggregate_checked(
        lp_neg, neg_mask, agg, negative_normalizer, horizon=horizon, normalizer_name="negative_normalizer"
    )
    loss = sft + demo_pg + positive + negative
    objective = loss.detach()
    use_entropy = entropy_coeff != 0.0
    loss, reg_metrics = _add_regularizers(
        loss,
        ent if use_entropy else None,
        entropy_coeff,
        kld,
        kl_coef,
        on_mask,
        agg,
        regularizer_normalizer,
        1.0,
        horizon,
    )
    metrics = {
        "srft_loss": objective,
        **sft_metrics,
        "srft_demo_pg_loss": demo_pg.detach(),
        "srft_demo_advantage_mean": masked_mean(demo_adv, demo_mask),
        "srft_positive_loss": positive.detach(),
        "srft_negative_loss": negative.detach(),
        "srft_demo_entropy": masked_mean(h.expand(shape), demo_mask),
        "srft_positive_weight_mean": masked_mean(pos_weight.expand(shape), pos_mask),
        "expert_rows": expert.sum(),
        "on_policy_rows": (~expert).sum(),
        "positive_rows": (~expert & right).sum(),
        "expert_tokens": demo_mask.sum(),
        "on_policy_tokens": on_mask.sum(),
        "positive_tokens": pos_mask.sum(),
        **reg_metrics,
    }
    return loss, to_floats(metrics)
