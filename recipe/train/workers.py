"""verl workers with the CHORD loss (subclasses of verl's own engine workers).

- `ChordTrainingWorker` (verl's `TrainingWorker`): starts a plain gloo process group first on
  the CPU platform (verl would ask torch for "cpu:gloo,cpu:gloo", which torch rejects); before
  each mini-batch it sums `recipe.train.actor_loss.mini_batch_sums` over all data-parallel ranks
  (the only place where cross-micro-batch quantities are gathered: normalisers, token counts,
  and for `chord.iw.normalize` the iw weights' sum, from one no-grad forward of the mini-batch
  with the current parameters, which equal those of every micro-batch's forward before the
  optimizer step); it splits a merged batch into the number of mini-batches the driver asks for
  (expert rows change the row count, not the number of optimizer steps);
  it reports where the update's time goes, per step on its rank:
  `timing_s/chord_normalizer` (the sums' all-reduce), `timing_s/chord_loss` (the loss
  function's forward, all micro-batches) and `timing_s/train_mini_batch` (all mini-batches:
  forward, loss, backward, optimizer steps, metric gathering), and `cpu_s/train_mini_batch`:
  the CPU seconds this rank's process spent on the same (all its threads; unlike wall time,
  hardly changed by other jobs on a shared machine); `tokens/train_mini_batch` and
  `tokens/train_mini_batch_padded`: the real and the padded tokens (rows x longest row of each
  micro-batch) its forward passes ran on.
- `ChordActorRolloutRefWorker` (verl's `ActorRolloutRefWorker`): uses the worker above for actor
  and reference, and installs `chord_actor_loss` after `init_model` (which sets verl's loss).
- Non-finite updates (`recipe.train.nonfinite`): the loss is wrapped to note non-finite terms
  and rows per micro-batch, and the engine's `optimizer_step` to decide, on every rank alike,
  before the weights change: stop (raise `NonFiniteUpdate`) or skip (`chord.on_nonfinite`).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from tensordict import TensorDict
from verl.single_controller.base.decorator import MAGIC_ATTR, Dispatch, register
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.device import get_device_name
from verl.utils.profiler import simple_timer
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker
from verl.workers.utils.padding import no_padding_2_padding

from recipe.train.actor_loss import (
    IS_EXPERT,
    assign_mini_batch_sums,
    chord_actor_loss,
    mini_batch_sums,
    needs_iw_sums,
)
from recipe.train.config import ChordConfig, load_chord_config
from recipe.train.hybrid_loss import SFT_ONLY
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


def micro_batch_tokens(data: Any) -> tuple[int, int]:
    """(real, padded) tokens of a micro-batch: sum of row lengths, and rows x longest row (what
    the forward runs on when verl pads each micro-batch, `use_remove_padding=false`)."""
    ids = data["input_ids"]
    if ids.is_nested:
        lengths = ids.offsets().diff()
    elif "attention_mask" in data:
        lengths = data["attention_mask"].sum(-1)
    else:
        lengths = torch.full((ids.shape[0],), ids.shape[-1])
    return int(lengths.sum()), int(lengths.numel() * lengths.max()) if lengths.numel() else 0


class TimedLoss:
    """A loss function that adds up the wall-clock seconds spent in its calls (`seconds`) and the
    tokens of the micro-batches it saw (`tokens`, `padded_tokens`: `micro_batch_tokens`)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.seconds = 0.0
        self.tokens = 0
        self.padded_tokens = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        if data is not None and "input_ids" in data:
            real, padded = micro_batch_tokens(data)
            self.tokens += real
            self.padded_tokens += padded
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


class ChordTrainingWorker(TrainingWorker):
    def __init__(self, config, *args, **kwargs):
        init_cpu_process_group()
        super().__init__(config, *args, **kwargs)
        self.loss_agg_mode = "token-mean"  # the actor's `loss_agg_mode`, set in init_model
        self.chord: ChordConfig | None = None  # set in init_model (actor only)
        self._timing: dict[str, float] = {}
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
        self._timing = {"chord_normalizer": 0.0}
        counters = ("seconds", "tokens", "padded_tokens")
        before = {k: getattr(self.loss_fn, k, 0) for k in counters}
        cpu_started = time.process_time()
        with simple_timer("train_mini_batch", self._timing):
            output = super().train_mini_batch(data)
        cpu_s = time.process_time() - cpu_started
        done = {k: getattr(self.loss_fn, k, 0) - before[k] for k in counters}
        self._timing["chord_loss"] = done["seconds"]
        if output is not None:  # the rank that returns the metrics
            metrics = tu.get(output, "metrics")
            metrics.update({f"timing_s/{k}": v for k, v in self._timing.items()})
            metrics["cpu_s/train_mini_batch"] = cpu_s
            metrics["tokens/train_mini_batch"] = float(done["tokens"])
            metrics["tokens/train_mini_batch_padded"] = float(done["padded_tokens"])
        return output

    def train_batch(self, data: TensorDict) -> TensorDict:
        self._step = int(tu.get_non_tensor_data(data, GLOBAL_STEP, default=0) or 0)
        if tu.get_non_tensor_data(
            data, SFT_ONLY, default=False
        ):  # ReLIFT: the LR schedule is the RL update's
            tu.assign_non_tensor(data, update_lr_scheduler=False)
        skipped = self._skipped
        if IS_EXPERT in data:
            with simple_timer("chord_normalizer", self._timing):
                self._assign_global_normalizers(data)
        output = super().train_batch(data)
        if output is not None:
            tu.get(output, "metrics")[NONFINITE_SKIPPED] = float(self._skipped - skipped)
        return output

    def _assign_global_normalizers(self, data: TensorDict) -> None:
        """Sum this mini-batch's `mini_batch_sums` over the data-parallel group, into `data`'s meta."""
        chord = self.chord if self.chord is not None else load_chord_config({"variant": "grpo"})
        logp = self._current_response_logp(data) if needs_iw_sums(chord) else None
        sums = mini_batch_sums(data, chord, self.loss_agg_mode, logp).to(get_device_name())
        if dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=self.engine.get_data_parallel_group())
        assign_mini_batch_sums(data, sums.cpu())

    def _current_response_logp(self, data: TensorDict) -> torch.Tensor:
        """``[B, T]`` response log-probs of the current parameters (no grad), micro-batched as in training."""
        probe = data.copy()
        settings = dict(
            use_remove_padding=self.model_config.get("use_remove_padding", False),
            use_dynamic_bsz=self.engine_config.use_dynamic_bsz,
            max_token_len_per_gpu=self.engine_config.max_token_len_per_gpu,
            micro_batch_size_per_gpu=self.engine_config.micro_batch_size_per_gpu,
            use_fused_kernels=self.engine_config.use_fused_kernels,
        )
        missing = {k: v for k, v in settings.items() if k not in probe.keys()}
        tu.assign_non_tensor(probe, calculate_entropy=False, **missing)
        output = self.engine.infer_batch(probe, loss_function=None)
        return no_padding_2_padding(output["model_output"]["log_probs"], probe).float()

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
            self.actor.chord = self.chord
            self.actor.on_nonfinite = self.chord.on_nonfinite
            loss_fn = partial(chord_actor_loss, config=actor_config, chord=self.chord)
            self.actor.set_loss_fn(TimedLoss(self.actor.checked_loss(loss_fn)))
