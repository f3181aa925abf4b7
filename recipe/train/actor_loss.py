"""The actor's loss on FSDP shards: verl's `ppo_loss` contract, the CHORD objective inside.

`chord_actor_loss(config, chord, model_output, data, dp_group)` is installed on the actor in
place of verl's `ppo_loss`. For one micro-batch it gathers the inputs, calls
`chord.losses.chord_loss`, and adds the entropy bonus and the KL penalty over on-policy rows
only (all inside `chord.losses`, which validates the inputs once). Both regularisers belong to
the GRPO term, so they are scaled by `1 - mu` as well:

    L = (1 - mu) * (L_pg - c_ent * H + c_kl * KL)(on-policy rows) + mu * L_SFT(expert rows)

Every term is divided by its *global* count for the whole mini-batch (summed over micro-batches
and data-parallel ranks by the worker before the first micro-batch, `ChordTrainingWorker`), and
multiplied by the data-parallel size because FSDP averages gradients over ranks: the update does
not depend on micro-batching or on the number of ranks.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import kl_penalty
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import no_padding_2_padding

from chord.losses import chord_loss, luffy_loss
from recipe.train.config import ChordConfig

# Keys the driver puts in the batch (per row) and the worker / driver put in its meta (scalars).
IS_EXPERT = "is_expert"
QUALITY = "chord_quality"
MU = "chord_mu"
PG_NORMALIZER = "chord_pg_normalizer"
SFT_NORMALIZER = "chord_sft_normalizer"

# Terms divided by a global count add up over micro-batches and ranks; diagnostics are means.
_SUMMED = {"pg_loss", "sft_loss", "chord_loss", "luffy_loss", "offpolicy_loss", "entropy_loss", "kl_loss"}


def chord_actor_loss(
    config: ActorConfig, chord: ChordConfig, model_output: dict, data: TensorDict, dp_group=None
) -> tuple[torch.Tensor, dict]:
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy", None)
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)

    dp_size = data["dp_size"]
    mu = float(tu.get_non_tensor_data(data, MU, default=0.0))
    pg_norm = float(data[PG_NORMALIZER])
    sft_norm = float(data[SFT_NORMALIZER])

    fields = ["response_mask", "old_log_probs", "advantages", IS_EXPERT]
    for optional in ("ref_log_prob", QUALITY):
        if optional in data:
            fields.append(optional)
    batch = data.select(*fields).to_padded_tensor()
    mask = batch["response_mask"].to(torch.float32)
    is_expert = batch[IS_EXPERT].to(torch.bool)
    ref_log_prob = batch.get("ref_log_prob", None)
    # The regularisers of the GRPO term, as verl computes them (entropy of the model output,
    # verl's KL estimator against the reference); chord.losses aggregates them over on-policy rows.
    use_entropy = entropy is not None and config.entropy_coeff != 0.0
    kl = None
    if config.use_kl_loss:
        kl = kl_penalty(logprob=log_prob, ref_logprob=ref_log_prob, kl_penalty=config.kl_loss_type)
    regularizers = {
        "entropy": entropy if use_entropy else None,
        "entropy_coeff": config.entropy_coeff if use_entropy else 0.0,
        "kl": kl,
        "kl_coef": config.kl_loss_coef if config.use_kl_loss else 0.0,
    }
    common = {
        "clip_low": config.clip_ratio_low,
        "clip_high": config.clip_ratio_high,
        "clip_c": config.clip_ratio_c,
        "agg": config.loss_agg_mode,
    }
    if chord.spec.loss == "luffy":  # one objective over all rows, one normaliser
        loss, raw = luffy_loss(
            log_prob,
            batch["old_log_probs"],
            batch["advantages"],
            mask,
            is_expert,
            gamma=chord.luffy.gamma,
            normalizer=pg_norm + sft_norm,
            regularizer_normalizer=pg_norm,
            **common,
            **regularizers,
        )
    else:
        loss, raw = chord_loss(
            log_prob,
            batch["old_log_probs"],
            batch["advantages"],
            mask,
            is_expert,
            mu=mu,
            sft_weighting=chord.spec.sft_weighting or "nll",
            ref_logp=ref_log_prob if chord.spec.needs_ref_logp else None,
            quality=batch.get(QUALITY, None) if chord.spec.needs_quality else None,
            pg_normalizer=pg_norm,
            sft_normalizer=sft_norm,
            cutoff_prob=chord.sft.cutoff_prob,
            iw_temp=chord.iw.temp,
            iw_w_max=chord.iw.w_max,
            iw_normalize=chord.iw.normalize,
            **common,
            **regularizers,
        )
    metrics: dict = {}
    if config.use_kl_loss:
        metrics["actor/kl_coef"] = config.kl_loss_coef

    for key, value in raw.items():
        if key in ("mu", "expert_rows", "on_policy_rows", "expert_tokens", "on_policy_tokens"):
            continue  # the driver logs these once per step, exactly
        aggregation = AggregationType.SUM if key in _SUMMED else AggregationType.MEAN
        metrics[f"actor/{key}"] = Metric(value=value, aggregation=aggregation)
    return loss * dp_size, metrics
