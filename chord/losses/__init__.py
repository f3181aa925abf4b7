"""CHORD losses in plain torch (no Ray, no verl): aggregation, GRPO surrogate, SFT variants,
iw-SFT, the combined CHORD objective and the LUFFY baseline.

All loss functions take ``[B, T]`` tensors, compute in float32 and return
``(scalar float32 loss, metrics: dict[str, float])``.
"""

from chord.losses.aggregation import AGG_MODES, agg_normalizer, aggregate
from chord.losses.combined import chord_loss, chord_normalizers
from chord.losses.iw import iw_sft_loss, iw_sft_weights
from chord.losses.luffy import luffy_loss
from chord.losses.policy import policy_loss
from chord.losses.sft import SFT_WEIGHTINGS, sft_loss

__all__ = [
    "AGG_MODES",
    "SFT_WEIGHTINGS",
    "agg_normalizer",
    "aggregate",
    "chord_loss",
    "chord_normalizers",
    "iw_sft_loss",
    "iw_sft_weights",
    "luffy_loss",
    "policy_loss",
    "sft_loss",
]
