"""The actor loss on verl's real data path: with mu = 0 and no expert rows it is verl's GRPO loss.

Builds a padded rollout batch, converts it with verl's own `left_right_2_no_padding` (what
`_update_actor` does), and compares `chord_actor_loss` with verl's `ppo_loss` — value and
gradient — under verl's global normalisation (`batch_num_tokens`, `dp_size`).
"""

from __future__ import annotations

import pytest
import torch

verl = pytest.importorskip("verl")

from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.workers.config import FSDPActorConfig  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402
from verl.workers.utils.padding import left_right_2_no_padding  # noqa: E402

from recipe.train.actor_loss import (  # noqa: E402
    IS_EXPERT,
    MU,
    assign_mini_batch_sums,
    chord_actor_loss,
    mini_batch_sums,
)
from recipe.train.config import load_chord_config  # noqa: E402


def _batch(n: int = 4, prompt: int = 3, response: int = 5, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    resp_len = torch.tensor([5, 3, 4, 1])[:n]
    prompt_len = torch.tensor([3, 2, 3, 1])[:n]
    attention = torch.zeros(n, prompt + response, dtype=torch.long)
    response_mask = torch.zeros(n, response, dtype=torch.long)
    for i in range(n):
        attention[i, prompt - prompt_len[i] : prompt + resp_len[i]] = 1
        response_mask[i, : resp_len[i]] = 1
    position = (attention.cumsum(-1) - 1).clamp(min=0)
    td = TensorDict(
        {
            "input_ids": torch.randint(0, 50, (n, prompt + response), generator=g),
            "prompts": torch.zeros(n, prompt, dtype=torch.long),
            "responses": torch.zeros(n, response, dtype=torch.long),
            "attention_mask": attention,
            "position_ids": position,
            "response_mask": response_mask,
            "old_log_probs": -torch.rand(n, response, generator=g) * 3,
            "advantages": torch.randn(n, 1, generator=g).expand(n, response).contiguous(),
        },
        batch_size=n,
    )
    return left_right_2_no_padding(td)


def _model_output(data: TensorDict, seed: int = 1) -> tuple[dict, torch.Tensor]:
    """log_probs as verl's engine returns them: nested, one entry per real token."""
    g = torch.Generator().manual_seed(seed)
    total = int(data["input_ids"].values().numel())
    flat = (-torch.rand(total, generator=g) * 3).requires_grad_(True)
    nested = torch.nested.nested_tensor_from_jagged(flat, offsets=data["input_ids"].offsets())
    return {"log_probs": nested}, flat


def _actor_config(**overrides) -> FSDPActorConfig:
    base = dict(
        strategy="fsdp2",
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=4,
        rollout_n=1,
        loss_agg_mode="token-mean",
        use_kl_loss=False,
        entropy_coeff=0.0,
    )
    base.update(overrides)
    return FSDPActorConfig(**base)


@pytest.mark.parametrize("dp_size", [1, 2])
def test_grpo_variant_equals_verl_ppo_loss_value_and_gradient(dp_size):
    data = _batch()
    tokens = int(data["loss_mask"].sum())
    tu.assign_non_tensor(data, dp_size=dp_size, batch_num_tokens=tokens, global_batch_size=4)
    config = _actor_config()

    out_verl, flat_verl = _model_output(data)
    loss_verl, _ = ppo_loss(config, out_verl, data.clone())
    (grad_verl,) = torch.autograd.grad(loss_verl, flat_verl)

    chord_data = data.clone()
    chord_data[IS_EXPERT] = torch.zeros(4, dtype=torch.bool)
    chord = load_chord_config({"variant": "grpo"})
    # dp ranks holding the same rows: the all-reduced sums are dp times this rank's
    assign_mini_batch_sums(chord_data, mini_batch_sums(chord_data, chord, "token-mean") * dp_size)
    tu.assign_non_tensor(chord_data, **{MU: 0.0})
    out_chord, flat_chord = _model_output(data)
    loss_chord, metrics = chord_actor_loss(config, chord, out_chord, chord_data)
    (grad_chord,) = torch.autograd.grad(loss_chord, flat_chord)

    assert loss_chord.item() == pytest.approx(loss_verl.item() / dp_size, rel=1e-6, abs=1e-7)
    torch.testing.assert_close(grad_chord, grad_verl / dp_size, rtol=1e-5, atol=1e-7)
    assert "actor/pg_loss" in metrics


def test_expert_rows_do_not_touch_the_policy_term():
    """Adding expert rows with mu=0 leaves the GRPO gradient on the rollout rows unchanged."""
    data = _batch()
    config = _actor_config()
    chord = load_chord_config(
        {"variant": "chord_phi", "expert": {"files": ["x.parquet"], "rows_per_step": 1}}
    )

    is_expert = torch.tensor([False, False, False, True])
    data[IS_EXPERT] = is_expert
    assign_mini_batch_sums(data, mini_batch_sums(data, chord, "token-mean"))
    tu.assign_non_tensor(data, dp_size=1, **{MU: 0.0})
    out, flat = _model_output(data)
    loss, _ = chord_actor_loss(config, chord, out, data)
    (grad,) = torch.autograd.grad(loss, flat)
    offsets = data["input_ids"].offsets()
    assert torch.all(grad[offsets[3] : offsets[4]] == 0)  # the expert row gets no gradient at mu = 0
    assert grad[: offsets[3]].abs().sum() > 0


def test_phi_sft_term_is_weighted_by_mu():
    data = _batch()
    config = _actor_config()
    chord = load_chord_config(
        {"variant": "chord_phi", "expert": {"files": ["x.parquet"], "rows_per_step": 4}}
    )
    data[IS_EXPERT] = torch.ones(4, dtype=torch.bool)
    losses = {}
    for mu in (0.25, 0.5):
        d = data.clone()
        assign_mini_batch_sums(d, mini_batch_sums(d, chord, "token-mean"))
        tu.assign_non_tensor(d, dp_size=1, **{MU: mu})
        out, _ = _model_output(d)
        losses[mu], _ = chord_actor_loss(config, chord, out, d)
    assert losses[0.5].item() == pytest.approx(2 * losses[0.25].item(), rel=1e-6)
