"""GPU end-to-end: the same trainer with vLLM rollout and flash-attn, 3 steps of CHORD-phi.

Runs only where CUDA, vLLM and flash-attn are installed (`pip install -e .[gpu]` or the GPU
Docker image); skipped elsewhere. Same tiny model and task as the CPU tests, so it checks the
GPU wiring (vLLM replica, NCCL, FSDP2 on CUDA, weight sync), not model quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


def test_chord_phi_three_steps_with_vllm_and_flash_attn(tmp_path):
    pytest.importorskip("vllm")
    pytest.importorskip("flash_attn")
    import torch

    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "model")
    generate_tiny_task(tmp_path / "data", num_train=128, num_val=16, num_expert=64, seed=0)
    n_gpus = torch.cuda.device_count()
    metrics = tmp_path / "metrics.jsonl"
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", "method=chord_phi",
        "trainer.device=cuda", f"trainer.n_gpus_per_node={n_gpus}", "trainer.total_training_steps=3",
        "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.val_before_train=false",
        "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.free_cache_engine=true",
        "actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2",
        "actor_rollout_ref.actor.fsdp_config.dtype=bfloat16",
        f"ray_kwargs.ray_init.num_gpus={n_gpus}", "ray_kwargs.ray_init.num_cpus=null",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}",
    ]  # fmt: skip
    if n_gpus != 2:
        # cpu_tiny's batch arithmetic assumes 2 ranks; 1 rank: one mini-batch of 24 rows per step.
        cmd.append("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=24")
    env = dict(os.environ, CHORD_WORKDIR=str(tmp_path))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [json.loads(line)["data"] for line in metrics.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "chord/mu" in r]
    assert len(steps) == 3
    assert all(r["chord/expert_rows"] == 32 and r["actor/sft_loss"] > 0 for r in steps)
