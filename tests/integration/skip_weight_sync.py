"""Test-only vLLM worker extension: keeps verl's first weight sync, drops every later one.

tests/integration/test_vllm_rollout_cpu.py resumes a run with
`actor_rollout_ref.rollout.engine_kwargs.vllm.worker_extension_cls=skip_weight_sync.SkipWeightSync`
(this directory on the Ray workers' PYTHONPATH): the first sync (the restored checkpoint's
weights) lands, so the first resumed step must pass the rollout-vs-actor check; later syncs are
received (verl's sender waits for the receiver) but not loaded, so vLLM keeps sampling from stale
weights while the actor trains, which the check must catch.
"""

from __future__ import annotations

import torch
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension


class SkipWeightSync(vLLMColocateWorkerExtension):
    """verl's colocated worker extension whose weight syncs after the first load nothing."""

    def update_weights_from_ipc(self, *args, **kwargs):
        self._chord_syncs = getattr(self, "_chord_syncs", 0) + 1
        return super().update_weights_from_ipc(*args, **kwargs)

    def _update_weights(
        self, weights: list[tuple[str, torch.Tensor]], peft_config: dict | None, base_sync_done: bool
    ) -> None:
        if getattr(self, "_chord_syncs", 0) <= 1:
            super()._update_weights(weights, peft_config, base_sync_done)
