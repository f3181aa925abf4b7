"""The real verl trainer with CHORD on CPU: local Ray cluster, 2 FSDP2 ranks on gloo, hf rollout.

Each run is `python -m recipe.train.main --config-name cpu_tiny ...` in a subprocess (what
`chord-train` runs), on the tiny model and the bundled task, and the assertions read verl's
metrics file and checkpoint folder. About a minute per run, most of it Ray and FSDP start-up.
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

REPO = Path(__file__).resolve().parents[2]
STEPS = 3


def run_trainer(workdir: Path, run_dir: Path, *overrides: str, steps: int = STEPS) -> list[dict]:
    """Train with the cpu_tiny preset; returns the per-step metrics rows."""
    metrics = run_dir / "metrics.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "recipe.train.main",
        "--config-name",
        "cpu_tiny",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        *overrides,
    ]
    env = dict(os.environ, CHORD_WORKDIR=str(workdir), RAY_DEDUP_LOGS="0")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    (run_dir / "train.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in rows if "chord/mu" in r["data"]]


@pytest.fixture(scope="module")
def phi_run(workdir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("phi")
    rows = run_trainer(workdir, run_dir, "method=chord_phi", "trainer.save_freq=2")
    return run_dir, rows


def test_chord_phi_logs_chord_metrics_every_step(phi_run):
    _, rows = phi_run
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        data = row["data"]
        assert data["chord/mu"] == pytest.approx(0.1)
        assert data["chord/expert_rows"] == 32  # cpu_tiny: chord.expert.rows_per_step
        assert data["chord/expert_tokens"] > 0
        for key in ("actor/pg_loss", "actor/sft_loss", "actor/phi_mean", "actor/expert_p_mean"):
            assert key in data and data[key] == data[key], key  # present and not NaN
        assert 0.0 < data["actor/phi_mean"] <= 0.25
        # where the update's time goes (recipe.train.trainer / recipe.train.workers)
        merge_parts = [data[f"timing_s/chord_merge/{p}"] for p in ("buffer", "pad", "concat", "interleave")]
        assert 0.0 <= sum(merge_parts) <= data["timing_s/chord_merge"] <= data["timing_s/update_actor"]
        worker = [data[f"actor/timing_s/{p}"] for p in ("chord_normalizer", "chord_loss", "train_mini_batch")]
        assert min(worker) > 0.0 and worker[1] < worker[2] < data["timing_s/update_actor"]
        tokens = [data[f"chord/{k}"] for k in ("update_tokens", "update_response_tokens", "expert_tokens")]
        assert tokens[0] > tokens[1] >= tokens[2] > 0


def test_chord_phi_writes_checkpoints_with_buffer_state(phi_run):
    run_dir, _ = phi_run
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    for step in (2, 3):
        state = json.loads((ckpt / f"global_step_{step}" / "chord_state.json").read_text())
        assert state["global_steps"] == step
        assert state["expert_buffer"] is not None
        assert (ckpt / f"global_step_{step}" / "actor").is_dir()


def test_resume_from_step_2_continues_with_same_mu_and_expert_rows(phi_run, workdir, tmp_path):
    run_dir, rows = phi_run
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "checkpoints" / "global_step_2", resumed_dir / "checkpoints" / "global_step_2")
    (resumed_dir / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("2")
    # The first run prefetched step 3's rows before saving step 2: the state must describe the rows
    # consumed, so a run without prefetch resumes with exactly the rows the first run served.
    resumed = run_trainer(
        workdir, resumed_dir, "method=chord_phi", "trainer.save_freq=-1", "chord.expert.prefetch=false"
    )
    assert [r["step"] for r in resumed] == [3]
    uninterrupted = rows[-1]["data"]
    assert resumed[0]["data"]["chord/mu"] == pytest.approx(uninterrupted["chord/mu"])
    assert resumed[0]["data"]["chord/expert_fingerprint"] == uninterrupted["chord/expert_fingerprint"]
    assert resumed[0]["data"]["chord/expert_epoch"] == pytest.approx(uninterrupted["chord/expert_epoch"])


def test_unknown_chord_key_fails_at_start_up_naming_it(workdir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "recipe.train.main",
        "--config-name",
        "cpu_tiny",
        "+chord.expert.rows_per_stp=3",
    ]
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "chord.expert.rows_per_stp" in proc.stderr


def test_iw_sft_uses_reference_log_probs_from_verls_reference_worker(workdir, tmp_path):
    # One mini-batch per step: within step 1 every micro-batch still sees the initial weights.
    one_mini_batch = "actor_rollout_ref.actor.ppo_mini_batch_size=16"
    rows = run_trainer(workdir, tmp_path, "method=iw_sft", "trainer.save_freq=-1", one_mini_batch, steps=2)
    assert [r["step"] for r in rows] == [1, 2]
    first, second = rows[0]["data"], rows[1]["data"]
    # Step 1: the policy is the reference, so every sequence weight is exp(0) = 1.
    assert first["actor/sft_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    # Step 2: the policy has moved away from the reference: weights differ from 1, within w_max.
    assert second["actor/sft_weight_mean"] != pytest.approx(1.0, abs=1e-6)
    assert 0.0 < second["actor/sft_weight_max"] <= 16.0
    assert second["chord/mu"] == pytest.approx(1.0)


def test_luffy_adds_one_expert_trace_per_prompt(workdir, tmp_path):
    rows = run_trainer(workdir, tmp_path, "method=luffy", "trainer.save_freq=-1", steps=2)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        data = row["data"]
        assert data["chord/expert_rows"] == 16  # cpu_tiny: data.train_batch_size prompts
        assert data["chord/mu"] == 0.0
        assert "actor/offpolicy_loss" in data and data["actor/expert_p_mean"] > 0


def test_iw_token_normalised_over_each_whole_mini_batch(workdir, tmp_path):
    """`method=iw_token` through the trainer, with `chord.iw.normalize=true`: the worker's no-grad
    forward gives the mini-batch's weight sum, so the token weights average exactly 1 over each
    mini-batch's expert tokens (all micro-batches and both ranks) while differing from 1."""
    rows = run_trainer(
        workdir, tmp_path, "method=iw_token", "chord.iw.normalize=true", "trainer.save_freq=-1", steps=2
    )
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        data = row["data"]
        assert data["chord/expert_rows"] == 32 and data["chord/mu"] == pytest.approx(1.0)
        assert data["actor/sft_weight_mean"] == pytest.approx(1.0, abs=1e-4)
        assert data["actor/sft_loss"] > 0
    # the policy has moved from the reference by step 2: the weights are not all 1
    assert rows[1]["data"]["actor/sft_weight_max"] > 1.0 + 1e-4
