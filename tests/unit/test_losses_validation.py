"""Bad inputs to chord.losses raise ValueError naming the offending argument."""

from __future__ import annotations

import pytest
import torch

from chord.losses import (
    agg_normalizer,
    aggregate,
    chord_loss,
    iw_sft_loss,
    iw_sft_weights,
    luffy_loss,
    policy_loss,
    sft_loss,
)

B, T = 2, 3
LOGP = -torch.rand(B, T)
OLD = -torch.rand(B, T)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.ones(B, T)
EXPERT = torch.tensor([False, True])


def _chord(**overrides):
    args = {"logp": LOGP, "old_logp": OLD, "advantages": ADV, "mask": MASK, "is_expert": EXPERT, "mu": 0.5}
    args.update(overrides)
    return chord_loss(**args)


CASES = [
    pytest.param(
        lambda: policy_loss(LOGP, OLD, ADV, MASK.long()),
        r"^mask: expected bool or floating dtype, got torch\.int64",
        id="int mask",
    ),
    pytest.param(lambda: sft_loss(LOGP, MASK * 2), r"^mask: values must be 0 or 1", id="mask value 2"),
    pytest.param(
        lambda: policy_loss(LOGP, OLD, ADV, torch.ones(B, T + 1)), r"^mask: expected shape", id="mask shape"
    ),
    pytest.param(
        lambda: policy_loss(LOGP, OLD[:, :2], ADV, MASK), r"^old_logp: expected shape", id="old_logp shape"
    ),
    pytest.param(
        lambda: policy_loss(LOGP, OLD, torch.ones(3), MASK),
        r"^advantages: expected shape",
        id="advantages shape",
    ),
    pytest.param(
        lambda: sft_loss(torch.zeros(B, T, dtype=torch.long), MASK),
        r"^logp: expected a floating",
        id="int logp",
    ),
    pytest.param(
        lambda: sft_loss(torch.zeros(T), torch.ones(T)), r"^logp: expected shape \[B, T\]", id="1-d logp"
    ),
    pytest.param(lambda: _chord(mu=1.5), r"^mu: must be in \[0\.0, 1\.0\]", id="mu > 1"),
    pytest.param(lambda: _chord(mu=-0.1), r"^mu:", id="mu < 0"),
    pytest.param(lambda: _chord(mu=float("nan")), r"^mu:", id="mu nan"),
    pytest.param(
        lambda: _chord(is_expert=torch.tensor([True])), r"^is_expert: expected shape", id="is_expert shape"
    ),
    pytest.param(lambda: _chord(is_expert=torch.tensor([0.0, 2.0])), r"^is_expert:", id="is_expert values"),
    pytest.param(
        lambda: policy_loss(LOGP, OLD, ADV, MASK, agg="token-sum"),
        r"^agg: unknown value 'token-sum'",
        id="unknown agg",
    ),
    pytest.param(lambda: aggregate(LOGP, MASK, "mean"), r"^mode: unknown value 'mean'", id="unknown mode"),
    pytest.param(lambda: agg_normalizer(MASK, "mean"), r"^mode:", id="unknown mode count"),
    pytest.param(
        lambda: sft_loss(LOGP, MASK, weighting="sft"),
        r"^weighting: unknown value 'sft'",
        id="unknown weighting",
    ),
    pytest.param(
        lambda: _chord(sft_weighting="foo"),
        r"^sft_weighting: unknown value 'foo'",
        id="unknown sft_weighting",
    ),
    pytest.param(
        lambda: sft_loss(LOGP, MASK, weighting="iw"),
        r"^ref_logp: required for weighting 'iw'",
        id="iw without ref",
    ),
    pytest.param(
        lambda: _chord(sft_weighting="iw_token"),
        r"^ref_logp: required for sft_weighting",
        id="chord iw without ref",
    ),
    pytest.param(
        lambda: _chord(sft_weighting="iw_q", ref_logp=OLD),
        r"^quality: required for sft_weighting 'iw_q'",
        id="iw_q without quality",
    ),
    pytest.param(
        lambda: iw_sft_weights(LOGP, OLD, MASK, quality=torch.tensor([1.0, -1.0])),
        r"^quality: scores must be >= 0",
        id="negative quality",
    ),
    pytest.param(
        lambda: iw_sft_loss(LOGP, OLD, MASK, quality=torch.ones(3)),
        r"^quality: expected shape",
        id="quality shape",
    ),
    pytest.param(
        lambda: iw_sft_weights(LOGP, OLD[:1], MASK), r"^ref_logp: expected shape", id="ref_logp shape"
    ),
    pytest.param(
        lambda: iw_sft_weights(LOGP, OLD, MASK, q_logp=OLD[:1]), r"^q_logp: expected shape", id="q_logp shape"
    ),
    pytest.param(lambda: iw_sft_weights(LOGP, OLD, MASK, w_max=0.0), r"^w_max:", id="w_max 0"),
    pytest.param(
        lambda: _chord(sft_weighting="iw", ref_logp=OLD, iw_w_max=0.0), r"^iw_w_max:", id="iw_w_max 0"
    ),
    pytest.param(
        lambda: iw_sft_weights(LOGP, OLD, MASK, per_token=True, token_clip=(1.5, 0.5)),
        r"^token_clip:",
        id="token_clip",
    ),
    pytest.param(lambda: sft_loss(LOGP, MASK, cutoff_prob=0.0), r"^cutoff_prob:", id="cutoff 0"),
    pytest.param(lambda: policy_loss(LOGP, OLD, ADV, MASK, clip_c=1.0), r"^clip_c:", id="clip_c <= 1"),
    pytest.param(lambda: policy_loss(LOGP, OLD, ADV, MASK, clip_low=1.0), r"^clip_low:", id="clip_low >= 1"),
    pytest.param(lambda: aggregate(LOGP, MASK, normalizer=-1), r"^normalizer:", id="negative normalizer"),
    pytest.param(lambda: _chord(pg_normalizer=-3), r"^pg_normalizer:", id="negative pg_normalizer"),
    pytest.param(lambda: _chord(sft_normalizer="many"), r"^sft_normalizer:", id="bad sft_normalizer"),
    pytest.param(lambda: luffy_loss(LOGP, OLD, ADV, MASK, EXPERT, gamma=0.0), r"^gamma:", id="gamma 0"),
    pytest.param(
        lambda: aggregate(LOGP, MASK, "seq-mean-token-sum-norm", horizon=0), r"^horizon:", id="horizon 0"
    ),
]


@pytest.mark.parametrize(("call", "pattern"), CASES)
def test_bad_input_raises_value_error_naming_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_bool_and_float_masks_are_accepted_and_agree():
    bool_loss, _ = policy_loss(LOGP, OLD, ADV, MASK.bool())
    float_loss, _ = policy_loss(LOGP, OLD, ADV, MASK.double())
    assert bool_loss.item() == pytest.approx(float_loss.item())
