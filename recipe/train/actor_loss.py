"""The actor's loss on FSDP shards: verl's `ppo_loss` contract, the CHORD objective inside.

`chord_actor_loss(config, chord, model_output, data, dp_group)` is installed on the actor in
place of verl's `ppo_loss`. For one micro-batch it gathers the inputs and calls one public
function of `chord.losses` (`chord_loss`, `luffy_loss`, or `prefix_loss` for the prefix-guided
variants, with the rows' prefix-token mask `PREFIX_MASK`), which validates them once and adds
the entropy bonus and the KL penalty over on-policy rows. Both regularisers belong to the GRPO
term, so they are scaled by `1 - mu` as well:

    L = (1 - mu) * (L_pg - c_ent * H + c_kl * KL)(on-policy rows) + mu * L_SFT(expert rows)

Every cross-micro-batch quantity comes from `mini_batch_sums`, summed over the micro-batches
and data-parallel ranks of the mini-batch by the worker before the first micro-batch
(`ChordTrainingWorker`): each term's count (its normaliser), each kind's token count, and,
for `chord.iw.normalize`, the sum of the iw weights. The loss is multiplied by the
data-parallel size because FSDP averages gradients over ranks: the update does not depend on
micro-batching or on the number of ranks.

Metrics follow verl's aggregation (`Metric.aggregate_dp`: mean over ranks, then SUM or MEAN
over micro-batches). Every metric is logged as `dp * (this micro-batch's share)` with SUM, so
the logged value of a mini-batch is exact at any layout: loss terms are the terms themselves,
token diagnostics (`pg_clipfrac`, `ppo_kl`, `expert_p_mean`, `phi_mean`, ...) are means over
all tokens of their kind in the mini-batch (local sum / global count). `sft_weight_max` is MAX.

verl actor settings the loss reads: `clip_ratio(_low/_high)`, `clip_ratio_c`, `loss_agg_mode`
(not `token-sum`), `loss_scale_factor` (T of `seq-mean-token-sum-norm`), `entropy_coeff`,
`use_kl_loss`, `kl_loss_coef`, `kl_loss_type`, and the batch's `rollout_is_weights`
(rollout correction, on the GRPO surrogate). Everything else is refused at start-up by
`recipe.train.config.check_verl_settings`.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import kl_penalty
from verl.utils import tensordict_utils as tu
from verl.utils.metric import AggregationType, Metric
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import no_padding_2_padding

from chord.losses import chord_loss, chord_normalizers, luffy_loss, prefix_loss
from chord.losses.sft import IW_WEIGHTINGS, iw_weight_sums
from recipe.train.config import ChordConfig
from recipe.train.hybrid_config import HYBRID_LOSSES
from recipe.train.hybrid_loss import ACTIVE, CORRECT, NEG_NORMALIZER, POS_NORMALIZER, POS_TOKENS, hybrid_loss

# Keys the driver puts in the batch (per row) and the worker / driver put in its meta (scalars).
IS_EXPERT = "is_expert"
QUALITY = "chord_quality"
MU = "chord_mu"
ROLLOUT_IS_WEIGHTS = "rollout_is_weights"  # verl's rollout-correction weights (on-policy rows)
PG_NORMALIZER = "chord_pg_normalizer"
SFT_NORMALIZER = "chord_sft_normalizer"
ON_POLICY_TOKENS = "chord_on_policy_tokens"
EXPERT_TOKENS = "chord_expert_tokens"
IW_WEIGHT_SUM = "chord_iw_weight_sum"
IW_COUNT = "chord_iw_count"
PREFIX_MASK = "chord_prefix_mask"  # [B, T]: expert-prefix tokens of prefix-guided rows (not in response_mask)
PREFIX_TOKENS = "chord_prefix_tokens"
# The order of `mini_batch_sums`: one vector, one all-reduce.
SUM_KEYS = (PG_NORMALIZER, SFT_NORMALIZER, ON_POLICY_TOKENS, EXPERT_TOKENS, IW_WEIGHT_SUM, IW_COUNT)
# The hybrids' (recipe.train.hybrid_loss): SRFT's correct / incorrect rollouts' counts.
SUM_KEYS += (POS_NORMALIZER, NEG_NORMALIZER, POS_TOKENS)
# The prefix-guided methods' (uft, trapo): expert-prefix tokens.
SUM_KEYS += (PREFIX_TOKENS,)

# Terms divided by a global count add up over micro-batches and ranks.
_SUMMED = {
    "pg_loss",
    "sft_loss",
    "chord_loss",
    "luffy_loss",
    "offpolicy_loss",
    "entropy_loss",
    "kl_loss",
    "prefix_objective",
    "prefix_loss",
}
# Token means over each kind's tokens: logged as local sum / global count of that kind.
_ON_POLICY_MEANS = {"pg_clipfrac", "pg_clipfrac_lower", "ppo_kl"}
_EXPERT_MEANS = {"expert_p_mean", "sft_weight_mean", "phi_mean"}
_PREFIX_MEANS = {"prefix_p_mean"}  # over the prefix tokens of the mini-batch
_MAXIMA = {"sft_weight_max"}
_DRIVER_LOGGED = {"mu", "expert_rows", "on_policy_rows", "expert_tokens", "on_policy_tokens"}
# The hybrids' metrics (recipe.train.hybrid_loss); means over SRFT's correct-rollout tokens.
_SUMMED |= {"hpt_loss", "srft_loss", "srft_demo_pg_loss", "srft_positive_loss", "srft_negative_loss"}
_EXPERT_MEANS |= {"srft_demo_entropy", "srft_demo_advantage_mean"}
_POSITIVE_MEANS = {"srft_positive_weight_mean"}
_DRIVER_LOGGED |= {"positive_rows", "positive_tokens"}
_DRIVER_LOGGED |= {"prefix_tokens"}


def needs_iw_sums(chord: ChordConfig) -> bool:
    """Whether the loss needs the mini-batch's iw weight sums (`chord.iw.normalize` on an iw variant)."""
    return bool(chord.iw.normalize) and chord.spec.sft_weighting in IW_WEIGHTINGS


def mini_batch_sums(
    data: TensorDict, chord: ChordConfig, agg: str, logp: torch.Tensor | None = None
) -> torch.Tensor:
    """This rank's share of the mini-batch sums `SUM_KEYS` (float64 ``[10]``), to be summed over ranks.

    `data` is the rank's mini-batch (verl's no-padding layout). For `needs_iw_sums`, `logp`
    (``[B, T]``, aligned with the padded `response_mask`) is the policy's log-probs at the start
    of the mini-batch, i.e. ``sg(logp)`` of every micro-batch of it: the iw weights' sum over the
    expert rows and their count (rows, or tokens for `iw_token`).
    """
    fields = ["response_mask", IS_EXPERT]
    for optional in ("ref_log_prob", QUALITY, ACTIVE, CORRECT, PREFIX_MASK):
        if optional in data:
            fields.append(optional)
    batch = data.select(*fields).to_padded_tensor()
    mask = batch["response_mask"].to(torch.float32)
    if ACTIVE in batch.keys():  # rows carried along that take part in no term (HPT)
        mask = mask * batch[ACTIVE].to(mask.dtype).unsqueeze(-1)
    is_expert = batch[IS_EXPERT].to(torch.bool)
    pg, sft = chord_normalizers(mask, is_expert, agg)
    ex_mask = mask * is_expert.to(mask.dtype).unsqueeze(-1)
    sums = [pg, sft, (mask - ex_mask).sum(), ex_mask.sum()]
    hybrid_sums = [0.0, 0.0, 0.0]
    if CORRECT in batch.keys():  # SRFT: correct / incorrect own rollouts
        correct = batch[CORRECT].to(torch.bool) & ~is_expert
        # chord_normalizers(m, flags) counts (rows without the flag, rows with it): flag = incorrect
        pos, neg = chord_normalizers(mask - ex_mask, ~correct, agg)
        pos_mask = (mask - ex_mask) * correct.to(mask.dtype).unsqueeze(-1)
        hybrid_sums = [float(pos), float(neg), float(pos_mask.sum())]
    weight_sum = count = 0.0
    if needs_iw_sums(chord):
        if logp is None or "ref_log_prob" not in batch.keys():
            raise ValueError(
                "chord.iw.normalize: the mini-batch sums need the policy's log-probs and ref_log_prob"
            )
        weight_sum, count = iw_weight_sums(
            chord.spec.sft_weighting,
            logp.float(),
            batch["ref_log_prob"].float(),
            ex_mask,
            quality=batch.get(QUALITY, None),
            temp=chord.iw.temp,
            w_max=chord.iw.w_max,
        )
    prefix_tokens = float(batch[PREFIX_MASK].sum()) if PREFIX_MASK in batch.keys() else 0.0
    values = [float(x) for x in sums] + [weight_sum, count] + hybrid_sums + [prefix_tokens]
    return torch.tensor(values, dtype=torch.float64)


def assign_mini_batch_sums(data: TensorDict, sums: torch.Tensor) -> None:
    """Put the global (summed over ranks) `mini_batch_sums` into `data`'s meta for the loss."""
    tu.assign_non_tensor(data, **{key: float(v) for key, v in zip(SUM_KEYS, sums.tolist(), strict=True)})


def _share(value: float, local: float, total: float, dp_size: int) -> float:
    """A local mean over `local` tokens as this micro-batch's part of the mean over `total` tokens."""
    return value * local / total * dp_size if total > 0 else 0.0


def chord_actor_loss(
    config: ActorConfig, chord: ChordConfig, model_output: dict, data: TensorDict, dp_group=None
) -> tuple[torch.Tensor, dict]:
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy", None)
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)

    dp_size = int(data["dp_size"])
    mu = float(tu.get_non_tensor_data(data, MU, default=0.0))
    pg_norm = float(data[PG_NORMALIZER])
    sft_norm = float(data[SFT_NORMALIZER])

    fields = ["response_mask", "old_log_probs", "advantages", IS_EXPERT]
    for optional in ("ref_log_prob", QUALITY, ROLLOUT_IS_WEIGHTS, ACTIVE, CORRECT, PREFIX_MASK):
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
        "clip_low": config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio,
        "clip_high": config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio,
        "clip_c": config.clip_ratio_c,
        "agg": config.loss_agg_mode,
        "horizon": config.loss_scale_factor,  # verl: T of seq-mean-token-sum-norm (None: padded width)
        "pg_token_weights": batch.get(ROLLOUT_IS_WEIGHTS, None),
    }
    if chord.spec.loss in HYBRID_LOSSES:
        loss, raw = hybrid_loss(
            chord, log_prob, entropy, batch, data, mu=mu, pg_norm=pg_norm, sft_norm=sft_norm,
            common=common, regularizers=regularizers,
        )  # fmt: skip
    elif chord.spec.loss == "prefix":  # UFT / TRAPO: GRPO on policy tokens, SFT on prefix tokens
        if PREFIX_MASK not in batch.keys():
            raise ValueError(f"chord.variant={chord.variant!r}: the batch has no {PREFIX_MASK!r}")
        uft = chord.variant == "uft"
        loss, raw = prefix_loss(
            log_prob,
            batch["old_log_probs"],
            batch["advantages"],
            mask,
            batch[PREFIX_MASK].float(),
            weighting="nll" if uft else "trust_region",
            coef=chord.prefix.uft.beta if uft else chord.prefix.trapo.coef,
            alpha=chord.prefix.trapo.alpha,
            pg_normalizer=pg_norm,
            prefix_normalizer=float(data[PREFIX_TOKENS]),
            **common,
            **regularizers,
        )
    elif chord.spec.loss == "luffy":  # one objective over all rows, one normaliser
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
        iw_sums = None
        if needs_iw_sums(chord):
            iw_sums = (float(data[IW_WEIGHT_SUM]), float(data[IW_COUNT]))
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
            iw_sums=iw_sums,
            **common,
            **regularizers,
        )
    return loss * dp_size, _metrics(config, raw, data, dp_size)


def _metrics(config: ActorConfig, raw: dict[str, float], data: TensorDict, dp_size: int) -> dict:
    """verl Metrics whose `aggregate_dp` is the exact value for the whole mini-batch (module doc)."""
    on_total = float(data[ON_POLICY_TOKENS])
    ex_total = float(data[EXPERT_TOKENS])
    prefix_total = float(data[PREFIX_TOKENS])
    metrics: dict = {}
    if config.use_kl_loss:
        metrics["actor/kl_coef"] = config.kl_loss_coef
    for key, value in raw.items():
        if key in _DRIVER_LOGGED:
            continue  # the driver logs these once per step, exactly
        if key in _MAXIMA:
            metrics[f"actor/{key}"] = Metric(value=value, aggregation=AggregationType.MAX)
            continue
        if key in _SUMMED:
            share = value * dp_size
        elif key in _ON_POLICY_MEANS:
            share = _share(value, raw["on_policy_tokens"], on_total, dp_size)
        elif key in _EXPERT_MEANS:
            share = _share(value, raw["expert_tokens"], ex_total, dp_size)
        elif key in _POSITIVE_MEANS:
            share = _share(value, raw["positive_tokens"], float(data[POS_TOKENS]), dp_size)
        elif key in _PREFIX_MEANS:
            share = _share(value, raw["prefix_tokens"], prefix_total, dp_size)
        else:
            raise KeyError(f"chord_actor_loss: no aggregation rule for metric {key!r}")
        metrics[f"actor/{key}"] = Metric(value=share, aggregation=AggregationType.SUM)
    return metrics
