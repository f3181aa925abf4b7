"""The main job end to end: `chord-demo` (what `make demo` runs) on the tiny model, shortened.

It builds the model and the bundled task, trains with the real verl trainer on CPU, and leaves
the metrics file, the reward/mu plot and a checkpoint with the expert buffer's state. The mu
schedule is shortened to the 4 steps (overrides reach the trainer) and checked step by step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chord.schedules import build_mu_schedule
from recipe.train.config import MuConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_demo_trains_and_writes_metrics_plot_and_checkpoint(tmp_path):
    steps = 4
    cmd = [
        sys.executable, "-m", "recipe.demo", "--workdir", str(tmp_path),
        f"trainer.total_training_steps={steps}", f"trainer.save_freq={steps}", "trainer.test_freq=-1",
        f"chord.mu.decay_steps={steps}", "chord.mu.valley=0.05",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert f"chord demo: {steps} steps" in proc.stdout

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps_logged = [r for r in rows if "chord/mu" in r["data"]]
    assert [r["step"] for r in steps_logged] == list(range(1, steps + 1))
    # CHORD-mu: the preset's cosine from 0.9, here to 0.05 over the 4 steps, computed by the trainer
    mu = MuConfig(schedule="cosine", warmup_steps=0, decay_steps=steps, peak=0.9, valley=0.05)
    expected = build_mu_schedule(mu.schedule, **mu.schedule_params())
    for row in steps_logged:
        assert row["data"]["chord/mu"] == pytest.approx(expected(row["step"])), row["step"]
        assert row["data"]["chord/expert_rows"] == 32 and row["data"]["actor/sft_loss"] > 0
    mus = [r["data"]["chord/mu"] for r in steps_logged]
    assert mus == sorted(mus, reverse=True) and mus[0] > mus[-1]
    assert any("val-core/chord/tiny_arith/acc/mean@1" in r["data"] for r in rows)  # validation ran

    from PIL import Image

    with Image.open(tmp_path / "reward_mu.png") as png:
        assert png.size[0] > 400 and png.size[1] > 200
    step_dir = tmp_path / "checkpoints" / f"global_step_{steps}"
    assert (step_dir / "actor").is_dir()
    assert json.loads((step_dir / "chord_state.json").read_text())["expert_buffer"]["epoch"] == 0
