"""recipe.plugins: `import verl` loads the platform only; each registry gets chord's entry when
verl imports it. Run in fresh interpreters, since this test process has imported verl already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("verl")

HEAVY = (
    "verl.workers.engine",
    "verl.workers.rollout.base",
    "verl.workers.rollout.replica",
    "verl.experimental.agent_loop",
    "verl.experimental.reward_loop.reward_manager",
    "recipe.plugins.cpu_engine",
    "recipe.plugins.hf_rollout",
    "recipe.train.prefix_loop",
)


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_verl_registers_the_platform_and_loads_no_registry():
    found = _run(
        f"""
        import json, sys
        import verl
        from verl.plugin.platform.platform_manager import PlatformRegistry, get_platform
        platform = get_platform()
        print(json.dumps({{"registered": "cpu" in PlatformRegistry.registered_names(),
                           "platform": platform.device_name,
                           "backend": platform.communication_backend_name(),
                           "ray_resource": platform.ray_resource_name(),
                           "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert found == {
        "registered": True,
        "platform": "cpu",
        "backend": "gloo",
        "ray_resource": "GPU",
        "loaded": [],
    }


def test_each_registry_holds_chords_entry_once_verl_imports_it():
    found = _run(
        """
        import json, sys
        import verl
        from verl.workers.rollout.replica import RolloutReplicaRegistry
        from verl.workers.rollout.base import get_rollout_class
        from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
        from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
        from verl.workers.engine.base import EngineRegistry
        from recipe.train.prefix_loop import AGENT_NAME
        print(json.dumps({
            "replica": RolloutReplicaRegistry.get("hf").__qualname__,
            "adapter": get_rollout_class("hf", "async").__qualname__,
            "reward": get_reward_manager_cls("chord").__qualname__,
            "agent_loop": AGENT_NAME in _agent_loop_registry,
            "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__qualname__,
        }))
        """
    )
    assert found == {
        "replica": "HFReplica",
        "adapter": "HFServerAdapter",
        "reward": "ChordRewardManager",
        "agent_loop": True,
        "engine": "CPUFSDPEngineWithLMHead",
    }
