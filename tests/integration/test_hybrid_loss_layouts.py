"""HPT, SRFT and ReLIFT's SFT-only update through verl's padding and splitting, in every layout.

The harness of `test_actor_loss_layouts` (verl's `left_right_2_no_padding`, rank selection,
`prepare_micro_batches`, the worker's all-reduced `mini_batch_sums`, `chord_actor_loss` per
micro-batch, FSDP's gradient mean, `Metric.aggregate_dp`) runs the hybrids' per-row flags
(`chord_active`, `chord_correct`) in five layouts (1 vs 4 micro-batches, uneven dynamic ones,
2 ranks, 2 uneven ranks); the result must equal an independent full-batch computation.
"""

from __future__ import annotations

import pytest
import torch

verl = pytest.importorskip("verl")

from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding  # noqa: E402

from recipe.train.actor_loss import IS_EXPERT, MU, ROLLOUT_IS_WEIGHTS, chord_actor_loss  # noqa: E402
from recipe.train.config import load_chord_config  # noqa: E402
from recipe.train.hybrid_loss import ACTIVE, CORRECT  # noqa: E402
from tests.integration.test_actor_loss_layouts import (  # noqa: E402
    ENTROPY_COEFF,
    EXPERT,
    KL_COEF,
    LAYOUTS,
    N,
    _actor_config,
    _agg,
    _leaves,
    _nested,
    _padded,
    run_layout,
)

# rollouts 0, 3, 5 active, 2, 7 of gated prompts; demonstrations 1, 6 active, 4 not
HPT_ACTIVE = [True, True, False, True, False, True, True, False]
SRFT_CORRECT = [True, False, False, True, False, False, False, True]  # rollouts 0, 3, 7 correct
AGGS = [("token-mean", None), ("seq-mean-token-mean", None), ("seq-mean-token-sum-norm", 16)]
SFT_COEF = 1.5
SRFT = {"demo_coef": 0.5, "demo_pg_coef": 2.0, "demo_gamma": 0.2, "positive_coef": 0.1, "negative_coef": 1.0}


def _hybrid_padded(variant: str) -> dict[str, torch.Tensor]:
    expert = [True] * N if variant == "relift" else EXPERT
    padded = _padded(expert)
    del padded[ROLLOUT_IS_WEIGHTS]  # refused for the hybrids at start-up
    if variant == "hpt":
        padded[ACTIVE] = torch.tensor(HPT_ACTIVE)
    if variant == "srft":
        padded[CORRECT] = torch.tensor(SRFT_CORRECT) & ~torch.tensor(EXPERT)
    return padded


def _reference(padded: dict, variant: str, agg: str, horizon: float, sign: int):
    logp_leaves, ent_leaves = _leaves()
    full = left_right_2_no_padding(TensorDict(dict(padded), batch_size=N))
    logp = no_padding_2_padding(_nested(logp_leaves, list(range(N)), full), full)
    ent = no_padding_2_padding(_nested(ent_leaves, list(range(N)), full), full)
    m = padded["response_mask"].float()
    ex = padded[IS_EXPERT].float().unsqueeze(-1)
    kl = 0.5 * (logp - padded["ref_log_prob"]) ** 2
    if variant == "relift":  # SFT-only update: token-mean NLL over every (expert) row
        sft = _agg(-logp, m * ex, agg, horizon)
        return logp_leaves, sft, {"sft_loss": float(sft)}
    if variant == "hpt":
        act = padded[ACTIVE].float().unsqueeze(-1)
        on_m, ex_m = m * (1 - ex) * act, m * ex * act
        old, adv = padded["old_log_probs"], padded["advantages"]
        ratio = torch.exp(logp - old)
        surrogate = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.25))
        surrogate = torch.where(adv < 0, torch.minimum(surrogate, -adv * 3.0), surrogate)
        pg, sft = _agg(surrogate, on_m, agg, horizon), _agg(-logp, ex_m, agg, horizon)
        regs = -ENTROPY_COEFF * _agg(ent, on_m, agg, horizon) + KL_COEF * _agg(kl, on_m, agg, horizon)
        value = (pg + SFT_COEF * sft).detach()
        true = {"hpt_loss": float(value), "pg_loss": float(pg.detach()), "sft_loss": float(sft.detach())}
        return logp_leaves, pg + SFT_COEF * sft + regs, true
    correct = padded[CORRECT].float().unsqueeze(-1)
    on_m = m * (1 - ex)
    pos_m, neg_m, demo_m = on_m * correct, on_m * (1 - correct), m * ex
    h = ((ent.detach() * m).sum(-1) / m.sum(-1)).unsqueeze(-1)
    sft = _agg(-SRFT["demo_coef"] * torch.exp(-h) * logp, demo_m, agg, horizon)
    p = torch.exp(logp)
    shaped = -padded["advantages"] * p / (p + SRFT["demo_gamma"])  # demonstrations' group advantages
    demo_pg = SRFT["demo_pg_coef"] * _agg(shaped, demo_m, agg, horizon)
    pos = _agg(-SRFT["positive_coef"] * torch.exp(sign * h) * logp, pos_m, agg, horizon)
    neg = SRFT["negative_coef"] * _agg(logp, neg_m, agg, horizon)
    regs = -ENTROPY_COEFF * _agg(ent, on_m, agg, horizon) + KL_COEF * _agg(kl, on_m, agg, horizon)
    true = {
        "srft_loss": float(sft + demo_pg + pos + neg),
        "sft_loss": float(sft),
        "srft_demo_pg_loss": float(demo_pg),
        "srft_demo_advantage_mean": float(padded["advantages"][demo_m > 0].mean()),
        "srft_positive_loss": float(pos),
        "srft_negative_loss": float(neg),
        "srft_demo_entropy": float(h.expand_as(m)[demo_m > 0].mean()),
        "srft_positive_weight_mean": float(
            (SRFT["positive_coef"] * torch.exp(sign * h)).expand_as(m)[pos_m > 0].mean()
        ),
    }
    return logp_leaves, sft + demo_pg + pos + neg + regs, true


CASES = [("hpt", 1), ("srft", 1), ("srft", -1), ("relift", 1)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("agg", "scale_factor"), AGGS)
@pytest.mark.parametrize(("variant", "sign"), CASES)
def test_hybrid_gradient_and_metrics_match_the_formula_in_every_layout(
    variant, sign, agg, scale_factor, layout
):
    padded = _hybrid_padded(variant)
    cfg = {"variant": variant, "hpt": {"sft_coef": SFT_COEF}, "srft": {**SRFT, "positive_entropy_sign": sign}}
    chord = load_chord_config(cfg)
    config = _actor_config(agg, scale_factor)
    mu = 1.0 if variant == "relift" else 0.0

    def loss_fn(model_output, data):
        tu.assign_non_tensor(data, **{MU: mu})
        return chord_actor_loss(config, chord, model_output, data)

    grads, metrics = run_layout(LAYOUTS[layout], padded, loss_fn, chord=chord, agg=agg)
    leaves, loss_ref, true = _reference(
        padded, variant, agg, float(scale_factor or padded["response_mask"].shape[1]), sign
    )
    expected = torch.autograd.grad(loss_ref, leaves, allow_unused=True)
    for row, (got, want) in enumerate(zip(grads, expected, strict=True)):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6, msg=lambda s, r=row: f"row {r}: {s}")
    for key, value in true.items():
        assert metrics[f"actor/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
