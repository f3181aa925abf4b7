"""The actor loss through verl's real data path, in every layout, against the formulas.

A mixed batch (on-policy and expert rows of different lengths) goes through verl's own
`left_right_2_no_padding`, `index_select_tensor_dict` (a rank's rows) and
`prepare_micro_batches` (fixed or dynamic micro-batches), the worker's per-mini-batch sums
(`mini_batch_sums`, summed over the simulated ranks as the all-reduce does), then
`chord_actor_loss` per micro-batch with backward; gradients are averaged over ranks as FSDP
does and metrics are reduced with verl's `append_to_dict` + `Metric.aggregate_dp`.
The result is compared with an independent full-batch computation of ALGORITHMS.md
(`_reference`), in five layouts: 1 micro-batch, 4 micro-batches, uneven (dynamic)
micro-batches, 2 ranks, 2 uneven ranks. With mu = 0 and no expert rows it is also compared
with verl's own `ppo_loss` in the same layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

verl = pytest.importorskip("verl")

from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.utils.metric import Metric  # noqa: E402
from verl.utils.py_functional import append_to_dict  # noqa: E402
from verl.workers.config import FSDPActorConfig  # noqa: E402
from verl.workers.engine.utils import prepare_micro_batches  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding  # noqa: E402

from recipe.train.actor_loss import (  # noqa: E402
    IS_EXPERT,
    MU,
    PREFIX_MASK,
    QUALITY,
    ROLLOUT_IS_WEIGHTS,
    assign_mini_batch_sums,
    chord_actor_loss,
    mini_batch_sums,
    needs_iw_sums,
)
from recipe.train.config import load_chord_config  # noqa: E402

PROMPT_LEN = [3, 1, 4, 2, 2, 4, 1, 3]
RESP_LEN = [6, 2, 5, 1, 4, 3, 6, 2]
EXPERT = [False, True, False, False, True, False, True, False]
P_WIDTH, R_WIDTH, N = 4, 6, 8
ENTROPY_COEFF, KL_COEF, MU_VALUE = 0.05, 0.3, 0.4


@dataclass(frozen=True)
class Layout:
    ranks: tuple[tuple[int, ...], ...]  # rows of each data-parallel rank
    micro: int | None = None  # fixed micro-batch rows; None: dynamic (token budget)
    max_tokens: int = 0  # dynamic: max_token_len_per_gpu


LAYOUTS = {
    "1_micro": Layout(ranks=(tuple(range(8)),), micro=8),
    "4_micro": Layout(ranks=(tuple(range(8)),), micro=2),
    "uneven_micro": Layout(ranks=(tuple(range(8)),), max_tokens=13),
    "2_ranks": Layout(ranks=((0, 1, 2, 3), (4, 5, 6, 7)), micro=2),
    "2_uneven_ranks": Layout(ranks=((0, 1, 2, 3, 4), (5, 6, 7)), max_tokens=12),
}


def _padded(expert: list[bool], seed: int = 0) -> dict[str, torch.Tensor]:
    """verl's left/right-padded rollout layout, plus the CHORD fields."""
    g = torch.Generator().manual_seed(seed)
    attention = torch.zeros(N, P_WIDTH + R_WIDTH, dtype=torch.long)
    response_mask = torch.zeros(N, R_WIDTH, dtype=torch.long)
    for i in range(N):
        attention[i, P_WIDTH - PROMPT_LEN[i] : P_WIDTH + RESP_LEN[i]] = 1
        response_mask[i, : RESP_LEN[i]] = 1
    is_expert = torch.tensor(expert)
    adv = torch.randn(N, 1, generator=g).expand(N, R_WIDTH).contiguous()
    old = -torch.rand(N, R_WIDTH, generator=g) * 2
    is_weights = 0.5 + torch.rand(N, R_WIDTH, generator=g)
    return {
        "input_ids": torch.randint(0, 50, (N, P_WIDTH + R_WIDTH), generator=g),
        "prompts": torch.zeros(N, P_WIDTH, dtype=torch.long),
        "responses": torch.zeros(N, R_WIDTH, dtype=torch.long),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
        "response_mask": response_mask,
        "old_log_probs": torch.where(is_expert.unsqueeze(-1), torch.zeros_like(old), old),
        "advantages": adv,
        "ref_log_prob": -torch.rand(N, R_WIDTH, generator=g) * 2,
        QUALITY: torch.rand(N, generator=g) + 0.2,
        ROLLOUT_IS_WEIGHTS: torch.where(is_expert.unsqueeze(-1), torch.ones_like(is_weights), is_weights),
        IS_EXPERT: is_expert,
        "row_id": torch.arange(N),
    }


def _leaves(seed: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-row model outputs (log-probs, entropy) over the row's real tokens, as leaves."""
    g = torch.Generator().manual_seed(seed)
    sizes = [p + r for p, r in zip(PROMPT_LEN, RESP_LEN, strict=True)]
    logp = [(-torch.rand(n, generator=g) * 2 - 0.05).requires_grad_(True) for n in sizes]
    ent = [(torch.rand(n, generator=g) * 3).requires_grad_(True) for n in sizes]
    return logp, ent


def _nested(leaves: list[torch.Tensor], rows: list[int], like: TensorDict) -> torch.Tensor:
    flat = torch.cat([leaves[i] for i in rows])
    return torch.nested.nested_tensor_from_jagged(flat, offsets=like["input_ids"].offsets())


def _actor_config(agg: str, scale_factor: int | None, use_kl: bool = True) -> FSDPActorConfig:
    return FSDPActorConfig(
        strategy="fsdp2",
        ppo_mini_batch_size=8,
        ppo_micro_batch_size_per_gpu=2,
        rollout_n=1,
        loss_agg_mode=agg,
        loss_scale_factor=scale_factor,
        use_kl_loss=use_kl,
        kl_loss_coef=KL_COEF,
        kl_loss_type="mse",
        entropy_coeff=ENTROPY_COEFF,
        clip_ratio_low=0.2,
        clip_ratio_high=0.25,
        clip_ratio_c=3.0,
    )


def run_layout(layout: Layout, padded: dict, loss_fn, chord=None, agg="token-mean", verl_meta=False):
    """One mini-batch update in `layout`: (per-row log-prob gradients, aggregated metrics)."""
    logp_leaves, ent_leaves = _leaves()
    full = left_right_2_no_padding(TensorDict(dict(padded), batch_size=N))
    dp = len(layout.ranks)
    rank_data = [tu.index_select_tensor_dict(full, list(rows)) for rows in layout.ranks]
    if chord is not None:  # the worker's per-mini-batch preparation, all-reduced over ranks
        total = 0
        for rows, data in zip(layout.ranks, rank_data, strict=True):
            logp = None
            if needs_iw_sums(chord):  # the no-grad forward with the mini-batch's parameters
                logp = no_padding_2_padding(_nested(logp_leaves, list(rows), data), data).detach()
            total = total + mini_batch_sums(data, chord, agg, logp)
        for data in rank_data:
            assign_mini_batch_sums(data, total)
    tokens = sum(int(d["loss_mask"].sum()) for d in rank_data)
    per_rank_metrics = []
    micro_counts = []
    for data in rank_data:  # what the engine assigns before splitting
        batch_rows = N if verl_meta else None
        tu.assign_non_tensor(data, dp_size=dp, batch_num_tokens=tokens, global_batch_size=batch_rows)
        if layout.micro is None:
            tu.assign_non_tensor(data, use_dynamic_bsz=True, max_token_len_per_gpu=layout.max_tokens)
        else:
            tu.assign_non_tensor(data, use_dynamic_bsz=False, micro_batch_size_per_gpu=layout.micro)
        micro_counts.append(len(prepare_micro_batches(data)[0]))
    for data in rank_data:  # same number of micro-batches on every rank (verl syncs the max)
        micro_batches, _ = prepare_micro_batches(data, min_num_micro_batch=max(micro_counts))
        metrics: dict = {}
        for mb in micro_batches:
            rows = mb["row_id"].tolist()
            output = {"log_probs": _nested(logp_leaves, rows, mb), "entropy": _nested(ent_leaves, rows, mb)}
            loss, m = loss_fn(model_output=output, data=mb)
            loss.backward()
            append_to_dict(metrics, m)
        per_rank_metrics.append(metrics)
    if dp > 1 and layout.micro is not None:
        assert len(set(micro_counts)) == 1
    reduced = {}
    for key, value in per_rank_metrics[0].items():
        if isinstance(value, Metric):
            reduced[key] = Metric.aggregate_dp([m[key] for m in per_rank_metrics])
    grads = [(leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)) / dp for leaf in logp_leaves]
    return grads, reduced


# ----------------------------------------------------------------- the independent reference


def _num(v: torch.Tensor, m: torch.Tensor, agg: str, horizon: float) -> torch.Tensor:
    rows = [v[b][m[b] > 0] for b in range(v.shape[0])]
    if agg == "seq-mean-token-mean":
        return sum((r.mean() for r in rows if len(r)), torch.zeros(()))
    total = sum((r.sum() for r in rows), torch.zeros(()))
    return total / horizon if agg == "seq-mean-token-sum-norm" else total


def _den(m: torch.Tensor, agg: str) -> float:
    return float(m.sum()) if agg == "token-mean" else float((m.sum(-1) > 0).sum())


def _agg(v, m, agg, horizon, den=None):
    d = _den(m, agg) if den is None else den
    return _num(v, m, agg, horizon) / d if d > 0 else torch.zeros(())


def _reference(leaves, padded, variant, agg, horizon, normalize=False, gamma=0.1):
    """Full-batch loss (with grad to the per-row `leaves`) and the true metric values."""
    logp_leaves, ent_leaves = leaves
    full = left_right_2_no_padding(TensorDict(dict(padded), batch_size=N))
    logp = no_padding_2_padding(_nested(logp_leaves, list(range(N)), full), full)
    ent = no_padding_2_padding(_nested(ent_leaves, list(range(N)), full), full)
    m = padded["response_mask"].float()
    ex = padded[IS_EXPERT].float().unsqueeze(-1)
    on_m, ex_m = m * (1 - ex), m * ex
    old, adv, ref = padded["old_log_probs"], padded["advantages"], padded["ref_log_prob"]
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 0.8, 1.25)
    surrogate = torch.maximum(-adv * ratio, -adv * clipped)
    dual = (adv < 0) & (surrogate > -adv * 3.0)
    surrogate = torch.where(adv < 0, torch.minimum(surrogate, -adv * 3.0), surrogate)
    surrogate = surrogate * padded[ROLLOUT_IS_WEIGHTS]
    kl = 0.5 * (logp - ref) ** 2
    p = torch.exp(logp.detach())
    on_tok, ex_tok = on_m > 0, ex_m > 0
    true = {
        "pg_clipfrac": float(((-adv * clipped) > (-adv * ratio))[on_tok].float().mean()),
        "pg_clipfrac_lower": float(dual[on_tok].float().mean()),
        "ppo_kl": float((old - logp.detach())[on_tok].mean()),
    }
    if ex_tok.any():
        true["expert_p_mean"] = float(p[ex_tok].mean())
    entropy_loss = _agg(ent, on_m, agg, horizon)
    kl_loss = _agg(kl, on_m, agg, horizon)
    true["entropy_loss"], true["kl_loss"] = float(entropy_loss.detach()), float(kl_loss.detach())
    regs = -ENTROPY_COEFF * entropy_loss + KL_COEF * kl_loss
    if variant == "luffy":
        n = _den(m, agg)
        pg = _agg(surrogate, on_m, agg, horizon, den=n)
        off = _agg(-adv * torch.exp(logp) / (torch.exp(logp) + gamma), ex_m, agg, horizon, den=n)
        true.update(luffy_loss=float(pg + off), pg_loss=float(pg), offpolicy_loss=float(off))
        return pg + off + regs, true
    pg = _agg(surrogate, on_m, agg, horizon)
    weighting = load_chord_config(_chord_cfg(variant)).spec.sft_weighting
    if weighting in ("iw", "iw_q"):
        n_tok = ex_m.sum(-1)
        mean_diff = ((logp.detach() - ref) * ex_m).sum(-1) / n_tok.clamp(min=1)
        w = torch.exp(mean_diff).clamp(0, 16.0) * (n_tok > 0)
        if weighting == "iw_q":
            w = w * padded[QUALITY]
        if normalize:
            w = w * (n_tok > 0).sum() / w.sum()
        w = w.unsqueeze(-1).expand_as(m)
    elif weighting == "iw_token":
        w = torch.exp(logp.detach() - ref).clamp(0.2, 1.8) * ex_m
        if normalize:
            w = w * ex_m.sum() / w.sum()
    elif weighting == "phi":
        w = p * (1 - p)
    elif weighting == "dft":
        w = p
    else:
        w = torch.ones_like(p)
    sft = _agg(-w * logp, ex_m, agg, horizon)
    objective = (1 - MU_VALUE) * pg + MU_VALUE * sft
    true.update(pg_loss=float(pg), sft_loss=float(sft), chord_loss=float(objective))
    if ex_tok.any():
        true.update(
            phi_mean=float((p * (1 - p))[ex_tok].mean()),
            sft_weight_mean=float(w[ex_tok].mean()),
            sft_weight_max=float(w[ex_tok].max()),
        )
    return (1 - MU_VALUE) * (pg + regs) + MU_VALUE * sft, true


def _chord_cfg(variant: str, normalize: bool = False) -> dict:
    cfg = {"variant": variant, "iw": {"normalize": normalize}}
    if variant not in ("grpo", "luffy"):
        cfg["expert"] = {"files": ["x.parquet"], "rows_per_step": 3}
    return cfg


CASES = [
    ("grpo", False),
    ("chord_phi", False),
    ("chord_mu", False),
    ("dft", False),
    ("iw_sft", False),
    ("iw_sft", True),
    ("iw_sft_q", True),
    ("iw_token", False),
    ("iw_token", True),
    ("luffy", False),
]
AGGS = [("token-mean", None), ("seq-mean-token-mean", None), ("seq-mean-token-sum-norm", 16)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("agg", "scale_factor"), AGGS)
@pytest.mark.parametrize(("variant", "normalize"), CASES)
def test_gradient_and_metrics_match_the_formula_in_every_layout(
    variant, normalize, agg, scale_factor, layout
):
    expert = [False] * N if variant == "grpo" else EXPERT
    padded = _padded(expert)
    if variant == "luffy":  # expert rows carry LUFFY advantages
        g = torch.Generator().manual_seed(5)
        padded["advantages"] = torch.randn(N, 1, generator=g).expand(N, R_WIDTH).contiguous()
    chord = load_chord_config(_chord_cfg(variant, normalize))
    config = _actor_config(agg, scale_factor)

    def loss_fn(model_output, data):
        tu.assign_non_tensor(data, **{MU: MU_VALUE})
        return chord_actor_loss(config, chord, model_output, data)

    grads, metrics = run_layout(LAYOUTS[layout], padded, loss_fn, chord=chord, agg=agg)

    leaves = _leaves()  # the same values as the layout run's, fresh leaves for the reference
    loss_ref, true = _reference(leaves, padded, variant, agg, float(scale_factor or R_WIDTH), normalize)
    expected = torch.autograd.grad(loss_ref, leaves[0], allow_unused=True)
    for row, (got, want) in enumerate(zip(grads, expected, strict=True)):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6, msg=lambda s, r=row: f"row {r}: {s}")
    for key, value in true.items():
        assert metrics[f"actor/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key


VERL_AGGS = [
    ("token-mean", None),
    ("seq-mean-token-mean", None),
    ("seq-mean-token-sum", None),
    ("seq-mean-token-sum-norm", None),
    ("seq-mean-token-sum-norm", 100),
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("agg", "scale_factor"), VERL_AGGS)
def test_mu_zero_equals_verl_ppo_loss_in_every_layout(agg, scale_factor, layout):
    """No expert rows, mu = 0: verl's GRPO loss (with `loss_scale_factor`, rollout IS weights,
    entropy bonus and KL loss), value of every logged loss and gradient, at any dp."""
    padded = _padded([False] * N)
    config = _actor_config(agg, scale_factor)
    chord = load_chord_config({"variant": "grpo"})

    def verl_fn(model_output, data):
        return ppo_loss(config, model_output, data)

    def chord_fn(model_output, data):
        return chord_actor_loss(config, chord, model_output, data)

    grads_verl, metrics_verl = run_layout(LAYOUTS[layout], padded, verl_fn, verl_meta=True)
    grads_chord, metrics_chord = run_layout(LAYOUTS[layout], padded, chord_fn, chord=chord, agg=agg)
    for row, (got, want) in enumerate(zip(grads_chord, grads_verl, strict=True)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=lambda s, r=row: f"row {r}: {s}")
    for ours, theirs in (("actor/pg_loss", "actor/pg_loss"), ("actor/entropy_loss", "actor/entropy_loss"),
                         ("actor/kl_loss", "kl_loss")):  # fmt: skip
        assert metrics_chord[ours] == pytest.approx(metrics_verl[theirs], rel=1e-5, abs=1e-7), ours


# ------------------------------------------------------------------ prefix-guided rows (uft, trapo)
# Rows start with expert-prefix tokens (PREFIX_MASK, out of response_mask); no expert rows.
PREFIX_LEN = [2, 0, 1, 0, 3, 0, 0, 1]
PREFIX_CASES = [
    ("uft", {"uft": {"beta": 0.3}}, "nll", 0.3, 0.1),
    ("trapo", {"trapo": {"coef": 0.7, "alpha": 0.3}}, "trust_region", 0.7, 0.3),
]


def _prefix_padded() -> dict[str, torch.Tensor]:
    padded = _padded([False] * N)
    prefix = torch.zeros(N, R_WIDTH)
    for i, p in enumerate(PREFIX_LEN):
        prefix[i, :p] = 1.0
        padded["response_mask"][i, :p] = 0
    padded[PREFIX_MASK] = prefix
    return padded


def _prefix_reference(leaves, padded, weighting, coef, alpha, agg, horizon):
    logp_leaves, ent_leaves = leaves
    full = left_right_2_no_padding(TensorDict(dict(padded), batch_size=N))
    logp = no_padding_2_padding(_nested(logp_leaves, list(range(N)), full), full)
    ent = no_padding_2_padding(_nested(ent_leaves, list(range(N)), full), full)
    m, pm = padded["response_mask"].float(), padded[PREFIX_MASK]
    old, adv, ref = padded["old_log_probs"], padded["advantages"], padded["ref_log_prob"]
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 0.8, 1.25)
    surrogate = torch.maximum(-adv * ratio, -adv * clipped)
    surrogate = torch.where(adv < 0, torch.minimum(surrogate, -adv * 3.0), surrogate)
    surrogate = surrogate * padded[ROLLOUT_IS_WEIGHTS]
    pg = _agg(surrogate, m, agg, horizon)
    entropy_loss, kl_loss = _agg(ent, m, agg, horizon), _agg(0.5 * (logp - ref) ** 2, m, agg, horizon)
    p = torch.exp(logp)
    per_token = -logp if weighting == "nll" else -p / p.detach().clamp(min=alpha)
    sft = per_token[pm > 0].sum() / pm.sum()  # token mean over all prefix tokens of the mini-batch
    true = {
        "pg_loss": float(pg.detach()),
        "prefix_loss": float(sft.detach()),
        "prefix_objective": float((pg + coef * sft).detach()),
        "prefix_p_mean": float(p.detach()[pm > 0].mean()),
        "entropy_loss": float(entropy_loss.detach()),
        "kl_loss": float(kl_loss.detach()),
        "ppo_kl": float((old - logp.detach())[m > 0].mean()),
    }
    return pg + coef * sft - ENTROPY_COEFF * entropy_loss + KL_COEF * kl_loss, true


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("agg", "scale_factor"), AGGS)
@pytest.mark.parametrize(("variant", "section", "weighting", "coef", "alpha"), PREFIX_CASES)
def test_prefix_loss_matches_the_formula_in_every_layout(
    variant, section, weighting, coef, alpha, agg, scale_factor, layout
):
    """UFT / TRAPO through verl's data path: GRPO over policy tokens only, the prefix term a
    token mean over all prefix tokens of the mini-batch, at 1 or several micro-batches and ranks."""
    padded = _prefix_padded()
    chord = load_chord_config({"variant": variant, "prefix": section})
    config = _actor_config(agg, scale_factor)

    def loss_fn(model_output, data):
        return chord_actor_loss(config, chord, model_output, data)

    grads, metrics = run_layout(LAYOUTS[layout], padded, loss_fn, chord=chord, agg=agg)
    leaves = _leaves()
    horizon = float(scale_factor or R_WIDTH)
    loss_ref, true = _prefix_reference(leaves, padded, weighting, coef, alpha, agg, horizon)
    expected = torch.autograd.grad(loss_ref, leaves[0])
    for row, (got, want) in enumerate(zip(grads, expected, strict=True)):
        torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6, msg=lambda s, r=row: f"row {r}: {s}")
    for key, value in true.items():
        assert metrics[f"actor/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_prefix_tokens_get_no_policy_gradient_through_verls_path():
    """coef 0: the gradient at every prefix token is exactly 0 (advantages there are non-zero)."""
    padded = _prefix_padded()
    padded["advantages"] = torch.ones(N, R_WIDTH) * 2.0
    chord = load_chord_config({"variant": "uft", "prefix": {"uft": {"beta": 0.0}}})
    config = _actor_config("token-mean", None, use_kl=False)  # entropy has leaves of its own

    def loss_fn(model_output, data):
        return chord_actor_loss(config, chord, model_output, data)

    grads, _ = run_layout(LAYOUTS["2_ranks"], padded, loss_fn, chord=chord)
    policy_grad = 0.0
    for row, grad in enumerate(grads):  # grad over the row's tokens: prompt, then response
        response = grad[PROMPT_LEN[row] - 1 : PROMPT_LEN[row] - 1 + RESP_LEN[row]]  # logits shift by one
        p = PREFIX_LEN[row]
        assert bool((response[:p] == 0).all()), row
        policy_grad += float(response[p:].abs().sum())
    assert policy_grad > 0.0  # the policy tokens did get the (unclipped) surrogate's gradient
