"""PPO / GRPO clipped surrogate with dual clip (on-policy rows)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chord.losses._common import LOG_RATIO_CLAMP, masked_mean, to_floats, zero_masked
from chord.losses.aggregation import AGG_MODES, Normalizer, aggregate_checked
from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number

__all__ = ["ClipConfig", "SurrogateTerms", "clipped_surrogate", "policy_loss"]


@dataclass(frozen=True)
class ClipConfig:
    """Clip ranges of the surrogate: ratio in ``[1 - clip_low, 1 + clip_high]``, dual clip ``clip_c``."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_c: float = 3.0

    def __post_init__(self) -> None:
        check_number("clip_low", self.clip_low, low=0.0, high=1.0, high_open=True)
        check_number("clip_high", self.clip_high, low=0.0)
        check_number("clip_c", self.clip_c, low=1.0, low_open=True)


@dataclass(frozen=True)
class SurrogateTerms:
    """Per-token pieces of the surrogate, all ``[B, T]``."""

    loss: torch.Tensor  # per-token loss (with grad)
    clipped: torch.Tensor  # bool: the clipped branch was taken
    dual_clipped: torch.Tensor  # bool: A < 0 and the dual-clip floor -A * c was taken
    log_ratio: torch.Tensor  # clamped logp - old_logp (0 on uncounted tokens)


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, m: torch.Tensor, clip: ClipConfig
) -> SurrogateTerms:
    """Per-token clipped surrogate on validated float32 inputs (``adv`` already ``[B, T]``).

    ``ratio = exp(clamp(logp - old_logp, -20, 20))``,
    ``l = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))``,
    and for ``A < 0``: ``l = min(l, -A * clip_c)``.
    Uncounted tokens use ratio 1 and A 0, so garbage there cannot reach the gradient.
    """
    log_ratio = zero_masked(logp - old_logp, m).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    adv = zero_masked(adv, m)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip.clip_low, 1.0 + clip.clip_high)
    loss = torch.maximum(unclipped, clipped)
    floor = -adv * clip.clip_c
    negative = adv < 0
    dual_clipped = negative & (loss > floor)
    loss = torch.where(negative, torch.minimum(loss, floor), loss)
    return SurrogateTerms(
        loss=loss, clipped=clipped > unclipped, dual_clipped=dual_clipped, log_ratio=log_ratio
    )


def surrogate_metrics(terms: SurrogateTerms, m: torch.Tensor) -> dict[str, torch.Tensor]:
    """``pg_clipfrac``, ``pg_clipfrac_lower`` and ``ppo_kl = mean(old_logp - logp)`` over counted tokens."""
    return {
        "pg_clipfrac": masked_mean(terms.clipped.float(), m),
        "pg_clipfrac_lower": masked_mean(terms.dual_clipped.float(), m),
        "ppo_kl": masked_mean(-terms.log_ratio, m),
    }


def broadcast_advantages(adv: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``[B]`` -> ``[B, 1]`` (broadcasts over tokens); ``[B, T]`` unchanged."""
    return adv.unsqueeze(-1).expand(shape) if adv.dim() == 1 else adv


def policy_core(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    m: torch.Tensor,
    clip: ClipConfig,
    agg: str,
    normalizer: Normalizer,
    normalizer_name: str = "normalizer",
    horizon: int | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`policy_loss` on validated float32 inputs; metrics stay tensors.

    ``token_weights`` (detached ``[B, T]``, e.g. verl's rollout-correction IS weights) multiply
    the per-token surrogate before aggregation, as verl's vanilla policy loss does; the clip
    fractions are of the unweighted surrogate.
    """
    terms = clipped_surrogate(logp, old_logp, broadcast_advantages(adv, tuple(logp.shape)), m, clip)
    per_token = terms.loss if token_weights is None else terms.loss * token_weights
    loss = aggregate_checked(per_token, m, agg, normalizer, horizon=horizon, normalizer_name=normalizer_name)
    return loss, {"pg_loss": loss.detach(), **surrogate_metrics(terms, m)}


def check_policy_inputs(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate, cast to float32: logp, old_logp, mask ``[B, T]``; advantages ``[B]`` or ``[B, T]``."""
    lp = check_float_tensor("logp", logp)
    if lp.dim() != 2:
        raise ValueError(f"logp: expected shape [B, T], got {tuple(lp.shape)}")
    shape = tuple(lp.shape)
    old = check_float_tensor("old_logp", old_logp, shape=shape, like="logp").detach()
    adv = check_float_tensor("advantages", advantages, shapes=[shape[:1], shape], like="logp").detach()
    m = check_mask("mask", mask, shape, like="logp")
    return lp, old, adv, m


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    agg: str = "token-mean",
    normalizer: Normalizer = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO/PPO clipped surrogate with dual clip, aggregated with ``agg``.

    Shapes: ``logp``, ``old_logp``, ``mask`` ``[B, T]``; ``advantages`` ``[B]`` or ``[B, T]``.
    Per token (see :func:`clipped_surrogate`):
    ``l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``, ``l = min(l, -A clip_c)`` if ``A < 0``.
    Returns the float32 loss and metrics ``pg_loss``, ``pg_clipfrac``, ``pg_clipfrac_lower``
    (fraction of tokens where the dual clip bound), ``ppo_kl`` (token mean of
    ``old_logp - logp``; the fractions and ``ppo_kl`` are over this call's counted tokens).
    """
    clip = ClipConfig(clip_low, clip_high, clip_c)
    check_choice("agg", agg, AGG_MODES)
    lp, old, adv, m = check_policy_inputs(logp, old_logp, advantages, mask)
    loss, metrics = policy_core(lp, old, adv, m, clip, agg, normalizer)
    return loss, to_floats(metrics)
