"""verl workers with the CHORD loss (subclasses of verl's own engine workers).

- `ChordTrainingWorker` (verl's `TrainingWorker`): starts a plain gloo process group first on
  the CPU platform (verl would ask torch for "cpu:gloo,cpu:gloo", which torch rejects); before
  each mini-batch it sums the on-policy and expert normalisers over all data-parallel ranks (the
  loss divides by these global counts); it splits a merged batch into the number of
  mini-batches the driver asks for (expert rows change the row count, not the number of
  optimizer steps).
- `ChordActorRolloutRefWorker` (verl's `ActorRolloutRefWorker`): uses the worker above for actor
  and reference, and installs `chord_actor_loss` after `init_model` (which sets verl's loss).
- Non-finite updates (`recipe.train.nonfinite`): the loss is wrapped to note non-finite terms
  and rows per micro-batch, and the engine's `optimizer_step` to decide, on every rank alike,
  before the weights change: stop (raise `NonFiniteUpdate`) or skip (`chord.on_nonfinite`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import partial

import torch
import torch.distributed as dist
from tensordict import TensorDict
from verl.single_controller.base.decorator import MAGIC_ATTR, Dispatch, register
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.device import get_device_name
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker

from chord.losses import chord_normalizers
from recipe.train.actor_loss import IS_EXPERT, PG_NORMALIZER, SFT_NORMALIZER, chord_actor_loss
from recipe.train.config import ChordConfig, load_chord_config
from recipe.train.nonfinite import (
    GLOBAL_STEP,
    check_before_step,
    grads_are_finite,
    inspect_micro_batch,
    poison_first_row,
)

NUM_MINI_BATCH = "chord_num_mini_batch"
NONFINITE_SKIPPED = "chord_nonfinite_skipped"  # per optimizer step: 1.0 if it was skipped


def init_cpu_process_group(timeout_s: float | None = None) -> None:
    """On the CPU platform: one gloo process group from the env vars verl's Ray workers set.

    `timeout_s` (verl's `actor_rollout_ref.nccl_timeout`) bounds a collective whose peer died.
    """
    if get_device_name() != "cpu" or dist.is_initialized():
        return
    dist.init_process_group(
        backend="gloo",
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        init_method=os.environ.get("DIST_INIT_METHOD", None),
        **({} if timeout_s is None else {"timeout": timedelta(seconds=float(timeout_s))}),
    )


class ChordTrainingWorker(TrainingWorker):
    def __init__(self, config, *args, **kwargs):
        init_cpu_process_group()
        super().__init__(config, *args, **kwargs)
        self.loss_agg_mode = "token-mean"  # the actor's `loss_agg_mode`, set in init_model
        self.on_nonfinite = "stop"  # `chord.on_nonfinite`, set in init_model
        self._findings: list = []
        self._skipped = 0
        self._step = 0
        self._engine_optimizer_step = self.engine.optimizer_step
        self.engine.optimizer_step = self._checked_optimizer_step

    def checked_loss(self, loss_fn):
        """`loss_fn` noting non-finite terms and rows of each micro-batch (`inspect_micro_batch`)."""

        def loss_with_check(model_output, data, dp_group=None):
            poison_first_row(model_output, data, self._step, self.rank)
            loss, metrics = loss_fn(model_output=model_output, data=data, dp_group=dp_group)
            finding = inspect_micro_batch(loss, metrics, model_output, data, self.rank)
            if finding is not None:
                self._findings.append(finding)
            return loss, metrics

        return loss_with_check

    def _checked_optimizer_step(self):
        """verl's optimizer step, after every rank agreed the update is finite."""
        findings, self._findings = self._findings, []
        error = check_before_step(findings, grads_are_finite(self.engine.module))
        if error is None:
            return self._engine_optimizer_step()
        self.engine.optimizer_zero_grad()
        if self.on_nonfinite == "stop":
            raise error
        self._skipped += 1
        return float("nan")

    def train_mini_batch(self, data: TensorDict) -> TensorDict:
        num_mini_batch = tu.pop(data, key=NUM_MINI_BATCH, default=None)
        if num_mini_batch is not None:
            tu.pop(data, key="mini_batch_size", default=None)
            tu.assign_non_tensor(data, num_mini_batch=int(num_mini_batch))
        return super().train_mini_batch(data)

    def train_batch(self, data: TensorDict) -> TensorDict:
        self._step = int(tu.get_non_tensor_data(data, GLOBAL_STEP, default=0) or 0)
        skipped = self._skipped
        if IS_EXPERT in data:
            self._assign_global_normalizers(data)
        output = super().train_batch(data)
        if output is not None:
            tu.get(output, "metrics")[NONFINITE_SKIPPED] = float(self._skipped - skipped)
        return output

    def _assign_global_normalizers(self, data: TensorDict) -> None:
        """Sum this mini-batch's per-part counts over the data-parallel group."""
        mask = data["response_mask"]
        if mask.is_nested:
            mask = mask.to_padded_tensor(0)
        pg, sft = chord_normalizers(mask.float(), data[IS_EXPERT].bool(), self.loss_agg_mode)
        counts = torch.stack([pg, sft]).to(get_device_name())
        group = self.engine.get_data_parallel_group()
        if dist.is_initialized():
            dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        tu.assign_non_tensor(data, **{PG_NORMALIZER: counts[0].item(), SFT_NORMALIZER: counts[1].item()})

    # Overriding drops verl's dispatch registration: copy it back, so this worker can also
    # serve as a Ray worker group of its own (not only inside ActorRolloutRefWorker).
    for _name in ("train_mini_batch", "train_batch"):
        setattr(locals()[_name], MAGIC_ATTR, getattr(getattr(TrainingWorker, _name), MAGIC_ATTR))
    del _name


class ChordActorRolloutRefWorker(ActorRolloutRefWorker):
    actor_worker_cls = ChordTrainingWorker
    ref_worker_cls = ChordTrainingWorker
    # The `chord:` section. verl builds workers with (config=actor_rollout_ref, role) only, so
    # the entry point hands it over as a class attribute of a subclass (`with_chord_config`).
    chord_config: dict | None = None

    def __init__(self, config, role: str, *args, **kwargs):
        init_cpu_process_group(config.get("nccl_timeout", None))
        super().__init__(config, role, *args, **kwargs)
        self.chord: ChordConfig = load_chord_config(self.chord_config)

    @classmethod
    def with_chord_config(cls, chord_config: dict) -> type[ChordActorRolloutRefWorker]:
        """A subclass carrying `chord_config` (a plain dict), for `ray.remote`."""
        return type(cls.__name__, (cls,), {"chord_config": chord_config, "__module__": cls.__module__})

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def init_model(self):
        super().init_model()
        if self.actor is not None:
            actor_config = omega_conf_to_dataclass(self.config.actor)
            self.actor.loss_agg_mode = actor_config.loss_agg_mode
            self.actor.on_nonfinite = self.chord.on_nonfinite
            loss_fn = partial(chord_actor_loss, config=actor_config, chord=self.chord)
            self.actor.set_loss_fn(self.actor.checked_loss(loss_fn))
