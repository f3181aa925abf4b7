"""The hybrids' driver side (HPT, SRFT, ReLIFT), mixed into `ChordRayTrainer`.

Nothing of verl's loop is copied: `ChordRayTrainer._merge_expert_rows` (after verl computed the
advantages, inside `_update_actor`) asks `_hybrid_rows` for the paired demonstration rows of HPT
and SRFT, as it asks `_luffy_rows` for LUFFY's; `ChordRayTrainer._update_actor` calls
`_relift_after_update` after the RL update. Per-row flags travel in the batch to the loss
(`recipe.train.hybrid_loss`): `chord_active`, `chord_correct`.

- HPT (`chord.hpt`): per prompt, `chord.hybrids.hpt_gate` on its rollouts' scores
  (`token_level_scores`, the verifier's reward). A gated prompt's rollouts are inactive and its
  demonstration (the RL row's `extra_info[response_key]`) is active; an ungated prompt's
  rollouts keep verl's advantages and its demonstration row is inactive. Every prompt has a
  demonstration row, so the batch shape (and its split over ranks and mini-batches) never
  changes; a gated prompt without a demonstration stops the run naming the row. Metrics:
  `hpt/gated_prompts`, `hpt/gated_fraction`.
- SRFT (`chord.srft`): every prompt's demonstration joins the batch and its prompt's GRPO group
  (LUFFY's pairing): it scores `demo_reward` and gets the group advantage its policy-gradient
  term uses (`_group_advantages_with_demos`: divided by the group's std as
  `algorithm.norm_adv_by_std_in_grpo` says; the newer hybrids' authors use r - mean, i.e.
  false: ALGORITHMS.md). The rollouts keep verl's advantages, which SRFT's likelihood terms do
  not read, and carry `chord_correct = score >= correct_threshold`.
  Metrics: `srft/correct_rollouts`, `srft/demo_advantage_mean` (per demonstration).
- ReLIFT (`chord.relift`): after the step's RL update (plain GRPO), prompts with no rollout at
  or above the threshold go into `chord.hybrids.ReliftBuffer` with their demonstration; when it
  holds `buffer_size` entries they make one SFT-only update (all rows expert, mu = 1: token-mean
  NLL) in the same step, through verl's own `_update_actor` with one mini-batch. The update uses
  the actor's optimizer: verl's engine owns exactly one optimizer and LR scheduler per model
  (built from `actor.optim`, sharded and checkpointed with it), so the authors' separate AdamW
  (lr 1e-6) would need a second engine; the SFT update therefore shares the actor's AdamW state
  and learning rate, and does not advance its LR schedule (the worker skips the scheduler step).
  The buffer is saved in `chord_state.json`, so a resumed run takes the same SFT rounds.
  Metrics: `relift/buffer_size` (after the step), `relift/sft_rounds` (so far),
  `relift/failed_prompts`, and on steps with a round `relift/sft_loss` and
  `relift/sft_fingerprint` (CRC32 of the entries trained on).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from verl import DataProto

from chord.advantages import broadcast_to_tokens
from chord.data import ExpertBatch
from chord.hybrids import ReliftBuffer, ReliftEntry, count_correct, hpt_gate
from recipe.train.actor_loss import MU
from recipe.train.hybrid_config import response_key
from recipe.train.hybrid_loss import ACTIVE, CORRECT, SFT_ONLY
from recipe.train.nonfinite import GLOBAL_STEP, ROW_ID
from recipe.train.workers import NUM_MINI_BATCH

RELIFT_STATE = "relift_buffer"


class HybridsMixin:
    """Driver logic of HPT, SRFT and ReLIFT for `ChordRayTrainer` (module doc)."""

    relift_buffer: ReliftBuffer | None = None

    def _init_hybrids(self) -> None:
        if self.chord.spec.loss == "relift":
            self.relift_buffer = ReliftBuffer(self.chord.relift.buffer_size)

    # ------------------------------------------------------------------ shared
    def _scores(self, batch: DataProto) -> list[float]:
        return batch.batch["token_level_scores"].sum(-1).float().tolist()

    def _prompt_ids(self, on_policy: DataProto, row: int) -> list[int]:
        width = on_policy.batch["prompts"].shape[1]
        mask = on_policy.batch["attention_mask"][row, :width].bool()
        return on_policy.batch["prompts"][row][mask].tolist()

    def _demonstration(self, batch: DataProto, row: int, required: bool, why: str) -> list[int] | None:
        """Token ids (ending with EOS) of RL row `row`'s paired demonstration; None when absent
        and not `required`; a `required` one that is missing stops the run naming the row."""
        key = response_key(self.chord)
        extra_info = batch.non_tensor_batch.get("extra_info")
        info = extra_info[row] if extra_info is not None else None
        text = info.get(key) if isinstance(info, dict) else None
        if not isinstance(text, str) or not text:
            if not required:
                return None
            where = info.get("index", row) if isinstance(info, dict) else row
            raise ValueError(
                f"chord.{self.chord.spec.loss}.response_key: RL row {where} "
                f"({why}, step {self.global_steps}) has no string extra_info[{key!r}]; "
                f"{self.chord.variant} needs a paired demonstration "
                "(chord-prepare-openr1 / chord-prepare-toolace --paired)"
            )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids or ids[-1] != self.tokenizer.eos_token_id:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def _prompt_index(self, batch: DataProto, row: int) -> int:
        """The RL row's dataset index (`extra_info.index`, as verl's datasets write it), else the row."""
        extra_info = batch.non_tensor_batch.get("extra_info")
        info = extra_info[row] if extra_info is not None else None
        index = info.get("index") if isinstance(info, dict) else None
        return int(index) if isinstance(index, (int, np.integer)) else row

    # ------------------------------------------------------------------ HPT, SRFT
    def _hybrid_rows(self, batch: DataProto, on_policy: DataProto) -> tuple[DataProto, dict[str, float]]:
        """One demonstration row per prompt, with the per-row flags of HPT or SRFT (module doc)."""
        loss = self.chord.spec.loss
        cfg = getattr(self.chord, loss)
        uids = list(batch.non_tensor_batch["uid"])
        scores = self._scores(batch)
        if loss == "hpt":
            prompts = hpt_gate(scores, uids, gate=cfg.gate, threshold=cfg.correct_threshold)
        else:
            prompts = count_correct(scores, uids, cfg.correct_threshold)
        required = [p.gated if loss == "hpt" else True for p in prompts]
        width = on_policy.batch["responses"].shape[1]
        prompt_ids, response_ids, truncated = [], [], 0
        for p, needed in zip(prompts, required, strict=True):
            why = f"{p.correct} of {p.rollouts} rollouts correct" + (", gated" if loss == "hpt" else "")
            ids = self._demonstration(batch, p.first_row, needed, why) or [self.tokenizer.eos_token_id]
            truncated += len(ids) > width
            prompt_ids.append(self._prompt_ids(on_policy, p.first_row))
            response_ids.append(ids[:width])
        n_ex = len(prompts)
        self._expert_row_names = [f"demonstration of RL row {p.first_row} ({loss})" for p in prompts]
        demos = ExpertBatch(
            prompt_ids, response_ids, None, None, [loss] * n_ex, [("rl", p.first_row) for p in prompts]
        )
        padded = self._pad_like(demos, on_policy)
        demo_adv = torch.zeros(n_ex)
        if loss == "srft":  # its demonstrations' policy-gradient term: the demo in its GRPO group
            rows = [p.first_row for p in prompts]
            demo_adv = self._group_advantages_with_demos(batch, rows, cfg.demo_reward)[1]
        advantages = broadcast_to_tokens(demo_adv, padded["response_mask"].float())
        expert = self._as_expert_rows(padded, on_policy, advantages)
        metrics = {
            "chord/expert_rows": float(n_ex),
            "chord/expert_truncated": float(truncated),
        }
        if loss == "hpt":
            gated = {p.uid for p in prompts if p.gated}
            on_policy.batch[ACTIVE] = torch.tensor([uid not in gated for uid in uids], dtype=torch.bool)
            expert.batch[ACTIVE] = torch.tensor(required, dtype=torch.bool)
            active_mask = padded["response_mask"][expert.batch[ACTIVE]]
            metrics["chord/expert_tokens"] = float(active_mask.sum().item())
            metrics["hpt/gated_prompts"] = float(len(gated))
            metrics["hpt/gated_fraction"] = len(gated) / n_ex
        else:
            on_policy.batch[CORRECT] = torch.tensor(
                [s >= cfg.correct_threshold for s in scores], dtype=torch.bool
            )
            expert.batch[CORRECT] = torch.zeros(n_ex, dtype=torch.bool)
            metrics["chord/expert_tokens"] = float(padded["response_mask"].sum().item())
            metrics["srft/correct_rollouts"] = float(on_policy.batch[CORRECT].sum().item())
            metrics["srft/demo_advantage_mean"] = float(demo_adv.mean().item())
        return expert, metrics

    # ------------------------------------------------------------------ ReLIFT
    def _relift_after_update(self, batch: DataProto, merged: DataProto) -> dict[str, float]:
        """Buffer this step's all-failed prompts; run the SFT-only update when the buffer is full."""
        cfg = self.chord.relift
        uids = list(batch.non_tensor_batch["uid"])
        prompts = count_correct(self._scores(batch), uids, cfg.correct_threshold)
        # In the order of the prompts' dataset index: verl may reorder rows (trainer.balance_batch)
        # by response length, which a resumed run's rollouts need not reproduce.
        failed = sorted(
            (p for p in prompts if p.correct == 0), key=lambda p: self._prompt_index(batch, p.first_row)
        )
        max_response = int(self.config.data.max_response_length)
        entries = []
        for p in failed:
            ids = self._demonstration(batch, p.first_row, True, f"all {p.rollouts} rollouts failed")
            source = f"step {self.global_steps}, prompt {self._prompt_index(batch, p.first_row)}"
            entries.append(ReliftEntry(self._prompt_ids(merged, p.first_row), ids[:max_response], source))
        self.relift_buffer.add(entries)
        taken = self.relift_buffer.take()
        metrics = {"relift/failed_prompts": float(len(failed))}
        if taken is not None:
            metrics["relift/sft_loss"] = self._relift_sft_update(taken, merged)
            # which entries were trained on (CRC32 of sources and tokens): resume exactness is checkable
            served = [(e.source, e.prompt_ids, e.response_ids) for e in taken]
            metrics["relift/sft_fingerprint"] = float(zlib.crc32(repr(served).encode()))
        metrics["relift/buffer_size"] = float(len(self.relift_buffer))
        metrics["relift/sft_rounds"] = float(self.relift_buffer.rounds)
        return metrics

    def _relift_sft_update(self, entries: list[ReliftEntry], like: DataProto) -> float:
        """One SFT-only actor update on `entries` (all rows expert, mu = 1); returns its `sft_loss`."""
        n = len(entries)
        demos = ExpertBatch(
            [e.prompt_ids for e in entries],
            [e.response_ids for e in entries],
            None,
            None,
            ["relift"] * n,
            [("relift", i) for i in range(n)],
        )
        prompt_width = max(like.batch["prompts"].shape[1], max(len(e.prompt_ids) for e in entries))
        response_width = max(like.batch["responses"].shape[1], max(len(e.response_ids) for e in entries))
        padded = demos.to_padded(prompt_width, response_width, self.tokenizer.pad_token_id)
        zeros = torch.zeros_like(padded["response_mask"], dtype=torch.float32)
        sft = self._as_expert_rows(padded, like, zeros)
        sft.batch[ROW_ID] = torch.arange(n, dtype=torch.int64)
        sft.meta_info.update({k: v for k, v in like.meta_info.items() if k != "global_token_num"})
        sft.meta_info.update({MU: 1.0, SFT_ONLY: True, GLOBAL_STEP: self.global_steps})
        sft.meta_info[NUM_MINI_BATCH] = 1
        sft.meta_info["global_token_num"] = sft.batch["attention_mask"].sum(-1).tolist()
        self._row_names = [f"ReLIFT buffer entry ({e.source})" for e in entries]
        output = self._verl_update_actor(sft)
        metrics = output.meta_info["metrics"]
        self._count_skipped(
            metrics, optimizer_steps=int(self.config.actor_rollout_ref.actor.get("ppo_epochs", 1))
        )
        return float(np.mean(metrics["actor/sft_loss"]))

    # ------------------------------------------------------------------ checkpoint
    def _hybrid_state(self) -> dict:
        return {RELIFT_STATE: self.relift_buffer.state_dict()} if self.relift_buffer is not None else {}

    def _restore_hybrid_state(self, state: dict, path: str) -> None:
        if self.relift_buffer is None:
            return
        if state.get(RELIFT_STATE) is None:
            raise ValueError(
                f"{path}: the checkpoint has no ReLIFT buffer (written by a run of another method)"
            )
        try:
            self.relift_buffer.load_state_dict(state[RELIFT_STATE])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
