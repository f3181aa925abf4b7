"""The `torch.cuda`-like device module that verl's CPU platform hands out.

verl calls its platform's `device_module` for memory statistics, seeding and synchronisation
(`get_torch_device().max_memory_allocated()`, `.empty_cache()`, ...). `torch.cpu` lacks most of
these, so this module provides them for the host: memory figures are the process's resident
set size (peak and current), RNG calls go to torch's CPU generator, the rest are no-ops.
"""

from __future__ import annotations

import contextlib
import resource

import psutil
import torch


def is_available() -> bool:
    return True


def current_device() -> str:
    return "cpu"


def device_count() -> int:
    return 1


def set_device(device=None) -> None:
    return None


def synchronize(device=None) -> None:
    return None


def empty_cache() -> None:
    return None


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def get_rng_state(device=None) -> torch.Tensor:
    return torch.get_rng_state()


def set_rng_state(state: torch.Tensor, device=None) -> None:
    torch.set_rng_state(state)


def memory_allocated(device=None) -> int:
    return psutil.Process().memory_info().rss


memory_reserved = memory_allocated


def max_memory_allocated(device=None) -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


max_memory_reserved = max_memory_allocated


def reset_peak_memory_stats(device=None) -> None:
    return None


def mem_get_info(device=None) -> tuple[int, int]:
    vm = psutil.virtual_memory()
    return vm.available, vm.total


def get_device_name(device=None) -> str:
    return "cpu"


def get_device_capability(device=None) -> tuple[None, None]:
    return None, None


def is_bf16_supported() -> bool:
    return True


@contextlib.contextmanager
def device(index=None):
    yield
