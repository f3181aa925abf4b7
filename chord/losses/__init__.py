"""CHORD losses in plain torch (no Ray, no verl), one module per family of formulas:
`aggregation` (loss_agg_mode), `policy` (GRPO/PPO surrogate), `sft` (weighted NLL: nll, phi,
dft, iw-SFT), `combined` (CHORD and LUFFY objectives over mixed batches), `prefix` (UFT /
TRAPO: GRPO on generated tokens, an SFT term on expert-prefix tokens).

All loss functions take ``[B, T]`` tensors, compute in float32 and return
``(scalar float32 loss, metrics: dict[str, float])``.
"""

from chord.losses.aggregation import AGG_MODES, agg_normalizer, aggregate
from chord.losses.combined import chord_loss, chord_normalizers, luffy_loss
from chord.losses.policy import policy_loss
from chord.losses.prefix import PREFIX_WEIGHTINGS, prefix_loss
from chord.losses.sft import SFT_WEIGHTINGS, iw_sft_loss, iw_sft_weights, sft_loss

__all__ = [
    "AGG_MODES",
    "PREFIX_WEIGHTINGS",
    "SFT_WEIGHTINGS",
    "agg_normalizer",
    "aggregate",
    "chord_loss",
    "chord_normalizers",
    "iw_sft_loss",
    "iw_sft_weights",
    "luffy_loss",
    "policy_loss",
    "prefix_loss",
    "sft_loss",
]
