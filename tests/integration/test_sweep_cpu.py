"""A seed sweep (`sweep.seeds`, recipe/train/sweep.py) trains each seed as a fresh launch would.

One launch runs chord_phi for seeds 0 and 1 (Ray and the workers start once; the policy, its
optimizer and the rollout servers' seed are reset before seed 1); a second launch runs seed 1
alone. Seed 1's metrics must be the same in both, step by step: the reset leaves nothing of seed
0 behind (Adam moments, LR schedule, RNG, sampling seed, expert-buffer and data order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 2
# Logged quantities that depend on the policy, its optimizer state, the sampled rollouts and the
# expert rows: any state carried over from seed 0 changes them.
COMPARED = (
    "actor/pg_loss",
    "actor/sft_loss",
    "actor/grad_norm",
    "actor/entropy",
    "actor/expert_p_mean",
    "critic/score/mean",
    "response_length/mean",
    "chord/expert_tokens",
)


def launch(workdir: Path, log: Path, *overrides: str) -> None:
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", "method=chord_phi",
        f"trainer.total_training_steps={STEPS}", f"trainer.save_freq={STEPS}", "trainer.resume_mode=disable",
        "trainer.test_freq=-1", "trainer.val_before_train=false", *overrides,
    ]  # fmt: skip
    env = dict(os.environ, CHORD_WORKDIR=str(workdir), RAY_DEDUP_LOGS="0")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def step_rows(metrics: Path) -> list[dict]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r["data"] for r in rows if "chord/mu" in r["data"]]


@pytest.fixture(scope="module")
def runs(workdir, tmp_path_factory):
    sweep = tmp_path_factory.mktemp("sweep")
    launch(workdir, sweep / "train.log", "sweep.seeds=[0,1]", f"sweep.dir={sweep}")
    alone = tmp_path_factory.mktemp("alone")
    launch(
        workdir, alone / "train.log",
        "data.seed=1", "++chord.expert.seed=1", "actor_rollout_ref.rollout.seed=1",
        f"trainer.default_local_dir={alone / 'checkpoints'}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={alone / 'metrics.jsonl'}",
    )  # fmt: skip
    return sweep, alone


def test_every_seed_writes_its_own_metrics_and_checkpoint(runs):
    sweep, _ = runs
    for seed in (0, 1):
        folder = sweep / f"seed{seed}"
        assert len(step_rows(folder / "metrics.jsonl")) == STEPS
        assert (folder / "checkpoints" / f"global_step_{STEPS}" / "actor").is_dir()
    assert "sweep seed 1 (2 of 2)" in (sweep / "train.log").read_text()


def test_a_later_seed_trains_exactly_as_a_fresh_launch_of_it(runs):
    sweep, alone = runs
    swept, fresh = step_rows(sweep / "seed1" / "metrics.jsonl"), step_rows(alone / "metrics.jsonl")
    assert len(swept) == len(fresh) == STEPS
    for step, (a, b) in enumerate(zip(swept, fresh, strict=True), 1):
        for key in COMPARED:
            assert a[key] == b[key], (step, key, a[key], b[key])


def test_the_seeds_differ(runs):
    sweep, _ = runs
    first, second = (step_rows(sweep / f"seed{s}" / "metrics.jsonl") for s in (0, 1))
    assert [r["chord/expert_tokens"] for r in first] != [r["chord/expert_tokens"] for r in second] or [
        r["response_length/mean"] for r in first
    ] != [r["response_length/mean"] for r in second]
