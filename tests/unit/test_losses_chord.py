"""chord.losses.chord_loss: the mixed objective, its limits mu=0 / mu=1, micro-batching, edge batches."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses import AGG_MODES, chord_loss, chord_normalizers, policy_loss, sft_loss


def _batch(seed: int = 0):
    """6 rows x 5 tokens, ragged masks; rows 1, 3, 4 are expert rows."""
    gen = torch.Generator().manual_seed(seed)
    logp = -3.0 * torch.rand(6, 5, generator=gen)
    old_logp = logp + 0.3 * torch.randn(6, 5, generator=gen)
    ref_logp = logp + 0.5 * torch.randn(6, 5, generator=gen)
    adv = torch.randn(6, generator=gen)
    lengths = torch.tensor([5, 3, 2, 4, 1, 5])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).float()
    is_expert = torch.tensor([False, True, False, True, True, False])
    return logp.requires_grad_(True), old_logp, ref_logp, adv, mask, is_expert


def _grad(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, x)
    return g


@pytest.mark.parametrize("agg", sorted(AGG_MODES))
def test_mu_zero_equals_policy_loss_on_on_policy_rows(agg):
    logp, old, _, adv, mask, is_expert = _batch()
    on = ~is_expert
    loss, metrics = chord_loss(logp, old, adv, mask, is_expert, mu=0.0, agg=agg)
    ref_loss, ref_metrics = policy_loss(logp[on], old[on], adv[on], mask[on], agg=agg)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(_grad(loss, logp), _grad(ref_loss, logp))
    assert metrics["pg_loss"] == pytest.approx(ref_metrics["pg_loss"], rel=1e-6)
    assert metrics["ppo_kl"] == pytest.approx(ref_metrics["ppo_kl"], rel=1e-6)


@pytest.mark.parametrize("weighting", ["nll", "phi", "dft", "iw", "iw_token"])
@pytest.mark.parametrize("agg", sorted(AGG_MODES))
def test_mu_one_equals_sft_loss_on_expert_rows(agg, weighting):
    logp, old, ref, adv, mask, is_expert = _batch()
    e = is_expert
    loss, metrics = chord_loss(
        logp, old, adv, mask, e, mu=1.0, sft_weighting=weighting, ref_logp=ref, agg=agg
    )
    ref_loss, ref_metrics = sft_loss(logp[e], mask[e], weighting=weighting, ref_logp=ref[e], agg=agg)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(_grad(loss, logp), _grad(ref_loss, logp))
    assert metrics["sft_weight_mean"] == pytest.approx(ref_metrics["sft_weight_mean"], rel=1e-6)


def test_mu_mixes_the_two_terms_each_over_its_own_rows():
    logp, old, _, adv, mask, e = _batch()
    loss, metrics = chord_loss(logp, old, adv, mask, e, mu=0.25, sft_weighting="phi")
    pg, _ = policy_loss(logp[~e], old[~e], adv[~e], mask[~e])
    sft, _ = sft_loss(logp[e], mask[e], weighting="phi")
    assert loss.item() == pytest.approx(0.75 * pg.item() + 0.25 * sft.item(), rel=1e-6)
    assert metrics["chord_loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert metrics["mu"] == 0.25


def test_hand_computed_two_row_chord_loss():
    # row 0 on-policy, A = 1, ratio 1.5 -> clipped surrogate -1.2 (one token)
    # row 1 expert, p = 0.5 -> phi 0.25, l = -0.25 * ln 0.5 = 0.173287 (one token)
    # mu = 0.1: 0.9 * -1.2 + 0.1 * 0.173287 = -1.062671
    logp = torch.tensor([[math.log(1.5) - 1.0], [math.log(0.5)]], requires_grad=True)
    old = torch.tensor([[-1.0], [-9.0]])
    loss, metrics = chord_loss(
        logp, old, torch.tensor([1.0, 0.0]), torch.ones(2, 1), torch.tensor([False, True]), mu=0.1
    )
    assert loss.item() == pytest.approx(-1.062671, rel=1e-5)
    assert metrics["pg_clipfrac"] == 1.0
    assert metrics["expert_p_mean"] == pytest.approx(0.5)
    assert metrics["phi_mean"] == pytest.approx(0.25)


def test_count_metrics_report_rows_and_tokens_of_each_kind():
    logp, old, _, adv, mask, e = _batch()
    _, metrics = chord_loss(logp, old, adv, mask, e, mu=0.5)
    # lengths [5, 3, 2, 4, 1, 5]; expert rows 1, 3, 4 -> 3 + 4 + 1 = 8 tokens; others 12
    assert metrics["expert_rows"] == 3.0 and metrics["on_policy_rows"] == 3.0
    assert metrics["expert_tokens"] == 8.0 and metrics["on_policy_tokens"] == 12.0


@pytest.mark.parametrize("only", ["expert", "on_policy"])
@pytest.mark.parametrize("agg", sorted(AGG_MODES))
def test_batch_with_one_kind_of_row_gives_finite_loss_and_zero_missing_term(only, agg):
    logp, old, ref, adv, mask, _ = _batch()
    is_expert = torch.full((6,), only == "expert")
    loss, metrics = chord_loss(
        logp, old, adv, mask, is_expert, mu=0.3, sft_weighting="iw", ref_logp=ref, iw_normalize=True, agg=agg
    )
    grad = _grad(loss, logp)
    assert math.isfinite(loss.item()) and torch.isfinite(grad).all().item()
    assert all(math.isfinite(v) for v in metrics.values())
    if only == "expert":
        assert metrics["on_policy_rows"] == 0.0 and metrics["pg_loss"] == 0.0
        assert metrics["expert_rows"] == 6.0
    else:
        assert metrics["expert_rows"] == 0.0 and metrics["sft_loss"] == 0.0
        assert metrics["expert_tokens"] == 0.0 and metrics["on_policy_rows"] == 6.0


def test_expert_rows_old_logp_and_advantages_are_ignored():
    logp, old, _, adv, mask, e = _batch()
    loss, _ = chord_loss(logp, old, adv, mask, e, mu=0.4)
    old2, adv2 = old.clone(), adv.clone()
    old2[e] = float("nan")
    adv2[e] = 1e6
    loss2, _ = chord_loss(logp, old2, adv2, mask, e, mu=0.4)
    assert loss2.item() == loss.item()
    assert torch.isfinite(_grad(loss2, logp)).all().item()


@pytest.mark.parametrize("weighting", ["phi", "nll", "iw"])
@pytest.mark.parametrize("agg", sorted(AGG_MODES))
def test_micro_batches_with_global_normalizers_reproduce_full_batch(agg, weighting):
    logp, old, ref, adv, mask, e = _batch(seed=1)
    kwargs = {"mu": 0.3, "agg": agg, "sft_weighting": weighting}
    full, _ = chord_loss(logp, old, adv, mask, e, ref_logp=ref, **kwargs)
    full_grad = _grad(full, logp)

    splits = [(0, 1), (1, 4), (4, 6)]
    counts = [chord_normalizers(mask[a:b], e[a:b], agg) for a, b in splits]
    pg_n = sum(c[0] for c in counts)
    sft_n = sum(c[1] for c in counts)
    total = sum(
        chord_loss(
            logp[a:b],
            old[a:b],
            adv[a:b],
            mask[a:b],
            e[a:b],
            ref_logp=ref[a:b],
            pg_normalizer=pg_n,
            sft_normalizer=sft_n,
            **kwargs,
        )[0]
        for a, b in splits
    )
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(_grad(total, logp), full_grad)


def test_extreme_log_probs_stay_finite():
    logp = torch.tensor([[-1e4, 0.0, -2.0], [0.0, -1e4, -1e4]], requires_grad=True)
    old = torch.tensor([[0.0, -1e4, -2.0], [-1e4, 0.0, 0.0]])
    ref = torch.tensor([[0.0, 0.0, 0.0], [-1e4, 0.0, -1e4]])
    for weighting in ["nll", "phi", "dft", "iw", "iw_token"]:
        loss, metrics = chord_loss(
            logp,
            old,
            torch.tensor([2.0, -1.0]),
            torch.ones(2, 3),
            torch.tensor([False, True]),
            mu=0.5,
            sft_weighting=weighting,
            ref_logp=ref,
            cutoff_prob=0.9,
        )
        assert math.isfinite(loss.item()), weighting
        assert torch.isfinite(_grad(loss, logp)).all().item(), weighting
        assert all(math.isfinite(v) for v in metrics.values()), weighting


def test_bfloat16_inputs_give_float32_loss_equal_to_float32_of_same_values():
    logp, old, _, adv, mask, e = _batch()
    logp16 = logp.detach().bfloat16().requires_grad_(True)
    loss16, _ = chord_loss(logp16, old.bfloat16(), adv.bfloat16(), mask.bfloat16(), e, mu=0.3)
    loss32, _ = chord_loss(
        logp16.detach().float(), old.bfloat16().float(), adv.bfloat16().float(), mask, e, mu=0.3
    )
    assert loss16.dtype == torch.float32
    assert loss16.item() == loss32.item()
    assert _grad(loss16, logp16).dtype == torch.bfloat16


def test_chord_normalizers_count_each_part():
    _, _, _, _, mask, e = _batch()
    assert [x.item() for x in chord_normalizers(mask, e, "token-mean")] == [12.0, 8.0]
    assert [x.item() for x in chord_normalizers(mask, e, "seq-mean-token-mean")] == [3.0, 3.0]


def test_entropy_and_kl_regularisers_count_on_policy_tokens_only_scaled_by_one_minus_mu():
    """L = (1 - mu) * (pg - c_ent * H + c_kl * KL) + mu * sft; H and KL token means over on-policy rows."""
    logp, old, ref, adv, mask, is_expert = _batch()
    entropy = torch.rand(6, 5, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    kl = (logp - ref) ** 2  # any per-token estimate with grad through logp
    mu, c_ent, c_kl = 0.3, 0.01, 0.5
    base, _ = chord_loss(logp, old, adv, mask, is_expert, mu=mu, sft_weighting="nll")
    loss, metrics = chord_loss(
        logp, old, adv, mask, is_expert, mu=mu, sft_weighting="nll",
        entropy=entropy, entropy_coeff=c_ent, kl=kl, kl_coef=c_kl,
    )  # fmt: skip
    on = mask * (~is_expert).float().unsqueeze(-1)
    h = float((entropy.detach() * on).sum() / on.sum())
    k = float((kl.detach() * on).sum() / on.sum())
    assert metrics["entropy_loss"] == pytest.approx(h, rel=1e-6)
    assert metrics["kl_loss"] == pytest.approx(k, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(
        float(base.detach()) + (1 - mu) * (-c_ent * h + c_kl * k), rel=1e-6
    )
    # chord_loss (the metric) is the objective without the regularisers
    assert metrics["chord_loss"] == pytest.approx(float(base.detach()), rel=1e-6)
    # expert rows' entropy gets no gradient; on-policy tokens get -(1 - mu) * c_ent / n_on
    g = _grad(loss, entropy)
    assert torch.all(g[is_expert] == 0)
    torch.testing.assert_close(g[~is_expert], -(1 - mu) * c_ent * on[~is_expert] / on.sum())


def test_regulariser_with_wrong_shape_is_named():
    logp, old, _, adv, mask, is_expert = _batch()
    with pytest.raises(ValueError, match="^entropy: expected shape"):
        chord_loss(logp, old, adv, mask, is_expert, mu=0.1, entropy=torch.zeros(6, 4), entropy_coeff=0.1)


def test_horizon_and_token_weights_scale_the_policy_term_by_hand():
    """seq-mean-token-sum-norm divides by rows x horizon; token weights multiply the surrogate."""
    # one on-policy row, 2 tokens, ratio 1 (logp = old), A = 1: surrogate -1 per token
    logp = torch.full((1, 3), -1.0, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, is_expert = torch.ones(1), torch.zeros(1, dtype=torch.bool)
    weights = torch.tensor([[0.5, 2.0, 9.0]])  # the padding weight is never counted
    args = (logp, logp.detach(), adv, mask, is_expert)
    loss, _ = chord_loss(*args, mu=0.0, agg="seq-mean-token-sum-norm")
    assert loss.item() == pytest.approx(-2 / 3)  # T = padded width 3
    loss, _ = chord_loss(*args, mu=0.0, agg="seq-mean-token-sum-norm", horizon=100)
    assert loss.item() == pytest.approx(-2 / 100)
    loss, metrics = chord_loss(*args, mu=0.0, agg="token-mean", pg_token_weights=weights)
    assert loss.item() == pytest.approx(-(0.5 + 2.0) / 2)
    assert metrics["pg_clipfrac"] == 0.0
    with pytest.raises(ValueError, match="pg_token_weights"):
        chord_loss(*args, mu=0.0, pg_token_weights=torch.ones(2, 3))
    with pytest.raises(ValueError, match="horizon"):
        chord_loss(*args, mu=0.0, horizon=0)
