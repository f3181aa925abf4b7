"""CHORD's single objective: ``(1 - mu) * GRPO(on-policy rows) + mu * SFT(expert rows)``."""

from __future__ import annotations

import torch

from chord.losses._common import to_floats
from chord.losses.aggregation import AGG_MODES, Normalizer
from chord.losses.iw import make_iw_options
from chord.losses.policy import ClipConfig, check_policy_inputs, policy_core
from chord.losses.sft import check_sft_inputs, sft_core
from chord.tensor_checks import check_choice, check_mask, check_number, check_row_flags

__all__ = ["chord_loss", "chord_normalizers", "split_rows"]


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
    q_logp: torch.Tensor | None = None,
    iw_token_clip: tuple[float, float] = (0.2, 1.8),
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L = (1 - mu) * L_GRPO + mu * L_SFT``, each term aggregated over its own rows only.

    Shapes: ``logp``, ``old_logp``, ``mask`` (``ref_logp``, ``q_logp``) ``[B, T]``;
    ``advantages`` ``[B]`` or ``[B, T]``; ``is_expert`` and ``quality`` ``[B]``.
    ``L_GRPO`` is :func:`chord.losses.policy_loss` with ``mask * ~is_expert`` (normaliser
    ``pg_normalizer``); ``L_SFT`` is :func:`chord.losses.sft_loss` with ``weighting=sft_weighting``
    and ``mask * is_expert`` (normaliser ``sft_normalizer``). A part with no rows is exactly 0.
    Metrics: ``chord_loss``, ``mu``, ``pg_loss``, ``pg_clipfrac``, ``pg_clipfrac_lower``,
    ``ppo_kl``, ``sft_loss``, ``expert_p_mean``, ``sft_weight_mean``, ``sft_weight_max``,
    ``phi_mean``, ``expert_rows``, ``on_policy_rows``, ``expert_tokens``, ``on_policy_tokens``
    (``pg_loss`` / ``sft_loss`` are the unscaled terms, before the ``1 - mu`` / ``mu`` factors).
    """
    mu = check_number("mu", mu, low=0.0, high=1.0)
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    check_number("cutoff_prob", cutoff_prob, low=0.0, high=1.0, low_open=True)
    iw = make_iw_options(iw_temp, iw_w_max, iw_normalize, iw_token_clip, prefix="iw_")
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    expert = check_row_flags("is_expert", is_expert, lp.shape[0])
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

    pg, pg_metrics = policy_core(lp, old, adv, on_mask, clip, agg, pg_normalizer, "pg_normalizer")
    sft, sft_metrics = sft_core(
        x,
        sft_weighting,
        cutoff_prob=cutoff_prob,
        agg=agg,
        normalizer=sft_normalizer,
        normalizer_name="sft_normalizer",
    )
    loss = (1.0 - mu) * pg + mu * sft
    metrics = {
        "chord_loss": loss.detach(),
        "mu": mu,
        **pg_metrics,
        **sft_metrics,
        "expert_rows": expert.sum(),
        "on_policy_rows": (~expert).sum(),
        "expert_tokens": ex_mask.sum(),
        "on_policy_tokens": on_mask.sum(),
    }
    return loss, to_floats(metrics)
