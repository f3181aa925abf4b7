"""`ChordRayTrainer`: verl's `RayPPOTrainer` with expert rows merged into every actor update.

Why verl's v0 trainer (`RayPPOTrainer.fit`, `trainer.use_v1=false`) and not the v1
TransferQueue trainer: (1) the batch is a `DataProto` on the driver right up to the actor
update, so merging expert rows is one concatenation, while v1 keeps rows as keyed entries in
TransferQueue whose padding, balancing and mini-batch arithmetic all assume rollout-only rows;
(2) `_update_actor(batch)` is a small method called right after advantages are computed, the
exact point CHORD needs, so no part of verl's loop is copied; (3) on CPU a v0 step is ~4x faster
(v1's replay buffer polls every 2 s), which is what makes the embedded demo and CI practical.
verl 0.9.1 is pinned, so the v0 path cannot disappear under us; porting to v1 means moving
`_merge_expert_rows` into a TransferQueue write before `_update_actor`.

What this class overrides, and nothing else:
- `_update_actor`: picks this step's mu, pulls `expert_rows` rows from the expert buffer,
  tokenised with the policy's chat template and padded to the batch's widths, marks them
  `is_expert` with advantage 0 (they never entered GRPO group statistics: verl computed the
  advantages before they joined), adds reference log-probs for iw-SFT, interleaves them evenly
  over data-parallel ranks and mini-batches, and calls verl's own `_update_actor`;
- `_save_checkpoint` / `_load_checkpoint`: the expert buffer's cursor and the expert files'
  fingerprints ride along in verl's checkpoint folder (`chord_state.json`, written last: the
  folder's commit marker, `recipe.train.checkpoints`); mu is a pure function of the step (and
  reward), so restoring `global_steps` restores it. Only a complete folder is resumed from;
  changed expert files stop the resume unless accepted;
- `_get_gen_batch` (prefix variants `uft`, `trapo` only): training rows name the `chord_prefix`
  agent loop and carry the step (`recipe.train.prefix_loop`); the update gets the rows'
  prefix-token mask (`PREFIX_MASK`, from the loop's per-row prefix lengths) and logs
  `prefix/mean_fraction`, `prefix/guided_rows`, `prefix/prefix_tokens`, `prefix/reward_guided`,
  `prefix/reward_plain` (the last two only when the step has such rows); verl's rollout dump
  (`trainer.rollout_data_dir`) gets each row's prefix length;
- `fit`: verl's loop with the resumable metrics record (`recipe.train.record`) and named stops
  (`recipe.train.stops`): a non-finite update (`recipe.train.nonfinite`) or a dead worker ends
  the run with one message.

Timing (seconds per step, logged with the actor metrics, verl's `marked_timer`):
`timing_s/chord_merge` (the whole driver-side merge) and its parts `timing_s/chord_merge/buffer`
(waiting for the buffer's rows: read and tokenised in the background when
`chord.expert.prefetch`), `.../pad`, `.../expert_rows` (tensors, reference log-probs),
`.../concat` and `.../interleave`. `chord/update_tokens` and `chord/update_response_tokens` count
the tokens (prompt + response, response only) the actor update runs on.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.utils.profiler import marked_timer

from chord.advantages import broadcast_to_tokens, grpo_outcome_advantages
from chord.data import ExpertBatch, ExpertBuffer
from chord.schedules import build_mu_schedule
from recipe.train import record
from recipe.train.actor_loss import IS_EXPERT, MU, PREFIX_MASK, QUALITY, ROLLOUT_IS_WEIGHTS
from recipe.train.checkpoints import (
    STATE_FILE,
    check_expert_files,
    choose_resume_point,
    read_state,
    read_tracker,
    write_state,
)
from recipe.train.config import ChordConfig, check_batch_arithmetic, expert_rows_per_step
from recipe.train.hybrids import HybridsMixin
from recipe.train.nonfinite import GLOBAL_STEP, ROW_ID, NonFiniteUpdate, describe
from recipe.train.prefix_loop import AGENT_NAME, PREFIX_FRACTION, PREFIX_LEN, STEP_KEY
from recipe.train.stops import ChordStop, NonFiniteStop, WorkerDiedStop, dead_worker_message, find_cause
from recipe.train.workers import NONFINITE_SKIPPED, NUM_MINI_BATCH

__all__ = ["STATE_FILE", "ChordRayTrainer"]

# Tensors the actor update reads; everything else in the rollout batch stays on the driver.
_ACTOR_KEYS = ("prompts", "responses", "input_ids", "attention_mask", "position_ids", "response_mask")


def build_expert_buffer(config: Any, chord: ChordConfig, tokenizer: Any) -> ExpertBuffer:
    """The expert buffer of a run: verl's `data` limits, and the RL prompts' chat-template kwargs
    (`data.apply_chat_template_kwargs`, e.g. Qwen3's `enable_thinking`), so an expert prompt is
    rendered exactly like an RL prompt with the same messages."""
    data_cfg = config.data
    kwargs = data_cfg.get("apply_chat_template_kwargs", None) or {}
    if not isinstance(kwargs, dict):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    return ExpertBuffer(
        list(chord.expert.files),
        tokenizer,
        max_prompt_length=data_cfg.max_prompt_length,
        max_response_length=data_cfg.max_response_length,
        overflow=chord.expert.overflow,
        shuffle=chord.expert.shuffle,
        seed=chord.expert.seed,
        schema=chord.expert.schema,
        shuffle_window_row_groups=chord.expert.shuffle_window_row_groups,
        chat_template_kwargs=kwargs,
        prefetch=chord.expert.prefetch,
    )


class ChordRayTrainer(HybridsMixin, RayPPOTrainer):
    def __init__(self, *args: Any, chord: ChordConfig, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.chord = chord
        self.mu_schedule = build_mu_schedule(chord.mu.schedule, **chord.mu.schedule_params())
        self.expert_rows = expert_rows_per_step(self.config, chord)
        check_batch_arithmetic(self.config, chord)  # also checked before Ray starts
        self.expert_buffer: ExpertBuffer | None = None
        self._merge_timing: dict[str, float] = {}
        self._record_loggers: list[record.ResumableFileLogger] = []
        self._row_names: list[str] = []  # what each row of the last merged batch is, for messages
        self._expert_row_names: list[str] = []
        self.nonfinite_skipped_total = 0
        self._uncommitted: tuple[int, str, dict] | None = None  # (step, folder, chord state)
        self._init_hybrids()  # HPT, SRFT, ReLIFT (recipe.train.hybrids)
        if self.expert_rows > 0 and chord.spec.uses_expert:
            self.expert_buffer = build_expert_buffer(self.config, chord, self.tokenizer)
            if chord.expert.prefetch:  # step 1's rows, built while the workers start
                self.expert_buffer.prefetch(self.expert_rows)

    # ------------------------------------------------------------------ the step
    def _validate(self, *args: Any, **kwargs: Any):
        self._validating = True
        try:
            return super()._validate(*args, **kwargs)
        finally:
            self._validating = False

    def _get_gen_batch(self, batch: DataProto) -> DataProto:
        """verl's generation batch; prefix variants: training rows run the `chord_prefix` agent loop
        at this step (validation keeps verl's plain single-turn loop)."""
        gen_batch = super()._get_gen_batch(batch)
        if self.chord.spec.loss == "prefix" and not getattr(self, "_validating", False):
            rows = len(gen_batch)
            gen_batch.non_tensor_batch["agent_name"] = np.array([AGENT_NAME] * rows, dtype=object)
            gen_batch.non_tensor_batch[STEP_KEY] = np.full(rows, int(self.global_steps), dtype=np.int64)
        return gen_batch

    def _prefix_rows(self, batch: DataProto, on_policy: DataProto) -> dict[str, float]:
        """The prefix-token mask of every row (`PREFIX_MASK`) and the step's prefix metrics."""
        if PREFIX_LEN not in batch.non_tensor_batch:
            raise ValueError(
                f"chord.variant={self.chord.variant!r}: the rollout rows have no {PREFIX_LEN!r}; "
                f"they were not generated by the {AGENT_NAME!r} agent loop"
            )
        lengths = torch.tensor([int(x) for x in batch.non_tensor_batch[PREFIX_LEN]], dtype=torch.long)
        width = on_policy.batch["responses"].shape[1]
        positions = torch.arange(width).unsqueeze(0)
        prefix_mask = (positions < lengths.unsqueeze(1)).float()
        valid = on_policy.batch["attention_mask"][:, -width:].float()
        on_policy.batch[PREFIX_MASK] = prefix_mask * valid
        guided = lengths > 0
        scores = batch.batch["token_level_scores"].sum(-1).float()
        metrics = {
            "prefix/mean_fraction": float(np.mean(batch.non_tensor_batch[PREFIX_FRACTION].astype(float))),
            "prefix/guided_rows": float(guided.sum()),
            "prefix/prefix_tokens": float(on_policy.batch[PREFIX_MASK].sum()),
        }
        if bool(guided.any()):
            metrics["prefix/reward_guided"] = float(scores[guided].mean())
        if bool((~guided).any()):
            metrics["prefix/reward_plain"] = float(scores[~guided].mean())
        return metrics

    def _log_rollout_data(self, batch: DataProto, reward_extra_infos_dict: dict, *args: Any, **kwargs: Any):
        """verl's rollout dump (`trainer.rollout_data_dir`); prefix variants add each row's prefix
        length and fraction, so a dumped row shows which of its tokens were the expert's."""
        if self.chord.spec.loss == "prefix" and PREFIX_LEN in batch.non_tensor_batch:
            reward_extra_infos_dict = dict(reward_extra_infos_dict)
            for key in (PREFIX_LEN, PREFIX_FRACTION):
                reward_extra_infos_dict[key] = batch.non_tensor_batch[key]
        return super()._log_rollout_data(batch, reward_extra_infos_dict, *args, **kwargs)

    def current_mu(self, batch: DataProto) -> float:
        if self.chord.spec.sft_weighting is None:
            return 0.0
        mean_reward = float(batch.batch["token_level_scores"].sum(-1).mean().item())
        return float(self.mu_schedule(self.global_steps, mean_reward))

    def fit(self):
        """verl's loop, with the resumable metrics record and named stops."""
        record.set_wandb_resume_env(self.config)
        with record.install(self._record_loggers, after_log=self._commit_checkpoint):
            try:
                return super().fit()
            except ChordStop:
                raise
            except Exception as exc:
                from ray.exceptions import RayActorError

                died = find_cause(exc, RayActorError)
                if died is None:
                    raise
                message = dead_worker_message(
                    died, self._actor_labels(), self.global_steps, self._resume_hint()
                )
                raise WorkerDiedStop(message) from exc

    def _actor_labels(self) -> dict[str, str]:
        """Ray actor id -> a worker's name ("actor_rollout worker rank 1", "the hf rollout server ...")."""
        labels = {}
        for name in ("actor_rollout_wg", "ref_policy_wg", "critic_wg"):
            group = getattr(self, name, None)
            for rank, handle in enumerate(getattr(group, "workers", None) or []):
                labels[handle._actor_id.hex()] = f"{name.removesuffix('_wg')} worker rank {rank}"
        server_manager = getattr(self, "llm_server_manager", None)
        replicas = server_manager.get_replicas() if server_manager is not None else []
        rollout_name = self.config.actor_rollout_ref.rollout.name
        for replica_rank, replica in enumerate(replicas):
            for index, handle in enumerate(getattr(replica, "servers", None) or []):
                labels[handle._actor_id.hex()] = (
                    f"the {rollout_name} rollout server (replica {replica_rank}, server {index})"
                )
        manager = getattr(self, "async_rollout_manager", None)
        for index, handle in enumerate(getattr(manager, "agent_loop_workers", None) or []):
            labels[handle._actor_id.hex()] = f"agent loop worker {index}"
        for index, handle in enumerate(getattr(manager, "reward_loop_worker_handles", None) or []):
            labels[handle._actor_id.hex()] = f"reward worker {index}"
        return labels

    def _resume_hint(self) -> str:
        root = os.path.abspath(self.config.trainer.default_local_dir)
        step = read_tracker(root)
        if self.config.trainer.save_freq <= 0 or step is None:
            return "No checkpoint was written (trainer.save_freq); a rerun starts over"
        return f"The same command resumes from {os.path.join(root, f'global_step_{step}')}"

    def _update_actor(self, batch: DataProto) -> DataProto:
        self._merge_timing = {}
        with marked_timer("chord_merge", self._merge_timing):
            mu = self.current_mu(batch)
            merged, chord_metrics = self._merge_expert_rows(batch, mu)
        output = self._verl_update_actor(merged)
        metrics = output.meta_info["metrics"]
        actor = self.config.actor_rollout_ref.actor
        optimizer_steps = merged.meta_info[NUM_MINI_BATCH] * int(actor.get("ppo_epochs", 1))
        chord_metrics.update(self._count_skipped(metrics, optimizer_steps))
        if self.relift_buffer is not None:  # ReLIFT: its SFT-only update follows the RL update
            chord_metrics.update(self._relift_after_update(batch, merged))
        metrics.update(chord_metrics)
        metrics.update({f"timing_s/{k}": v for k, v in self._merge_timing.items()})
        return output

    def _verl_update_actor(self, merged: DataProto) -> DataProto:
        """verl's `_update_actor`; a non-finite update becomes a named `NonFiniteStop`."""
        try:
            return super()._update_actor(merged)
        except Exception as exc:
            update = find_cause(exc, NonFiniteUpdate)
            if update is None:
                raise
            raise NonFiniteStop(
                describe(update, self.global_steps, self._row_names)
                + ". The update was stopped before the optimizer step; no checkpoint was written after it. "
                + self._resume_hint()
                + " (chord.on_nonfinite=skip skips such updates instead)"
            ) from exc

    def _count_skipped(self, metrics: dict, optimizer_steps: int) -> dict[str, float]:
        """Pop the worker's skipped-update flags from `metrics`; the step's and the run's counts."""
        skipped = metrics.pop(f"actor/{NONFINITE_SKIPPED}", None)
        if skipped is None:
            return {}
        count = int(round(float(np.mean(skipped)) * optimizer_steps))
        self.nonfinite_skipped_total += count
        return {
            "chord/nonfinite_skipped": float(count),
            "chord/nonfinite_skipped_total": float(self.nonfinite_skipped_total),
        }

    def _timed(self, part: str):
        """A timer adding to this step's `timing_s/chord_merge/<part>`."""
        return marked_timer(f"chord_merge/{part}", self._merge_timing)

    def _merge_expert_rows(self, batch: DataProto, mu: float) -> tuple[DataProto, dict[str, float]]:
        n_on = len(batch)
        rollout_cfg = self.config.actor_rollout_ref
        num_mini_batch = n_on // (rollout_cfg.actor.ppo_mini_batch_size * rollout_cfg.rollout.n)
        keys = [*_ACTOR_KEYS, "old_log_probs", "advantages"]
        for optional in ("ref_log_prob", ROLLOUT_IS_WEIGHTS):  # rollout correction: verl's IS weights
            if optional in batch.batch.keys():
                keys.append(optional)
        on_policy = batch.select(
            batch_keys=keys, non_tensor_batch_keys=[], meta_info_keys=list(batch.meta_info)
        )
        on_policy.batch[IS_EXPERT] = torch.zeros(n_on, dtype=torch.bool)
        metrics = {"chord/mu": mu, "chord/expert_rows": 0.0, "chord/expert_tokens": 0.0}
        merged = on_policy
        if self.chord.spec.loss == "prefix":
            metrics.update(self._prefix_rows(batch, on_policy))
        if self.expert_rows:
            if self.chord.spec.loss == "luffy":
                expert, expert_metrics = self._luffy_rows(batch, on_policy)
            elif self.chord.spec.loss in ("hpt", "srft"):  # recipe.train.hybrids
                expert, expert_metrics = self._hybrid_rows(batch, on_policy)
            else:
                expert, expert_metrics = self._expert_dataproto(on_policy)
            metrics.update(expert_metrics)
            if QUALITY in expert.batch.keys():
                on_policy.batch[QUALITY] = torch.ones(n_on, dtype=torch.float32)
            with self._timed("concat"):
                merged = DataProto.concat([on_policy, expert])
        order = self._interleave_order(n_on, len(merged) - n_on, num_mini_batch)
        with self._timed("interleave"):
            merged = merged.select_idxs(order)
        names = [f"rollout row {i}" for i in range(n_on)] + self._expert_row_names
        self._row_names = [names[k] if k < len(names) else f"row {k}" for k in order]
        merged.batch[ROW_ID] = torch.arange(len(merged), dtype=torch.int64)
        merged.meta_info[GLOBAL_STEP] = self.global_steps
        merged.meta_info.update(on_policy.meta_info)
        merged.meta_info[MU] = mu
        merged.meta_info[NUM_MINI_BATCH] = num_mini_batch
        merged.meta_info["global_token_num"] = merged.batch["attention_mask"].sum(-1).tolist()
        metrics["chord/update_tokens"] = float(sum(merged.meta_info["global_token_num"]))
        metrics["chord/update_response_tokens"] = float(merged.batch["response_mask"].sum().item())
        return merged, metrics

    def _expert_dataproto(self, like: DataProto) -> tuple[DataProto, dict[str, float]]:
        """`expert_rows` rows from the buffer, in the layout (and widths) of the rollout batch."""
        with self._timed("buffer"):
            expert = self.expert_buffer.next_batch(self.expert_rows)
        self._expert_row_names = [f"expert row {row} of {file}" for file, row in expert.row_ids]
        with self._timed("pad"):
            padded = self._pad_like(expert, like)
        ref_from_data = padded.get("ref_logp") if self.chord.spec.needs_ref_logp else None
        no_advantage = torch.zeros_like(padded["response_mask"], dtype=torch.float32)
        with self._timed("expert_rows"):
            out = self._as_expert_rows(padded, like, no_advantage, ref_from_data)
        if self.chord.spec.needs_quality:
            if "quality" not in padded:
                raise ValueError(
                    f"chord.variant={self.chord.variant!r} needs a `quality` column in chord.expert.files"
                )
            out.batch[QUALITY] = padded["quality"].float()
        metrics = {f"chord/{key}": float(value) for key, value in expert.metrics.items()}
        metrics["chord/expert_rows"] = float(len(expert))
        # Which rows were served (CRC32 of their (file, row) ids): resume exactness is checkable.
        metrics["chord/expert_fingerprint"] = float(zlib.crc32(repr(expert.row_ids).encode()))
        metrics["chord/expert_tokens"] = float(padded["response_mask"].sum().item())
        return out, metrics

    def _pad_like(self, expert: ExpertBatch, like: DataProto) -> dict[str, torch.Tensor]:
        """`expert` padded to the rollout batch's prompt and response widths (verl's layout)."""
        prompt_width = like.batch["prompts"].shape[1]
        response_width = like.batch["responses"].shape[1]
        return expert.to_padded(prompt_width, response_width, self.tokenizer.pad_token_id)

    def _as_expert_rows(
        self,
        padded: dict[str, torch.Tensor],
        like: DataProto,
        advantages: torch.Tensor,
        ref_from_data: torch.Tensor | None = None,
    ) -> DataProto:
        """Expert rows with every tensor the actor update reads, matching `like`'s keys.

        `old_log_probs` is zero and unused (expert rows have no ratio); reference log-probs come
        with the data, or from verl's reference worker when the rollout rows carry them.
        """
        n = padded["responses"].shape[0]
        tensors = {key: padded[key] for key in _ACTOR_KEYS}
        tensors["old_log_probs"] = torch.zeros_like(advantages)
        tensors["advantages"] = advantages
        tensors[IS_EXPERT] = torch.ones(n, dtype=torch.bool)
        if ROLLOUT_IS_WEIGHTS in like.batch.keys():  # on-policy only; 1 keeps the batch uniform
            tensors[ROLLOUT_IS_WEIGHTS] = torch.ones_like(advantages)
        out = DataProto.from_dict(tensors=tensors)
        if "ref_log_prob" in like.batch.keys():
            if ref_from_data is not None:
                out.batch["ref_log_prob"] = ref_from_data.float()
            else:
                out.meta_info["temperature"] = like.meta_info.get("temperature", 1.0)
                out = out.union(self._compute_ref_log_prob(out))
        return out

    def _luffy_rows(self, batch: DataProto, on_policy: DataProto) -> tuple[DataProto, dict[str, float]]:
        """LUFFY: each prompt's expert response joins its GRPO group as one more rollout.

        The response is the RL row's `extra_info[chord.luffy.response_key]` (plus EOS unless it
        already ends with it; read as the hybrids read their demonstrations, and a missing or
        empty one stops the run naming the row); it scores `chord.luffy.expert_reward`. The
        rollouts score their `token_level_rewards`. Advantages of the whole group (rollouts and
        expert trace) are recomputed (`_group_advantages_with_demos`) and written back to the
        rollout rows of `batch`, so verl's `critic/advantages/*` log the ones used.
        """
        cfg = self.chord.luffy
        first_row: dict[str, int] = {}
        for i, uid in enumerate(batch.non_tensor_batch["uid"]):
            first_row.setdefault(uid, i)
        rows = list(first_row.values())  # one row per prompt, in batch order
        width = on_policy.batch["responses"].shape[1]
        prompt_ids = [self._prompt_ids(on_policy, i) for i in rows]
        response_ids, truncated = [], 0
        for i in rows:
            ids = self._demonstration(batch, i, required=True, why="its expert trace joins the group")
            truncated += len(ids) > width
            response_ids.append(ids[:width])
        n_ex = len(rows)
        self._expert_row_names = [
            f"expert trace of RL row {i} (extra_info[{cfg.response_key!r}])" for i in rows
        ]
        expert = ExpertBatch(
            prompt_ids, response_ids, None, None, ["luffy"] * n_ex, [("rl", i) for i in rows]
        )
        padded = self._pad_like(expert, on_policy)
        rollout_adv, demo_adv = self._group_advantages_with_demos(batch, rows, cfg.expert_reward)
        on_mask = on_policy.batch["response_mask"].float()
        on_policy.batch["advantages"] = broadcast_to_tokens(rollout_adv, on_mask)
        batch.batch["advantages"] = on_policy.batch["advantages"]  # what verl's metrics read
        expert_adv = broadcast_to_tokens(demo_adv, padded["response_mask"].float())
        metrics = {
            "chord/expert_rows": float(n_ex),
            "chord/expert_tokens": float(padded["response_mask"].sum().item()),
            "chord/expert_truncated": float(truncated),
        }
        return self._as_expert_rows(padded, on_policy, expert_adv), metrics

    def _group_advantages_with_demos(
        self, batch: DataProto, demo_rows: list[int], demo_reward: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRPO advantages (rollouts ``[n]``, demonstrations ``[len(demo_rows)]``) with each
        demonstration one more member of the group of RL row ``demo_rows[k]``'s prompt.

        Demonstrations score ``demo_reward``; rollouts their `token_level_rewards` (verl's
        scores, minus the KL-in-reward penalty when `algorithm.use_kl_in_reward` is on, as
        verl's GRPO uses); `algorithm.norm_adv_by_std_in_grpo` as in verl
        (`chord.advantages.grpo_outcome_advantages(expert_in_groups=True)`).
        """
        uids = list(batch.non_tensor_batch["uid"])
        n_on, n_demo = len(uids), len(demo_rows)
        rewards = batch.batch["token_level_rewards"].sum(-1).float()
        scores = torch.cat([rewards, torch.full((n_demo,), float(demo_reward))])
        is_expert = torch.cat([torch.zeros(n_on, dtype=torch.bool), torch.ones(n_demo, dtype=torch.bool)])
        advantages = grpo_outcome_advantages(
            scores,
            uids + [uids[i] for i in demo_rows],
            is_expert,
            norm_by_std=bool(self.config.algorithm.get("norm_adv_by_std_in_grpo", True)),
            expert_in_groups=True,
        )
        return advantages[:n_on], advantages[n_on:]

    def _interleave_order(self, n_on: int, n_expert: int, num_mini_batch: int) -> list[int]:
        """Row order giving every rank, mini-batch and (if possible) micro-batch an equal share of
        rollout and expert rows.

        verl hands rank r the r-th contiguous chunk, slices mini-batches contiguously inside it
        (without `actor.shuffle`) and fixed-size micro-batches contiguously inside those. Both
        kinds are cut into that many equal blocks and laid out block by block, so the work of
        each term is spread evenly (the loss and its metrics are exact in any layout).
        """
        dp = self._get_dp_size(self.actor_rollout_wg, "actor")
        blocks = dp * num_mini_batch
        if n_on % blocks or n_expert % blocks:
            raise ValueError(
                f"chord.expert.rows_per_step: {n_expert} expert rows and {n_on} rollout rows must both "
                f"divide into {blocks} blocks (data-parallel size {dp} x {num_mini_batch} mini-batches)"
            )
        actor = self.config.actor_rollout_ref.actor
        micro = None if actor.use_dynamic_bsz else actor.get("ppo_micro_batch_size_per_gpu")
        rows_per_block = (n_on + n_expert) // blocks
        if micro and rows_per_block % micro == 0:
            fine = blocks * (rows_per_block // micro)
            if n_on % fine == 0 and n_expert % fine == 0:
                blocks = fine
        on_idx = np.arange(n_on).reshape(blocks, -1)
        ex_idx = (n_on + np.arange(n_expert)).reshape(blocks, -1)
        return np.concatenate([on_idx, ex_idx], axis=1).reshape(-1).tolist()

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self):
        result = super()._save_checkpoint()
        state = {
            "global_steps": self.global_steps,
            "expert_buffer": None,
            "expert_files": None,
            "nonfinite_skipped_total": self.nonfinite_skipped_total,
            **self._hybrid_state(),
        }
        if self.expert_buffer is not None:
            from chord.data.fingerprint import file_fingerprints

            state["expert_buffer"] = self.expert_buffer.state_dict()
            state["expert_files"] = file_fingerprints(list(self.chord.expert.files), self.chord.expert.schema)
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        os.makedirs(folder, exist_ok=True)
        self._uncommitted = (self.global_steps, folder, state)
        if not self._record_loggers:  # no metrics record to wait for
            self._commit_checkpoint(self.global_steps)
        return result

    def _commit_checkpoint(self, step: int) -> None:
        """Write `chord_state.json`, the folder's commit marker, once the step's record is on disk
        (a crash in between resumes from the previous checkpoint: no step of the record is lost)."""
        if self._uncommitted is not None and self._uncommitted[0] == step:
            _, folder, state = self._uncommitted
            write_state(folder, state)
            self._uncommitted = None

    def _load_checkpoint(self):
        point = choose_resume_point(self.config)
        result = super()._load_checkpoint()
        if self.global_steps > 0:
            self._restore_chord_state(point.folder or self.config.trainer.resume_from_path)
        for logger in self._record_loggers:
            logger.begin(self.global_steps)
        return result

    def _restore_chord_state(self, folder: str) -> None:
        path = os.path.join(folder, STATE_FILE)
        state = read_state(folder)
        self.nonfinite_skipped_total = int(state.get("nonfinite_skipped_total", 0))
        self._restore_hybrid_state(state, path)
        if self.expert_buffer is None:
            return
        if state.get("expert_buffer") is None:
            raise ValueError(f"{path}: the checkpoint has no expert-buffer state (run had no expert data)")
        expert = self.chord.expert
        changes = check_expert_files(
            folder, state, list(expert.files), expert.schema, expert.accept_changed_files
        )
        try:
            self.expert_buffer.load_state_dict(state["expert_buffer"])
        except ValueError as exc:
            if not changes:
                raise ValueError(f"{path}: {exc}") from None
            print(f"chord: the expert stream restarts on the new data ({exc})", flush=True)
