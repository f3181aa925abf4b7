"""conf/cpu_rollout/: cpu_tiny's rollout engine group (`hf` default, `vllm` = verl's vLLM on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

CONF = Path(__file__).resolve().parents[2] / "conf"


def _compose(*overrides: str, config_name: str = "cpu_tiny"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def test_hf_is_the_default_and_keeps_verls_vllm_settings_untouched():
    cfg = _compose()
    rollout = cfg.actor_rollout_ref.rollout
    assert rollout.name == "hf" and rollout.free_cache_engine is False
    assert dict(rollout.engine_kwargs.vllm) == {}
    assert "VLLM_CPU_OMP_THREADS_BIND" not in cfg.ray_kwargs.ray_init.runtime_env.env_vars
    assert cfg.chord.variant == "chord_mu"  # the method override still applies


@pytest.mark.parametrize(
    ("config_name", "overrides", "ranks"),
    [
        ("cpu_tiny", [], 2),
        ("shift_tiny", [], 1),
        ("cpu_tiny", ["trainer.n_gpus_per_node=4", "ray_kwargs.ray_init.num_gpus=4"], 4),
    ],
)
def test_hf_runs_one_server_for_all_of_the_nodes_ranks(config_name, overrides, ranks):
    # verl makes (ranks / tensor_model_parallel_size) rollout replicas: one hf server per node
    cfg = _compose(*overrides, config_name=config_name)
    rollout = cfg.actor_rollout_ref.rollout
    assert cfg.trainer.n_gpus_per_node == ranks
    assert rollout.name == "hf" and rollout.tensor_model_parallel_size == ranks


def test_vllm_keeps_a_replica_per_rank():
    cfg = _compose("cpu_rollout=vllm")
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 1


@pytest.mark.parametrize("method", ["chord_phi", "grpo"])
def test_vllm_sets_every_cpu_override(method):
    cfg = _compose("cpu_rollout=vllm", f"method={method}")
    rollout = cfg.actor_rollout_ref.rollout
    assert rollout.name == "vllm" and cfg.chord.variant == method
    assert rollout.enable_sleep_mode is False and rollout.free_cache_engine is False
    assert rollout.engine_kwargs.vllm.kv_cache_memory_bytes == 256 * 2**20
    assert rollout.enforce_eager is True
    # prompt + response of the tiny task fit in the engine's context
    assert rollout.max_model_len >= cfg.data.max_prompt_length + cfg.data.max_response_length
    env = cfg.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VLLM_CPU_OMP_THREADS_BIND == "nobind" and "VERL_FILE_LOGGER_PATH" in env


def test_every_vllm_override_is_explained_in_a_comment():
    lines = (CONF / "cpu_rollout" / "vllm.yaml").read_text().splitlines()
    for key in ("enable_sleep_mode", "kv_cache_memory_bytes", "enforce_eager", "max_model_len", "nobind"):
        at = next(i for i, line in enumerate(lines) if key in line)
        assert "#" in lines[at] or lines[at - 1].lstrip().startswith("#"), key
