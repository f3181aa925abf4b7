"""Register verl's own FSDP/FSDP2 engines for device "cpu" in verl's engine registry.

verl registers `FSDPEngineWithLMHead` / `FSDPEngineWithValueHead` for cuda and npu only; the
engines themselves are device-agnostic (they take the device from the platform), so the CPU
platform reuses the very same classes rather than a copy.
"""

from __future__ import annotations

from verl.workers.engine.base import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=["cpu"])(
    FSDPEngineWithLMHead
)
EngineRegistry.register(model_type="value_model", backend=["fsdp", "fsdp2"], device=["cpu"])(
    FSDPEngineWithValueHead
)
