"""SFT losses on expert rows: plain NLL and its weighted variants, selected by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from chord.losses._common import to_floats
from chord.losses.aggregation import AGG_MODES, Normalizer
from chord.losses.iw import IwOptions, check_quality, iw_weights_core, make_iw_options
from chord.losses.weighted_nll import weighted_nll_core
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number

__all__ = ["SFT_WEIGHTINGS", "SftInputs", "SftWeighting", "check_sft_inputs", "sft_core", "sft_loss"]


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
