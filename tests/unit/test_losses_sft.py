"""chord.losses.sft_loss: NLL, phi, DFT weightings, cutoff_prob, metrics, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import sft_loss

# p = [[0.5, 0.9, 0.1], [1.0, 0.2, (pad)]], mask [[1, 1, 1], [1, 1, 0]] -> 5 counted tokens
# -log p        = 0.693147, 0.105361, 2.302585, 0, 1.609438   (sum 4.710531)
# phi = p(1-p)  = 0.25,     0.09,     0.09,     0, 0.16       (mean 0.118)
# dft = p       = 0.5,      0.9,      0.1,      1, 0.2        (mean 0.54)
# nll  loss = 4.710531 / 5                                            = 0.942106
# phi  loss = (0.173287 + 0.009482 + 0.207233 + 0 + 0.257510) / 5     = 0.129502
# dft  loss = (0.346574 + 0.094825 + 0.230259 + 0 + 0.321888) / 5     = 0.198709
P = torch.tensor([[0.5, 0.9, 0.1], [1.0, 0.2, 0.3]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
HAND = {
    "nll": (0.942106, 1.0),
    "phi": (0.129502, 0.118),
    "dft": (0.198709, 0.54),
}


def _logp() -> torch.Tensor:
    return P.log().requires_grad_(True)


@pytest.mark.parametrize("weighting", sorted(HAND))
def test_sft_loss_matches_hand_computed_value_and_metrics(weighting):
    loss, metrics = sft_loss(_logp(), MASK, weighting=weighting)
    expected_loss, expected_weight_mean = HAND[weighting]
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["sft_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["sft_weight_mean"] == pytest.approx(expected_weight_mean, rel=1e-5)
    assert metrics["expert_p_mean"] == pytest.approx(0.54, rel=1e-5)
    assert metrics["phi_mean"] == pytest.approx(0.118, rel=1e-5)


def test_phi_weight_is_zero_at_p_zero_and_p_one():
    logp = torch.tensor([[0.0, -1e4]], requires_grad=True)  # p = 1 and p = 0 (underflows)
    loss, metrics = sft_loss(logp, torch.ones(1, 2), weighting="phi")
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == 0.0
    assert torch.equal(grad, torch.zeros(1, 2))
    assert metrics["sft_weight_mean"] == 0.0 and metrics["phi_mean"] == 0.0


def test_phi_weight_carries_no_gradient():
    # d/dlogp of -sg(w) * logp / n is -sg(w) / n: no d(phi)/dlogp term
    logp = _logp()
    loss, _ = sft_loss(logp, MASK, weighting="phi")
    (grad,) = torch.autograd.grad(loss, logp)
    expected = -torch.tensor([[0.25, 0.09, 0.09], [0.0, 0.16, 0.0]]) / 5
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_dft_weight_carries_no_gradient():
    logp = _logp()
    loss, _ = sft_loss(logp, MASK, weighting="dft")
    (grad,) = torch.autograd.grad(loss, logp)
    expected = -torch.tensor([[0.5, 0.9, 0.1], [1.0, 0.2, 0.0]]) / 5
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_cutoff_clamps_only_the_log_factor_and_stops_confident_tokens():
    # cutoff 0.6: tokens with p = 0.9 and p = 1.0 use log(0.6) instead of log p, phi unchanged:
    # (0.25*0.693147 + 0.09*0.510826 + 0.09*2.302585 + 0*0.510826 + 0.16*1.609438) / 5 = 0.136801
    logp = _logp()
    loss, metrics = sft_loss(logp, MASK, weighting="phi", cutoff_prob=0.6)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(0.136801, rel=1e-5)
    expected = -torch.tensor([[0.25, 0.0, 0.09], [0.0, 0.16, 0.0]]) / 5
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    assert metrics["phi_mean"] == pytest.approx(0.118, rel=1e-5)


def test_nll_gradient_is_minus_one_over_token_count():
    logp = _logp()
    loss, _ = sft_loss(logp, MASK, weighting="nll")
    (grad,) = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(grad, -MASK / 5)


@pytest.mark.parametrize("weighting", sorted(HAND))
def test_extreme_log_probs_stay_finite(weighting):
    logp = torch.tensor([[-1e4, 0.0, -3.0]], requires_grad=True)
    loss, metrics = sft_loss(logp, torch.ones(1, 3), weighting=weighting, cutoff_prob=0.9)
    (grad,) = torch.autograd.grad(loss, logp)
    assert math.isfinite(loss.item())
    assert torch.isfinite(grad).all().item()
    assert all(math.isfinite(v) for v in metrics.values())


def test_empty_mask_gives_zero_loss_and_metrics():
    loss, metrics = sft_loss(_logp(), torch.zeros(2, 3), weighting="phi")
    assert loss.item() == 0.0
    assert metrics["expert_p_mean"] == 0.0 and metrics["sft_weight_mean"] == 0.0


@pytest.mark.parametrize("weighting", sorted(HAND))
def test_bfloat16_inputs_give_float32_loss(weighting):
    logp16 = P.log().bfloat16().requires_grad_(True)
    loss, _ = sft_loss(logp16, MASK.bool(), weighting=weighting)
    expected, _ = sft_loss(logp16.detach().float(), MASK, weighting=weighting)
    (grad,) = torch.autograd.grad(loss, logp16)
    assert loss.dtype == torch.float32
    assert loss.item() == expected.item()
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad.float()).all().item()
