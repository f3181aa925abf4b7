"""chord.losses.aggregate / agg_normalizer: the four modes, the global normaliser, empty masks."""

from __future__ import annotations

import pytest
import torch

from chord.losses import AGG_MODES, agg_normalizer, aggregate

# values             mask
# [[1, 2, 3],        [[1, 1, 0],
#  [4, 5, 6]]         [1, 0, 0]]
# counted: 1, 2 | 4  -> n_tok = 3, n_rows = 2, row sums 3 | 4, row means 1.5 | 4, T = 3
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])

HAND = {
    "token-mean": 7.0 / 3.0,  # (1 + 2 + 4) / 3
    "seq-mean-token-mean": 2.75,  # (1.5 + 4) / 2
    "seq-mean-token-sum": 3.5,  # (3 + 4) / 2
    "seq-mean-token-sum-norm": 7.0 / 6.0,  # 7 / (2 rows * 3)
}

# normalizer 7 for token-mean (7 tokens), 4 rows for the seq-* modes
HAND_WITH_NORMALIZER = {
    "token-mean": (7, 1.0),  # 7 / 7
    "seq-mean-token-mean": (4, 1.375),  # 5.5 / 4
    "seq-mean-token-sum": (4, 1.75),  # 7 / 4
    "seq-mean-token-sum-norm": (4, 7.0 / 12.0),  # 7 / (4 * 3)
}


@pytest.mark.parametrize("mode", sorted(HAND))
def test_aggregate_matches_hand_computed_value(mode):
    assert aggregate(VALUES, MASK, mode).item() == pytest.approx(HAND[mode], rel=1e-6)


@pytest.mark.parametrize("mode", sorted(HAND_WITH_NORMALIZER))
def test_normalizer_replaces_the_denominator_count(mode):
    normalizer, expected = HAND_WITH_NORMALIZER[mode]
    assert aggregate(VALUES, MASK, mode, normalizer=normalizer).item() == pytest.approx(expected, rel=1e-6)
    tensor_norm = torch.tensor(float(normalizer))
    assert aggregate(VALUES, MASK, mode, normalizer=tensor_norm).item() == pytest.approx(expected, rel=1e-6)


def test_seq_mean_token_sum_norm_horizon_overrides_padded_length():
    # 7 / (2 rows * horizon 10)
    assert aggregate(VALUES, MASK, "seq-mean-token-sum-norm", horizon=10).item() == pytest.approx(0.35)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_fully_masked_rows_do_not_count_as_rows(mode):
    values = torch.cat([VALUES, torch.full((1, 3), 100.0)])
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    assert aggregate(values, mask, mode).item() == pytest.approx(HAND[mode], rel=1e-6)


@pytest.mark.parametrize("mode", sorted(HAND))
def test_non_finite_values_on_padding_do_not_leak(mode):
    values = VALUES.clone()
    values[0, 2] = float("inf")
    values[1, 1] = float("nan")
    values.requires_grad_(True)
    out = aggregate(values, MASK, mode)
    (grad,) = torch.autograd.grad(out, values)
    assert out.item() == pytest.approx(HAND[mode], rel=1e-6)
    assert grad[0, 2].item() == 0.0 and grad[1, 1].item() == 0.0


@pytest.mark.parametrize("mode", sorted(HAND))
def test_empty_mask_gives_zero_and_zero_gradient(mode):
    values = torch.randn(2, 3, requires_grad=True)
    out = aggregate(values, torch.zeros(2, 3), mode)
    (grad,) = torch.autograd.grad(out, values)
    assert out.item() == 0.0
    assert torch.equal(grad, torch.zeros(2, 3))


def test_zero_normalizer_with_empty_mask_gives_zero():
    assert aggregate(VALUES, torch.zeros(2, 3), "token-mean", normalizer=0).item() == 0.0


def test_bool_mask_equals_float_mask():
    assert aggregate(VALUES, MASK.bool()).item() == pytest.approx(7.0 / 3.0)


def test_agg_normalizer_counts_tokens_or_nonempty_rows():
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    assert agg_normalizer(mask, "token-mean").item() == 3.0
    assert agg_normalizer(mask, "seq-mean-token-mean").item() == 2.0
    assert agg_normalizer(mask, "seq-mean-token-sum-norm").item() == 2.0


def test_aggregate_returns_float32_for_bfloat16_values():
    out = aggregate(VALUES.bfloat16(), MASK)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(7.0 / 3.0, rel=1e-6)


def _ragged_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(7, 6, generator=gen)
    lengths = torch.tensor([6, 1, 3, 0, 5, 2, 4])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).float()
    return values, mask


@pytest.mark.parametrize("mode", sorted(AGG_MODES))
def test_micro_batches_with_global_normalizer_sum_to_full_batch_value_and_gradient(mode):
    values, mask = _ragged_batch()
    values.requires_grad_(True)
    full = aggregate(values, mask, mode)
    (full_grad,) = torch.autograd.grad(full, values)

    splits = [(0, 2), (2, 3), (3, 7)]
    normalizer = sum(agg_normalizer(mask[a:b], mode) for a, b in splits)
    total = sum(aggregate(values[a:b], mask[a:b], mode, normalizer=normalizer) for a, b in splits)
    (split_grad,) = torch.autograd.grad(total, values)

    torch.testing.assert_close(total, full)
    torch.testing.assert_close(split_grad, full_grad)
    assert full.item() != 0.0
