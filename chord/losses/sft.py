"""SFT losses on expert rows: one weighted NLL, and the weightings that select the variant.

``l_t = -w_t * min(logp_t, log c)`` with a detached weight ``w``: ``nll`` (1), ``phi``
(CHORD, ``p (1 - p)``), ``dft`` (``p``), and iw-SFT (arXiv 2507.12856): sequence weights
``iw`` / ``iw_q`` (times a quality score) and token weights ``iw_token``.
Public functions validate their inputs; the ``*_core`` helpers trust already validated ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from chord.losses._common import LOG_RATIO_CLAMP, masked_max, masked_mean, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number

__all__ = [
    "SFT_WEIGHTINGS",
    "IW_WEIGHTINGS",
    "IwOptions",
    "SftInputs",
    "SftWeighting",
    "check_sft_inputs",
    "iw_sft_loss",
    "iw_normalize_scale",
    "iw_sft_weights",
    "iw_weight_sums",
    "iw_weights_core",
    "make_iw_options",
    "sft_core",
    "sft_loss",
    "weighted_nll_core",
]

# --------------------------------------------------------------------------- weighted NLL


def weighted_nll_core(
    logp: torch.Tensor,
    m: torch.Tensor,
    weight: torch.Tensor,
    *,
    cutoff_prob: float,
    agg: str,
    normalizer: Normalizer,
    normalizer_name: str = "normalizer",
    horizon: int | None = None,
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
    loss = aggregate_checked(
        -weight * log_factor, m, agg, normalizer, horizon=horizon, normalizer_name=normalizer_name
    )
    p = torch.exp(logp.detach())
    metrics = {
        "sft_loss": loss.detach(),
        "expert_p_mean": masked_mean(p, m),
        "sft_weight_mean": masked_mean(weight, m),
        "sft_weight_max": masked_max(weight, m),
        "phi_mean": masked_mean(p * (1.0 - p), m),
    }
    return loss, metrics


# --------------------------------------------------------------------------- iw-SFT weights


@dataclass(frozen=True)
class IwOptions:
    """iw-SFT knobs: ``temp``, ``w_max`` (sequence clip), ``normalize`` (batch mean 1), ``token_clip``.

    ``scale``, when set, replaces the normalisation over the rows at hand: ``w <- w * scale``
    with ``scale = count / sum(w)`` taken over a larger batch (:func:`iw_normalize_scale` of the
    :func:`iw_weight_sums` summed over every micro-batch and rank of a mini-batch).
    """

    temp: float = 1.0
    w_max: float = 16.0
    normalize: bool = False
    token_clip: tuple[float, float] = (0.2, 1.8)
    scale: float | None = None


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
        if opts.scale is not None:
            w = w * opts.scale
        elif opts.normalize:
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


# iw weightings: whether the weights are per token (else one per row) and whether quality enters.
IW_WEIGHTINGS: dict[str, tuple[bool, bool]] = {
    "iw": (False, False),
    "iw_q": (False, True),
    "iw_token": (True, False),
}


def iw_weight_sums(
    weighting: str,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    quality: torch.Tensor | None = None,
    temp: float = 1.0,
    w_max: float = 16.0,
    token_clip: tuple[float, float] = (0.2, 1.8),
) -> tuple[float, float]:
    """``(sum of the raw weights, count)`` of an iw ``weighting`` over ``mask`` (no normalisation).

    ``count`` is the number of rows with a counted token (``iw``, ``iw_q``) or of counted tokens
    (``iw_token``). Summed over all the rows a normalisation should cover, ``count / sum`` is the
    ``scale`` that gives them mean weight 1 (:func:`iw_normalize_scale`). ``logp`` plays the
    part of ``sg(q_logp)``. Shapes: ``logp``, ``ref_logp``, ``mask`` ``[B, T]``; ``quality`` ``[B]``.
    """
    check_choice("weighting", weighting, IW_WEIGHTINGS)
    per_token, uses_quality = IW_WEIGHTINGS[weighting]
    opts = make_iw_options(temp, w_max, False, token_clip)
    lp = check_float_tensor("logp", logp)
    if lp.dim() != 2:
        raise ValueError(f"logp: expected shape [B, T], got {tuple(lp.shape)}")
    shape = tuple(lp.shape)
    ref = check_float_tensor("ref_logp", ref_logp, shape=shape, like="logp")
    m = check_mask("mask", mask, shape, like="logp")
    qual = check_quality(quality, shape[0]) if uses_quality else None
    if uses_quality and qual is None:
        raise ValueError(f"quality: required for weighting {weighting!r}")
    w = iw_weights_core(lp.detach(), ref, m, opts, quality=qual, per_token=per_token)
    count = m.sum() if per_token else (m.sum(-1) > 0).sum()
    return float(w.sum()), float(count)


def iw_normalize_scale(weight_sum: float, count: float) -> float:
    """``count / weight_sum``: rescales weights summing to ``weight_sum`` to mean 1 (0 if the sum is 0)."""
    check_number("weight_sum", weight_sum, low=0.0)
    check_number("count", count, low=0.0)
    return float(count) / float(weight_sum) if weight_sum > 0 else 0.0


# --------------------------------------------------------------------------- weightings by name


@dataclass(frozen=True)
class SftInputs:
    """Validated float32 inputs of an SFT weighting; ``[B, T]`` unless noted."""

    logp: torch.Tensor  # with grad
    mask: torch.Tensor  # 0/1 float
    ref_logp: torch.Tensor | None = None
    q_logp: torch.Tensor | None = None  # detached; None -> sg(logp)
    quality: torch.Tensor | None = None  # [B]
    iw: IwOptions = IwOptions()

    def q(self) -> torch.Tensor:
        return (self.logp if self.q_logp is None else self.q_logp).detach()


@dataclass(frozen=True)
class SftWeighting:
    """A weight function (returns a detached tensor broadcastable to ``[B, T]``) and the inputs it needs."""

    weight: Callable[[SftInputs], torch.Tensor]
    needs: tuple[str, ...] = ()


def _nll(x: SftInputs) -> torch.Tensor:
    """``w = 1``."""
    return torch.ones_like(x.logp)


def _phi(x: SftInputs) -> torch.Tensor:
    """CHORD-phi: ``w = sg(p (1 - p))``, 0 at p = 0 and p = 1, largest at p = 0.5."""
    p = torch.exp(x.logp.detach())
    return p * (1.0 - p)


def _dft(x: SftInputs) -> torch.Tensor:
    """DFT / SFT-IS: ``w = sg(p)``."""
    return torch.exp(x.logp.detach())


def _iw(x: SftInputs) -> torch.Tensor:
    """iw-SFT sequence weights ``[B, 1]`` (no quality)."""
    return iw_weights_core(x.q(), x.ref_logp, x.mask, x.iw).unsqueeze(-1)


def _iw_q(x: SftInputs) -> torch.Tensor:
    """iw-SFT(Q): sequence weights times the row's quality score, ``[B, 1]``."""
    return iw_weights_core(x.q(), x.ref_logp, x.mask, x.iw, quality=x.quality).unsqueeze(-1)


def _iw_token(x: SftInputs) -> torch.Tensor:
    """iw-SFT step: per-token weights ``clip(exp(sg(q_t) - ref_t), *token_clip)``, ``[B, T]``."""
    return iw_weights_core(x.q(), x.ref_logp, x.mask, x.iw, per_token=True)


SFT_WEIGHTINGS: dict[str, SftWeighting] = {
    "nll": SftWeighting(_nll),
    "phi": SftWeighting(_phi),
    "dft": SftWeighting(_dft),
    "iw": SftWeighting(_iw, needs=("ref_logp",)),
    "iw_q": SftWeighting(_iw_q, needs=("ref_logp", "quality")),
    "iw_token": SftWeighting(_iw_token, needs=("ref_logp",)),
}


def check_sft_inputs(
    weighting: str,
    logp: torch.Tensor,
    m: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None,
    q_logp: torch.Tensor | None,
    quality: torch.Tensor | None,
    iw: IwOptions,
    weighting_name: str = "weighting",
) -> SftInputs:
    """Validate the optional inputs against ``logp [B, T]`` and what ``weighting`` needs."""
    check_choice(weighting_name, weighting, SFT_WEIGHTINGS)
    shape = tuple(logp.shape)
    given = {"ref_logp": ref_logp, "quality": quality}
    for name in SFT_WEIGHTINGS[weighting].needs:
        if given[name] is None:
            raise ValueError(f"{name}: required for {weighting_name} {weighting!r}")
    ref = None if ref_logp is None else check_float_tensor("ref_logp", ref_logp, shape=shape, like="logp")
    q = None if q_logp is None else check_float_tensor("q_logp", q_logp, shape=shape, like="logp").detach()
    return SftInputs(logp, m, ref, q, check_quality(quality, shape[0]), iw)


def sft_core(
    x: SftInputs,
    weighting: str,
    *,
    cutoff_prob: float,
    agg: str,
    normalizer: Normalizer,
    normalizer_name: str = "normalizer",
    horizon: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`sft_loss` on validated inputs; metrics stay tensors."""
    weight = SFT_WEIGHTINGS[weighting].weight(x)
    return weighted_nll_core(
        x.logp,
        x.mask,
        weight,
        cutoff_prob=cutoff_prob,
        agg=agg,
        normalizer=normalizer,
        normalizer_name=normalizer_name,
        horizon=horizon,
    )


def sft_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    weighting: str = "nll",
    cutoff_prob: float = 1.0,
    agg: str = "token-mean",
    normalizer: Normalizer = None,
    ref_logp: torch.Tensor | None = None,
    q_logp: torch.Tensor | None = None,
    quality: torch.Tensor | None = None,
    iw_temp: float = 1.0,
    iw_w_max: float = 16.0,
    iw_normalize: bool = False,
    iw_token_clip: tuple[float, float] = (0.2, 1.8),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted NLL on expert tokens: ``l_t = -w_t * min(logp_t, log cutoff_prob)``.

    ``weighting`` (registry :data:`SFT_WEIGHTINGS`): ``nll`` (w = 1), ``phi``
    (``sg(p (1 - p))``), ``dft`` (``sg(p)``), ``iw`` / ``iw_q`` / ``iw_token`` (iw-SFT weights of
    :func:`chord.losses.iw_sft_weights`; need ``ref_logp``, ``iw_q`` also ``quality``, which the
    other weightings ignore). Weights are always computed from the unclamped p and carry no
    gradient; ``cutoff_prob`` < 1 clamps only the log factor. Shapes: ``logp``, ``mask``,
    ``ref_logp``, ``q_logp`` ``[B, T]``; ``quality`` ``[B]``.
    Metrics: ``sft_loss``, ``expert_p_mean``, ``sft_weight_mean``, ``sft_weight_max``, ``phi_mean``.
    """
    check_choice("agg", agg, AGG_MODES)
    check_number("cutoff_prob", cutoff_prob, low=0.0, high=1.0, low_open=True)
    iw = make_iw_options(iw_temp, iw_w_max, iw_normalize, iw_token_clip, prefix="iw_")
    lp = check_float_tensor("logp", logp)
    if lp.dim() != 2:
        raise ValueError(f"logp: expected shape [B, T], got {tuple(lp.shape)}")
    m = check_mask("mask", mask, tuple(lp.shape), like="logp")
    x = check_sft_inputs(weighting, lp, m, ref_logp=ref_logp, q_logp=q_logp, quality=quality, iw=iw)
    loss, metrics = sft_core(x, weighting, cutoff_prob=cutoff_prob, agg=agg, normalizer=normalizer)
    return loss, to_floats(metrics)
