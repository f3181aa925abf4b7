"""chord.losses.hybrids: HPT and SRFT against hand-computed values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from chord.losses.hybrids import hpt_loss, row_entropy, srft_loss

LN2, LN4 = math.log(2.0), math.log(4.0)

# HPT, 4 rows x 2 tokens, token-mean, sft_coef 2:
# row 0 rollout, active, A = +1, ratio 1      -> l = [-1, -1]
# row 1 rollout of a gated prompt (inactive)  -> no term
# row 2 demonstration, active, p = [1/2, 1/4] -> nll = [ln 2, ln 4]
# row 3 demonstration of an ungated prompt    -> no term
# pg = -2 / 2 = -1; sft = (ln 2 + ln 4) / 2 = 1.039721; loss = -1 + 2 * 1.039721 = 1.079442
# d loss / d logp: row 0: -A * ratio / 2 = -0.5; row 2: -sft_coef / 2 = -1; rows 1, 3: 0
HPT_LOGP = torch.tensor([[-1.0, -2.0], [-0.3, -0.4], [-LN2, -LN4], [-0.1, -0.2]])
HPT_OLD = torch.tensor([[-1.0, -2.0], [-0.3, -0.4], [0.0, 0.0], [0.0, 0.0]])
HPT_ADV = torch.tensor([1.0, 5.0, 0.0, 0.0])
HPT_EXPERT = torch.tensor([False, False, True, True])
HPT_ACTIVE = torch.tensor([True, False, True, False])


def test_hpt_loss_is_grpo_on_ungated_rollouts_plus_scaled_nll_on_gated_demos():
    logp = HPT_LOGP.clone().requires_grad_(True)
    loss, metrics = hpt_loss(logp, HPT_OLD, HPT_ADV, torch.ones(4, 2), HPT_EXPERT, HPT_ACTIVE, sft_coef=2.0)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(-1.0 + 2.0 * (LN2 + LN4) / 2, rel=1e-6)
    assert metrics["hpt_loss"] == pytest.approx(1.079442, rel=1e-5)
    assert metrics["pg_loss"] == pytest.approx(-1.0)
    assert metrics["sft_loss"] == pytest.approx(1.039721, rel=1e-5)
    assert metrics["expert_p_mean"] == pytest.approx(0.375)
    assert (metrics["on_policy_rows"], metrics["expert_rows"]) == (1.0, 1.0)
    assert (metrics["on_policy_tokens"], metrics["expert_tokens"]) == (2.0, 2.0)
    expected = torch.tensor([[-0.5, -0.5], [0.0, 0.0], [-1.0, -1.0], [0.0, 0.0]])
    torch.testing.assert_close(grad, expected)


def test_hpt_micro_batches_with_global_normalisers_add_up_to_the_full_batch():
    full, _ = hpt_loss(HPT_LOGP, HPT_OLD, HPT_ADV, torch.ones(4, 2), HPT_EXPERT, HPT_ACTIVE, sft_coef=2.0)
    parts = []
    for rows in ([0, 1], [2, 3]):
        part, _ = hpt_loss(
            HPT_LOGP[rows], HPT_OLD[rows], HPT_ADV[rows], torch.ones(2, 2), HPT_EXPERT[rows],
            HPT_ACTIVE[rows], sft_coef=2.0, pg_normalizer=2.0, sft_normalizer=2.0,
        )  # fmt: skip
        parts.append(part)
    assert float(sum(parts)) == pytest.approx(float(full), rel=1e-6)


def test_hpt_with_every_prompt_gated_has_no_policy_gradient_term():
    active = torch.tensor([False, False, True, True])
    loss, metrics = hpt_loss(HPT_LOGP, HPT_OLD, HPT_ADV, torch.ones(4, 2), HPT_EXPERT, active)
    assert metrics["pg_loss"] == 0.0 and metrics["on_policy_tokens"] == 0.0
    # both demonstrations: (ln2 + ln4 + 0.1 + 0.2) / 4
    assert loss.item() == pytest.approx((LN2 + LN4 + 0.3) / 4, rel=1e-6)


# SRFT, 3 rows x 2 tokens, token-mean, paper coefficients (0.5, 0.1, 1), sign +1:
# row 0 demonstration, entropy [1, 3] -> H = 2, w = 0.5 e^-2, nll [ln 2, ln 4] -> sft = w * 1.039721
# row 1 correct rollout, entropy [0.5, 1.5] -> H = 1, w = 0.1 e^1, -logp [1, 2] -> pos = w * 1.5
# row 2 incorrect rollout, logp [-0.5, -1.5] -> neg = (-0.5 - 1.5) / 2 = -1
# gradients: row 0: -w_demo / 2, row 1: -w_pos / 2, row 2: +1 / 2
SRFT_LOGP = torch.tensor([[-LN2, -LN4], [-1.0, -2.0], [-0.5, -1.5]])
SRFT_ENT = torch.tensor([[1.0, 3.0], [0.5, 1.5], [2.0, 2.0]])
SRFT_EXPERT = torch.tensor([True, False, False])
SRFT_CORRECT = torch.tensor([False, True, False])


def _srft(logp: torch.Tensor = SRFT_LOGP, entropy: torch.Tensor = SRFT_ENT, **kwargs):
    """srft_loss on the 3-row case above (all tokens counted)."""
    return srft_loss(logp, torch.ones(3, 2), SRFT_EXPERT, SRFT_CORRECT, entropy, **kwargs)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_srft_loss_terms_match_hand_computed_values(sign):
    logp = SRFT_LOGP.clone().requires_grad_(True)
    loss, metrics = _srft(logp, positive_entropy_sign=sign, demo_pg_coef=0.0)
    (grad,) = torch.autograd.grad(loss, logp)
    w_demo, w_pos = 0.5 * math.exp(-2.0), 0.1 * math.exp(sign * 1.0)
    assert metrics["sft_loss"] == pytest.approx(w_demo * (LN2 + LN4) / 2, rel=1e-6)
    assert metrics["srft_positive_loss"] == pytest.approx(w_pos * 1.5, rel=1e-6)
    assert metrics["srft_negative_loss"] == pytest.approx(-1.0, rel=1e-6)
    assert loss.item() == pytest.approx(w_demo * (LN2 + LN4) / 2 + w_pos * 1.5 - 1.0, rel=1e-6)
    assert metrics["sft_weight_mean"] == pytest.approx(w_demo, rel=1e-6)
    assert metrics["srft_positive_weight_mean"] == pytest.approx(w_pos, rel=1e-6)
    assert metrics["srft_demo_entropy"] == pytest.approx(2.0)
    assert (metrics["positive_rows"], metrics["positive_tokens"], metrics["on_policy_tokens"]) == (
        1.0,
        2.0,
        4.0,
    )
    expected = torch.tensor([[-w_demo / 2] * 2, [-w_pos / 2] * 2, [0.5, 0.5]])
    torch.testing.assert_close(grad, expected)


def test_srft_entropy_weights_are_detached_and_the_bonus_is_over_own_rollouts():
    ent = SRFT_ENT.clone().requires_grad_(True)
    loss, metrics = _srft(entropy=ent, entropy_coeff=0.1, demo_pg_coef=0.0)
    (grad,) = torch.autograd.grad(loss, ent)
    # only the bonus -0.1 * token-mean(H) over the 4 rollout tokens reaches the entropy
    expected = torch.tensor([[0.0, 0.0], [-0.025, -0.025], [-0.025, -0.025]])
    torch.testing.assert_close(grad, expected)
    assert metrics["entropy_loss"] == pytest.approx((0.5 + 1.5 + 2.0 + 2.0) / 4)


def test_row_entropy_is_the_mean_over_each_rows_counted_tokens():
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(row_entropy(SRFT_ENT, mask), torch.tensor([[1.0], [1.0], [0.0]]))


def test_srft_refuses_a_sign_other_than_plus_or_minus_one():
    with pytest.raises(ValueError, match="positive_entropy_sign"):
        _srft(positive_entropy_sign=0.5, demo_pg_coef=0.0)


# SRFT's policy-gradient term on the demonstration (row 0, p = [1/2, 1/4], group advantage A = 0.5,
# gamma 0.1, coefficient 2): l_t = -A * p / (p + 0.1) = -0.5 * [5/6, 5/7]; token-mean over the
# demonstration's 2 tokens: -0.5 * (5/6 + 5/7) / 2 = -0.386905, times 2 = -0.773810.
# d l_t / d logp_t = -A * gamma * p / (p + gamma)^2 = -0.5 * [0.138889, 0.204082], / 2 tokens, * 2.
# The rollout rows' advantages (9, -7) take part in no term.
SRFT_ADV = torch.tensor([0.5, 9.0, -7.0])


def test_srft_demo_policy_gradient_term_matches_hand_computed_values():
    logp = SRFT_LOGP.clone().requires_grad_(True)
    kwargs = dict(advantages=SRFT_ADV, demo_gamma=0.1)
    loss, metrics = _srft(logp, demo_pg_coef=2.0, **kwargs)
    (grad,) = torch.autograd.grad(loss, logp)
    base, base_metrics = _srft(SRFT_LOGP.clone().requires_grad_(True), demo_pg_coef=0.0, **kwargs)
    demo_pg = 2.0 * -0.5 * (5 / 6 + 5 / 7) / 2
    assert metrics["srft_demo_pg_loss"] == pytest.approx(demo_pg, rel=1e-6)
    assert base_metrics["srft_demo_pg_loss"] == 0.0
    assert loss.item() == pytest.approx(base.item() + demo_pg, rel=1e-6)
    assert metrics["srft_loss"] == pytest.approx(base_metrics["srft_loss"] + demo_pg, rel=1e-6)
    assert metrics["srft_demo_advantage_mean"] == pytest.approx(0.5)
    w_demo, w_pos = 0.5 * math.exp(-2.0), 0.1 * math.exp(1.0)
    pg_grad = [2.0 * -0.5 * 0.1 * p / (p + 0.1) ** 2 / 2 for p in (0.5, 0.25)]
    expected = torch.tensor(
        [[-w_demo / 2 + pg_grad[0], -w_demo / 2 + pg_grad[1]], [-w_pos / 2] * 2, [0.5, 0.5]]
    )
    torch.testing.assert_close(grad, expected)


def test_srft_takes_token_level_advantages_and_needs_them_for_the_demo_term():
    per_token = SRFT_ADV.unsqueeze(-1).expand(3, 2)
    a, _ = _srft(advantages=per_token)
    b, _ = _srft(advantages=SRFT_ADV)
    assert a.item() == pytest.approx(b.item())
    with pytest.raises(ValueError, match="advantages: SRFT's policy-gradient term"):
        _srft()
    with pytest.raises(ValueError, match="advantages"):
        _srft(advantages=torch.ones(2))
    with pytest.raises(ValueError, match="demo_gamma"):
        _srft(advantages=SRFT_ADV, demo_gamma=0.0)
