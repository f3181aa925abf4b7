"""Test-only vLLM worker extension: receives verl's weight sync and drops it.

tests/integration/test_vllm_rollout_cpu.py runs the trainer with
`actor_rollout_ref.rollout.engine_kwargs.vllm.worker_extension_cls=skip_weight_sync.SkipWeightSync`
(this directory on PYTHONPATH of the Ray workers): the vLLM engine keeps sampling from the
weights it loaded at start-up while the actor trains, which the rollout-vs-actor log-prob check
must catch. The buckets are still received (verl's sender waits for the receiver), only the
`model.load_weights` step is skipped.
"""

from __future__ import annotations

import torch
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension


class SkipWeightSync(vLLMColocateWorkerExtension):
    """verl's colocated worker extension with the in-place weight load removed."""

    def _update_weights(
        self, weights: list[tuple[str, torch.Tensor]], peft_config: dict | None, base_sync_done: bool
    ) -> None:
        return None
