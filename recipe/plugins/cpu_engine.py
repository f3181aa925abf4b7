"""verl's FSDP/FSDP2 engines registered for device "cpu" in verl's engine registry.

verl registers `FSDPEngineWithLMHead` / `FSDPEngineWithValueHead` for cuda and npu only. The
CPU classes below are those engines with one difference: verl wraps every forward-only model
(the reference policy) in FSDP2's `CPUOffloadPolicy(pin_memory=True)`, and pinning host memory
needs an accelerator. On the host there is nothing to offload to, so the module is built
without an offload policy; everything else is verl's code.
"""

from __future__ import annotations

from contextlib import contextmanager

from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead


@contextmanager
def _without_offload_policy(engine_config):
    """verl picks CPUOffloadPolicy when `offload_policy or forward_only`: hide both while building."""
    saved = (engine_config.offload_policy, engine_config.forward_only)
    object.__setattr__(engine_config, "offload_policy", False)
    object.__setattr__(engine_config, "forward_only", False)
    try:
        yield
    finally:
        object.__setattr__(engine_config, "offload_policy", saved[0])
        object.__setattr__(engine_config, "forward_only", saved[1])


class _HostFSDPModule:
    def _build_fsdp_module(self, module):
        with _without_offload_policy(self.engine_config):
            return super()._build_fsdp_module(module)


@EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=["cpu"])
class CPUFSDPEngineWithLMHead(_HostFSDPModule, FSDPEngineWithLMHead):
    """verl's language-model FSDP engine on host CPUs (gloo)."""


@EngineRegistry.register(model_type="value_model", backend=["fsdp", "fsdp2"], device=["cpu"])
class CPUFSDPEngineWithValueHead(_HostFSDPModule, FSDPEngineWithValueHead):
    """verl's value-model FSDP engine on host CPUs (gloo)."""
