"""chord.losses.prefix_loss: GRPO on policy tokens, UFT's NLL / TRAPO's trust-region SFT on prefix tokens."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import policy_loss
from chord.losses.prefix import prefix_loss, prefix_token_loss

# row 0 guided: [prefix p=0.5, prefix p=0.05, policy ratio 1, policy ratio 1.5], A = +1
# row 1 plain:  [policy ratio 1 x 3, padding],                                   A = -0.5
# GRPO (token-mean over 5 policy tokens): row 0: -1, -1.2 (ratio clipped at 1.2); row 1: 0.5 x 3
#   -> (-2.2 + 1.5) / 5 = -0.14
# UFT NLL over 2 prefix tokens: (-log 0.5 - log 0.05) / 2 = (0.693147 + 2.995732) / 2 = 1.844440
# TRAPO trust region (alpha 0.1): p=0.5 -> -1; p=0.05 -> -0.05/0.1 = -0.5; mean -0.75
LOGP = torch.tensor([[math.log(0.5), math.log(0.05), -1.0, math.log(1.5) - 1.0], [-1.0, -1.0, -1.0, 0.0]])
OLD = torch.tensor([[-9.0, -9.0, -1.0, -1.0], [-1.0, -1.0, -1.0, 0.0]])  # prefix old_logp unused
ADV = torch.tensor([1.0, -0.5])
MASK = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
PREFIX = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
PG_GRAD = torch.tensor([[0.0, 0.0, -1.0, 0.0], [0.5, 0.5, 0.5, 0.0]]) / 5


def _run(**kwargs):
    logp = LOGP.clone().requires_grad_(True)
    loss, metrics = prefix_loss(logp, OLD, ADV, MASK, PREFIX, **kwargs)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss, metrics, grad


def test_uft_value_gradient_and_metrics():
    loss, metrics, grad = _run(weighting="nll", coef=0.001)
    assert loss.item() == pytest.approx(-0.14 + 0.001 * 1.844440, rel=1e-5)
    assert metrics["pg_loss"] == pytest.approx(-0.14, rel=1e-5)
    assert metrics["prefix_loss"] == pytest.approx(1.844440, rel=1e-5)
    assert metrics["prefix_p_mean"] == pytest.approx(0.275, rel=1e-5)
    assert metrics["prefix_tokens"] == 2.0 and metrics["on_policy_tokens"] == 5.0
    expected = PG_GRAD + torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.0] * 4]) * 0.001 / 2
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_trapo_trust_region_value_and_gradient():
    loss, metrics, grad = _run(weighting="trust_region", coef=1.0, alpha=0.1)
    assert loss.item() == pytest.approx(-0.14 - 0.75, rel=1e-5)
    assert metrics["prefix_loss"] == pytest.approx(-0.75, rel=1e-5)
    # d/dlogp of -p / max(sg(p), alpha): -1 where p >= alpha, -p / alpha below; / 2 prefix tokens
    expected = PG_GRAD + torch.tensor([[-1.0, -0.5, 0.0, 0.0], [0.0] * 4]) / 2
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_trust_region_gradient_identity_against_nll():
    """grad(trust region) = grad(NLL) * p / max(p, alpha), token by token."""
    logp = torch.linspace(-6.0, -0.01, 40).reshape(4, 10).requires_grad_(True)
    (g_tr,) = torch.autograd.grad(prefix_token_loss(logp, "trust_region", 0.1).sum(), logp)
    (g_nll,) = torch.autograd.grad(prefix_token_loss(logp, "nll").sum(), logp)
    p = logp.detach().exp()
    torch.testing.assert_close(g_tr, g_nll * p / p.clamp(min=0.1))
    assert bool((g_tr.abs() <= 1.0 + 1e-6).all())


def test_prefix_tokens_get_no_policy_gradient():
    """With coef 0 the loss is exactly GRPO on the policy tokens: prefix positions get no gradient."""
    loss, metrics, grad = _run(weighting="nll", coef=0.0)
    ref, _ = policy_loss(LOGP, OLD, ADV, MASK)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert bool((grad * PREFIX == 0).all())
    torch.testing.assert_close(grad, PG_GRAD, rtol=1e-5, atol=1e-7)


def test_global_normalizers_split_over_micro_batches_exactly():
    full, _, g_full = _run(weighting="trust_region", coef=1.0)
    logp = LOGP.clone().requires_grad_(True)
    total = 0.0
    for r in (slice(0, 1), slice(1, 2)):
        part, _ = prefix_loss(
            logp[r], OLD[r], ADV[r], MASK[r], PREFIX[r], weighting="trust_region", coef=1.0,
            pg_normalizer=5, prefix_normalizer=2,
        )  # fmt: skip
        total = total + part
    (g_parts,) = torch.autograd.grad(total, logp)
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(g_parts, g_full)


def test_regularizers_are_over_policy_tokens_only():
    entropy = torch.full((2, 4), 2.0).requires_grad_(True)
    loss, metrics, _ = _run(weighting="nll", coef=0.0, entropy=entropy, entropy_coeff=0.1)
    assert metrics["entropy_loss"] == pytest.approx(2.0)
    assert loss.item() == pytest.approx(-0.14 - 0.2, rel=1e-5)


def test_no_prefix_tokens_gives_a_zero_prefix_term():
    logp = LOGP.clone().requires_grad_(True)
    loss, metrics = prefix_loss(logp, OLD, ADV, MASK, torch.zeros(2, 4), weighting="nll", coef=1.0)
    assert metrics["prefix_loss"] == 0.0 and metrics["prefix_tokens"] == 0.0
    assert loss.item() == pytest.approx(-0.14, rel=1e-5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="prefix_mask: overlaps mask"):
        prefix_loss(LOGP, OLD, ADV, MASK, torch.ones(2, 4))
    with pytest.raises(ValueError, match="weighting"):
        prefix_loss(LOGP, OLD, ADV, MASK, PREFIX, weighting="dft")
    with pytest.raises(ValueError, match="alpha"):
        prefix_loss(LOGP, OLD, ADV, MASK, PREFIX, alpha=0.0)
    with pytest.raises(ValueError, match="prefix_mask"):
        prefix_loss(LOGP, OLD, ADV, MASK, PREFIX[:, :3])
