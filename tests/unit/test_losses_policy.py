"""chord.losses.policy_loss: clipped surrogate with dual clip, on a hand-computed 2x3 case."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import policy_loss

# Hand-computed case (clip 0.2 / 0.2, dual clip c = 3), old_logp = -1, logp = -1 + log(ratio):
# row 0, A = +1, ratios [1.0, 1.5, 0.5]:
#   r=1.0: max(-1, -1)        = -1     grad -A*r = -1
#   r=1.5: max(-1.5, -1.2)    = -1.2   clipped, grad 0
#   r=0.5: max(-0.5, -0.8)    = -0.5   grad -0.5
# row 1, A = -1, ratios [0.5, 1.5, 5.0]:
#   r=0.5: max(0.5, 0.8)=0.8, min(0.8, 3) = 0.8  clipped, grad 0
#   r=1.5: max(1.5, 1.2)=1.5, min(1.5, 3) = 1.5  grad +1.5
#   r=5.0: max(5, 1.2)=5,     min(5, 3)   = 3    dual clip, grad 0
# token-mean: (-1 - 1.2 - 0.5 + 0.8 + 1.5 + 3) / 6 = 2.6 / 6
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [0.5, 1.5, 5.0]])
ADV = torch.tensor([1.0, -1.0])
OLD = torch.full((2, 3), -1.0)
MASK = torch.ones(2, 3)


def _logp() -> torch.Tensor:
    return (OLD + RATIOS.log()).requires_grad_(True)


def test_policy_loss_matches_hand_computed_value_and_metrics():
    loss, metrics = policy_loss(_logp(), OLD, ADV, MASK)
    assert loss.item() == pytest.approx(2.6 / 6, rel=1e-5)
    assert metrics["pg_loss"] == pytest.approx(2.6 / 6, rel=1e-5)
    assert metrics["pg_clipfrac"] == pytest.approx(2 / 6)
    assert metrics["pg_clipfrac_lower"] == pytest.approx(1 / 6)
    # ppo_kl = mean(old - logp) = -ln(1 * 1.5 * 0.5 * 0.5 * 1.5 * 5) / 6 = -ln(2.8125) / 6
    assert metrics["ppo_kl"] == pytest.approx(-math.log(2.8125) / 6, rel=1e-5)


def test_policy_loss_gradient_is_zero_on_clipped_tokens():
    logp = _logp()
    loss, _ = policy_loss(logp, OLD, ADV, MASK)
    (grad,) = torch.autograd.grad(loss, logp)
    expected = torch.tensor([[-1.0, 0.0, -0.5], [0.0, 1.5, 0.0]]) / 6
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_token_level_advantages_equal_row_advantages_broadcast():
    loss_rows, _ = policy_loss(_logp(), OLD, ADV, MASK)
    loss_tokens, _ = policy_loss(_logp(), OLD, ADV[:, None].expand(2, 3).clone(), MASK)
    assert loss_tokens.item() == pytest.approx(loss_rows.item())


def test_masked_tokens_are_ignored_even_when_non_finite():
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    old = OLD.clone()
    old[1] = float("nan")
    logp = _logp()
    loss, metrics = policy_loss(logp, old, ADV, mask)
    (grad,) = torch.autograd.grad(loss, logp)
    # row 0 only: (-1 - 1.2 - 0.5) / 3
    assert loss.item() == pytest.approx(-2.7 / 3, rel=1e-5)
    assert torch.isfinite(grad).all().item()
    assert metrics["pg_clipfrac"] == pytest.approx(1 / 3)


def test_clip_high_widens_the_upper_clip_range():
    # with clip_high = 0.6 the r=1.5 token of row 0 is no longer clipped: -1.5 instead of -1.2
    loss, _ = policy_loss(_logp(), OLD, ADV, MASK, clip_high=0.6)
    assert loss.item() == pytest.approx((2.6 - 0.3) / 6, rel=1e-5)


def test_extreme_log_probs_stay_finite():
    logp = torch.tensor([[-1e4, 0.0, -5.0], [0.0, -1e4, -1e4]], requires_grad=True)
    old = torch.tensor([[0.0, -1e4, -5.0], [-1e4, 0.0, -1e4]])
    loss, metrics = policy_loss(logp, old, torch.tensor([1.0, -2.0]), torch.ones(2, 3))
    (grad,) = torch.autograd.grad(loss, logp)
    assert math.isfinite(loss.item())
    assert torch.isfinite(grad).all().item()
    assert all(math.isfinite(v) for v in metrics.values())


def test_bfloat16_inputs_give_float32_loss_equal_to_float32_of_same_values():
    logp16 = _logp().detach().bfloat16().requires_grad_(True)
    loss16, _ = policy_loss(logp16, OLD.bfloat16(), ADV.bfloat16(), MASK.bfloat16())
    logp32 = logp16.detach().float().requires_grad_(True)
    loss32, _ = policy_loss(logp32, OLD, ADV, MASK)
    (grad16,) = torch.autograd.grad(loss16, logp16)
    (grad32,) = torch.autograd.grad(loss32, logp32)
    assert loss16.dtype == torch.float32
    assert loss16.item() == loss32.item()
    assert grad16.dtype == torch.bfloat16
    torch.testing.assert_close(grad16.float(), grad32, rtol=1e-2, atol=1e-3)
