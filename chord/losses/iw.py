"""Importance-weighted SFT (iw-SFT, arXiv 2507.12856): weights and loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.losses._common import LOG_RATIO_CLAMP, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer
from chord.losses.weighted_nll import weighted_nll_core
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number

__all__ = ["IwOptions", "iw_sft_loss", "iw_sft_weights", "iw_weights_core", "make_iw_options"]


@dataclass(frozen=True)
class IwOptions:
    """iw-SFT knobs: ``temp``, ``w_max`` (sequence clip), ``normalize`` (batch mean 1), ``token_clip``."""

    temp: float = 1.0
    w_max: float = 16.0
    normalize: bool = False
    token_clip: tuple[float, float] = (0.2, 1.8)


def make_iw_options(
    temp: float, w_max: float, normalize: bool, token_clip: tuple[float, float], *, prefix: str = ""
) -> IwOptions:
    """Validated :class:`IwOptions`; messages name the caller's argument (``prefix`` + field)."""
    check_number(f"{prefix}temp", temp, low=0.0)
    check_number(f"{prefix}w_max", w_max, low=0.0, low_open=True)
    clip = tuple(token_clip)
    if len(clip) != 2:
        raise ValueError(f"{prefix}token_clip: expected (low, high), got {token_clip!r}")
    check_number(f"{prefix}token_clip", clip[0], low=0.0)
    check_number(f"{prefix}token_clip", clip[1], low=clip[0])
    return IwOptions(float(temp), float(w_max), bool(normalize), (float(clip[0]), float(clip[1])))


def iw_weights_core(
    q_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    m: torch.Tensor,
    opts: IwOptions,
    *,
    quality: torch.Tensor | None = None,
    per_token: bool = False,
) -> torch.Tensor:
    """:func:`iw_sft_weights` on validated float32 inputs (``q_logp`` already detached)."""
    with torch.no_grad():
        diff = zero_masked(q_logp - ref_logp.detach(), m)
        if per_token:
            low, high = opts.token_clip
            log_w = (opts.temp * diff).clamp(max=LOG_RATIO_CLAMP)
            w = torch.exp(log_w).clamp(low, high) * m
            counted = m
        else:
            tokens = m.sum(-1)
            log_w = (opts.temp * diff.sum(-1) / tokens.clamp(min=1.0)).clamp(max=LOG_RATIO_CLAMP)
            counted = (tokens > 0).float()
            # A row with no counted token has no evidence for a ratio: weight 0 (it adds no loss
            # anyway, and 0 keeps it out of the batch normalisation).
            w = torch.exp(log_w).clamp(0.0, opts.w_max) * counted
        if quality is not None:
            w = w * (quality.unsqueeze(-1) if per_token else quality)
        if opts.normalize:
            total = w.sum()
            scale = torch.where(total > 0, counted.sum() / total.clamp(min=1e-30), torch.zeros_like(total))
            w = w * scale
    return w


def check_quality(quality: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """``quality``: ``[B]`` floating, non-negative; returned as float32 (or None)."""
    if quality is None:
        return None
    q = check_float_tensor("quality", quality, shape=(batch,)).detach()
    if not bool((q >= 0).all()):
        raise ValueError("quality: scores must be >= 0")
    return q


def iw_sft_weights(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    q_logp: torch.Tensor | None = None,
    temp: float = 1.0,
    w_max: float = 16.0,
    quality: torch.Tensor | None = None,
    normalize: bool = False,
    per_token: bool = False,
    token_clip: tuple[float, float] = (0.2, 1.8),
) -> torch.Tensor:
    """iw-SFT importance weights (float32, detached, ``requires_grad=False``).

    Sequence weights ``[B]`` (``per_token=False``):
    ``w_b = clip(exp(temp * mean_t(sg(q_logp) - ref_logp)), 0, w_max)`` over the row's counted
    tokens, where ``q_logp`` defaults to ``sg(logp)``; then ``w_b *= quality_b`` if given; then,
    if ``normalize``, ``w_b *= n_rows / sum(w)`` (``n_rows`` = rows with a counted token, over
    the rows passed in this call). A row with no counted token gets weight 0.

    Token weights ``[B, T]`` (``per_token=True``):
    ``w_t = clip(exp(temp * (sg(q_logp_t) - ref_logp_t)), *token_clip)`` on counted tokens, 0
    elsewhere; ``quality`` multiplies each row, ``normalize`` rescales to mean 1 over counted tokens.
    """
    opts = make_iw_options(temp, w_max, normalize, token_clip)
    lp = check_float_tensor("logp", logp)
    if lp.dim() != 2:
        raise ValueError(f"logp: expected shape [B, T], got {tuple(lp.shape)}")
    shape = tuple(lp.shape)
    ref = check_float_tensor("ref_logp", ref_logp, shape=shape, like="logp")
    q = lp if q_logp is None else check_float_tensor("q_logp", q_logp, shape=shape, like="logp")
    m = check_mask("mask", mask, shape, like="logp")
    qual = check_quality(quality, shape[0])
    return iw_weights_core(q.detach(), ref, m, opts, quality=qual, per_token=per_token)


def iw_sft_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    q_logp: torch.Tensor | None = None,
    temp: float = 1.0,
    w_max: float = 16.0,
    quality: torch.Tensor | None = None,
    normalize: bool = False,
    per_token: bool = False,
    token_clip: tuple[float, float] = (0.2, 1.8),
    cutoff_prob: float = 1.0,
    agg: str = "token-mean",
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted NLL ``l_t = -w * logp_t`` with the :func:`iw_sft_weights` (``[B, 1]`` or ``[B, T]``).

    Shapes: ``logp``, ``ref_logp``, ``mask`` (and ``q_logp``) ``[B, T]``; ``quality`` ``[B]``.
    Metrics as :func:`chord.losses.sft_loss` (``sft_loss``, ``expert_p_mean``,
    ``sft_weight_mean``, ``sft_weight_max``, ``phi_mean``).
    """
    check_choice("agg", agg, AGG_MODES)
    check_number("cutoff_prob", cutoff_prob, low=0.0, high=1.0, low_open=True)
    weights = iw_sft_weights(
        logp,
        ref_logp,
        mask,
        q_logp=q_logp,
        temp=temp,
        w_max=w_max,
        quality=quality,
        normalize=normalize,
        per_token=per_token,
        token_clip=token_clip,
    )
    m = mask.float()
    weights = weights if per_token else weights.unsqueeze(-1)
    loss, metrics = weighted_nll_core(
        logp.float(), m, weights, cutoff_prob=cutoff_prob, agg=agg, normalizer=normalizer
    )
    return loss, to_floats(metrics)
