"""chord.losses.luffy_loss: clipped surrogate on on-policy rows, p/(p+gamma) on expert rows."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import luffy_loss, policy_loss

# row 0 on-policy, A = +1, ratios [1.0, 1.5]      -> [-1, -1.2]
# row 1 expert,    A = +2, p [0.5, 0.9], gamma 0.1 -> f = [0.5/0.6, 0.9/1.0] -> l = [-1.666667, -1.8]
# token-mean over all 4 tokens: (-2.2 - 3.466667) / 4 = -1.416667
#   pg part -2.2 / 4 = -0.55, off-policy part -3.466667 / 4 = -0.866667
# d l / d logp (expert) = -A * gamma * p / (p + gamma)^2: p=0.5 -> -0.277778, p=0.9 -> -0.18
LOGP = torch.tensor([[-1.0, math.log(1.5) - 1.0], [math.log(0.5), math.log(0.9)]])
OLD = torch.tensor([[-1.0, -1.0], [-50.0, -50.0]])  # expert row's old_logp is ignored
ADV = torch.tensor([1.0, 2.0])
IS_EXPERT = torch.tensor([False, True])


def test_luffy_loss_matches_hand_computed_value_and_parts():
    logp = LOGP.clone().requires_grad_(True)
    loss, metrics = luffy_loss(logp, OLD, ADV, torch.ones(2, 2), IS_EXPERT)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(-1.416667, rel=1e-5)
    assert metrics["pg_loss"] == pytest.approx(-0.55, rel=1e-5)
    assert metrics["offpolicy_loss"] == pytest.approx(-0.866667, rel=1e-5)
    assert metrics["expert_p_mean"] == pytest.approx(0.7, rel=1e-5)
    expected = torch.tensor([[-1.0, 0.0], [-0.277778, -0.18]]) / 4
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)


def test_luffy_without_expert_rows_equals_policy_loss():
    logp = LOGP.clone().requires_grad_(True)
    no_expert = torch.tensor([False, False])
    old = LOGP.clone()
    loss, metrics = luffy_loss(logp, old, ADV, torch.ones(2, 2), no_expert)
    ref, _ = policy_loss(logp, old, ADV, torch.ones(2, 2))
    assert loss.item() == pytest.approx(ref.item())
    assert metrics["offpolicy_loss"] == 0.0 and metrics["expert_rows"] == 0.0


def test_luffy_global_normalizer_splits_exactly():
    logp = LOGP.clone().requires_grad_(True)
    full, _ = luffy_loss(logp, OLD, ADV, torch.ones(2, 2), IS_EXPERT)
    rows = [slice(0, 1), slice(1, 2)]
    parts = [
        luffy_loss(logp[r], OLD[r], ADV[r], torch.ones(1, 2), IS_EXPERT[r], normalizer=4)[0] for r in rows
    ]
    assert (parts[0] + parts[1]).item() == pytest.approx(full.item(), rel=1e-6)


def test_luffy_extreme_log_probs_stay_finite():
    logp = torch.tensor([[-1e4, 0.0], [-1e4, 0.0]], requires_grad=True)
    loss, metrics = luffy_loss(
        logp, torch.zeros(2, 2), torch.tensor([-1.0, 1.0]), torch.ones(2, 2), IS_EXPERT
    )
    (grad,) = torch.autograd.grad(loss, logp)
    assert math.isfinite(loss.item()) and torch.isfinite(grad).all().item()
    assert all(math.isfinite(v) for v in metrics.values())
