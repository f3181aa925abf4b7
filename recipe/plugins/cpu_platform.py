"""A `cpu` platform for verl's platform registry: gloo collectives, host memory, Ray "GPU" slots.

verl resolves its platform once per process (probing registered platforms in registration
order, after nvidia, huawei and amd), so on a machine with a GPU this one is never chosen
unless `VERL_PLATFORM=cpu` is set. Its Ray resource name is "GPU": on a CPU machine the
cluster is started with logical GPUs (`ray_init.num_gpus=N`), one per FSDP rank, which keeps
verl's resource pools and placement groups unchanged.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

from recipe.plugins import cpu_device


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """Runs verl's trainer on host CPUs (used by the `cpu_tiny` preset, tests and the demo)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return cpu_device

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Only when no accelerator is usable: probing happens after the GPU platforms anyway.
        return not torch.cuda.is_available()

    def current_device(self) -> str:  # verl moves tensors with `.to(get_device_id())`
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
