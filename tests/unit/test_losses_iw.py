"""chord.losses.iw_sft_weights / iw_sft_loss / sft_loss(weighting='iw*'): hand-computed weights."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import iw_sft_loss, iw_sft_weights, sft_loss

# q_logp - ref_logp on counted tokens (mask below):
# row 0: [0.2, 0.4]      mean 0.3  -> w = e^0.3  = 1.349859
# row 1: [3, 5], pad 100 mean 4    -> e^4 = 54.6 -> clipped to w_max 16
# row 2: [-1, -3]        mean -2   -> w = e^-2   = 0.135335
# row 3: no counted token          -> w = 0
REF = torch.tensor([[-1.0, -1.0, -1.0], [-6.0, -6.0, -101.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
DIFF = torch.tensor([[0.2, 0.4, 0.0], [3.0, 5.0, 100.0], [-1.0, -3.0, 0.0], [0.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
SEQ_W = [math.exp(0.3), 16.0, math.exp(-2.0), 0.0]


def _logp() -> torch.Tensor:
    return (REF + DIFF).requires_grad_(True)


def test_sequence_weights_match_hand_values_and_are_clipped_at_w_max():
    w = iw_sft_weights(_logp(), REF, MASK)
    assert w.shape == (4,)
    assert w.tolist() == pytest.approx(SEQ_W, rel=1e-5)


def test_weights_carry_no_gradient():
    w = iw_sft_weights(_logp(), REF.clone().requires_grad_(True), MASK)
    w_tok = iw_sft_weights(_logp(), REF, MASK, per_token=True)
    assert w.requires_grad is False and w_tok.requires_grad is False


def test_temperature_scales_the_log_weight():
    # temp 0.5: e^0.15, e^2, e^-1
    w = iw_sft_weights(_logp(), REF, MASK, temp=0.5)
    assert w.tolist() == pytest.approx([math.exp(0.15), math.exp(2.0), math.exp(-1.0), 0.0], rel=1e-5)


def test_quality_multiplies_the_weight():
    quality = torch.tensor([1.0, 0.5, 2.0, 1.0])
    w = iw_sft_weights(_logp(), REF, MASK, quality=quality)
    assert w.tolist() == pytest.approx([math.exp(0.3), 8.0, 2 * math.exp(-2.0), 0.0], rel=1e-5)


def test_batch_normalisation_gives_mean_one_over_rows_with_tokens():
    # sum = 1.349859 + 16 + 0.135335 = 17.485194, scale = 3 / 17.485194
    w = iw_sft_weights(_logp(), REF, MASK, normalize=True)
    assert w.tolist() == pytest.approx([0.231600, 2.745180, 0.023220, 0.0], rel=1e-5)


def test_q_logp_replaces_the_current_policy():
    # q = ref + 1 everywhere -> mean diff 1 -> e^1 on rows with tokens
    w = iw_sft_weights(_logp(), REF, MASK, q_logp=REF + 1.0)
    assert w.tolist() == pytest.approx([math.e, math.e, math.e, 0.0], rel=1e-5)


def test_per_token_weights_are_clipped_to_token_clip():
    # exp(diff): [1.2214, 1.4918], [20.1 -> 1.8, 148 -> 1.8], [0.3679, 0.0498 -> 0.2]; padding 0
    w = iw_sft_weights(_logp(), REF, MASK, per_token=True)
    expected = torch.tensor(
        [[math.exp(0.2), math.exp(0.4), 0.0], [1.8, 1.8, 0.0], [math.exp(-1.0), 0.2, 0.0], [0.0, 0.0, 0.0]]
    )
    torch.testing.assert_close(w, expected)


def test_iw_sft_loss_is_weighted_nll_with_row_weights():
    # rows 0..2 have 2 tokens each: loss = -sum_b w_b * (logp_b0 + logp_b1) / 6
    # logp rows: [-0.8, -0.6], [-3, -1], [-2, -4]
    logp = _logp()
    loss, metrics = iw_sft_loss(logp, REF, MASK)
    expected = -(SEQ_W[0] * -1.4 + SEQ_W[1] * -4.0 + SEQ_W[2] * -6.0) / 6
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(grad, -torch.tensor(SEQ_W)[:, None] * MASK / 6)
    assert metrics["sft_weight_max"] == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("weighting", "kwargs", "row_weights"),
    [
        ("iw", {}, SEQ_W),
        (
            "iw_q",
            {"quality": torch.tensor([1.0, 0.5, 2.0, 1.0])},
            [math.exp(0.3), 8.0, 2 * math.exp(-2.0), 0.0],
        ),
    ],
)
def test_sft_loss_iw_weightings_equal_iw_sft_loss(weighting, kwargs, row_weights):
    loss, metrics = sft_loss(_logp(), MASK, weighting=weighting, ref_logp=REF, **kwargs)
    # sft_weight_mean: mean of the row weight over the 6 counted tokens (2 per row)
    assert metrics["sft_weight_mean"] == pytest.approx(sum(row_weights) / 3, rel=1e-5)
    logp_rows = [-1.4, -4.0, -6.0, 0.0]
    expected = -sum(w * s for w, s in zip(row_weights, logp_rows, strict=True)) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_iw_weighting_ignores_quality_and_iw_q_uses_it():
    quality = torch.tensor([0.0, 0.0, 0.0, 0.0])
    loss_iw, _ = sft_loss(_logp(), MASK, weighting="iw", ref_logp=REF, quality=quality)
    loss_q, _ = sft_loss(_logp(), MASK, weighting="iw_q", ref_logp=REF, quality=quality)
    assert loss_iw.item() > 0.0
    assert loss_q.item() == 0.0


def test_iw_token_weighting_uses_per_token_weights():
    logp = _logp()
    loss, _ = sft_loss(logp, MASK, weighting="iw_token", ref_logp=REF)
    (grad,) = torch.autograd.grad(loss, logp)
    expected = iw_sft_weights(logp, REF, MASK, per_token=True)
    torch.testing.assert_close(grad, -expected / 6)


def test_extreme_log_probs_give_finite_weights_and_loss():
    logp = torch.tensor([[-1e4, 0.0], [0.0, -1e4]], requires_grad=True)
    ref = torch.tensor([[0.0, -1e4], [-1e4, -1e4]])
    w = iw_sft_weights(logp, ref, torch.ones(2, 2))
    loss, _ = iw_sft_loss(logp, ref, torch.ones(2, 2))
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(w).all().item() and w.max().item() == 16.0
    assert math.isfinite(loss.item()) and torch.isfinite(grad).all().item()


def test_weight_sums_are_the_raw_sums_and_counts_of_each_weighting():
    from chord.losses.sft import iw_normalize_scale, iw_weight_sums

    # sequence: 1.349859 + 16 + 0.135335 over 3 rows with tokens
    total, count = iw_weight_sums("iw", _logp(), REF, MASK)
    assert (total, count) == (pytest.approx(17.485194, rel=1e-5), 3.0)
    quality = torch.tensor([1.0, 0.5, 2.0, 1.0])
    total_q, _ = iw_weight_sums("iw_q", _logp(), REF, MASK, quality=quality)
    assert total_q == pytest.approx(math.exp(0.3) + 8.0 + 2 * math.exp(-2.0), rel=1e-5)
    # token: clip(e^d, 0.2, 1.8) on the 6 counted tokens: e^0.2, e^0.4, 1.8, 1.8, e^-1, 0.2
    total_t, count_t = iw_weight_sums("iw_token", _logp(), REF, MASK)
    want = math.exp(0.2) + math.exp(0.4) + 1.8 + 1.8 + math.exp(-1.0) + 0.2
    assert (total_t, count_t) == (pytest.approx(want, rel=1e-5), 6.0)
    assert iw_normalize_scale(total, count) == pytest.approx(3 / 17.485194, rel=1e-5)
    assert iw_normalize_scale(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="quality: required for weighting 'iw_q'"):
        iw_weight_sums("iw_q", _logp(), REF, MASK)
    with pytest.raises(ValueError, match="weighting"):
        iw_weight_sums("phi", _logp(), REF, MASK)


def test_global_sums_normalise_split_rows_like_the_whole_batch():
    """Rows split in two calls with the sums of all rows: the weights of one call over all rows."""
    from chord.losses import chord_loss
    from chord.losses.sft import iw_weight_sums

    logp = _logp()
    sums = iw_weight_sums("iw", logp, REF, MASK)
    n = torch.zeros(4)
    adv, is_expert = torch.zeros(4), torch.ones(4, dtype=torch.bool)
    common = dict(mu=1.0, sft_weighting="iw", ref_logp=REF, iw_normalize=True, sft_normalizer=6.0)
    whole, _ = chord_loss(logp, REF, adv, MASK, is_expert, **common)

    def part(rows, **extra):
        kwargs = {**common, "ref_logp": REF[rows], **extra}
        return chord_loss(logp[rows], REF[rows], n[rows], MASK[rows], is_expert[rows], **kwargs)[0]

    parts = [part(rows, iw_sums=sums) for rows in ([0, 1], [2, 3])]
    # hand value: -(w0 * (-0.8 - 0.6) + w1 * (-3 - 1) + w2 * (-2 - 4)) / 6 with the normalised weights
    w = [0.231600, 2.745180, 0.023220]
    hand = -(w[0] * (-0.8 + -0.6) + w[1] * (-3.0 + -1.0) + w[2] * (-2.0 + -4.0)) / 6
    assert whole.item() == pytest.approx(hand, rel=1e-5)
    assert (parts[0] + parts[1]).item() == pytest.approx(hand, rel=1e-5)
    # without the sums each call normalises its own rows: another loss
    local = [part(rows) for rows in ([0, 1], [2, 3])]
    assert (local[0] + local[1]).item() != pytest.approx(hand, rel=1e-3)
