"""chord-compare on the real verl trainer (CPU, tiny model and task): 3 methods x 2 steps, and
2 methods x 2 seeds x 2 steps.

Each compare run is four trainer launches (sft_then_rl is two), about a minute each, most of it
Ray and FSDP start-up. Checks the table, the JSON, the plot and the SFT -> RL hand-off; with
--seeds, the per-seed run directories and the mean ± std report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_compare_three_methods_two_steps_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "cmp"
    cmd = [
        sys.executable, "-m", "recipe.compare.cli",
        "--methods", "grpo,chord_phi,sft_then_rl", "--steps", "2", "--seed", "1",
        "--out", str(out), "--workdir", str(tmp_path / "assets"), "--eval-max-problems", "8",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1800)
    printed = proc.stdout
    assert proc.returncode == 0, (printed + proc.stderr)[-4000:]
    assert "[1/3 grpo] step 2/2" in printed
    assert "[3/3 sft_then_rl:rl] step 2/2" in printed
    assert "all 6/6 (100%)" in printed

    report = json.loads((out / "compare.json").read_text())
    results = {m["method"]: m for m in report["methods"]}
    assert list(results) == ["grpo", "chord_phi", "sft_then_rl"]
    for name, result in results.items():
        assert result["status"] == "ok" and result["error"] is None, name
        assert result["steps"] == 2, name
        assert [p[0] for p in result["curves"]["reward"]] == [1, 2], name
        assert 0.0 <= result["eval_acc"]["val"] <= 100.0, name
        assert result["wall_s"] > 0, name
    assert [p[1] for p in results["chord_phi"]["curves"]["mu"]] == pytest.approx([0.1, 0.1])
    assert [p[1] for p in results["sft_then_rl"]["curves"]["mu"]] == [1.0, 0.0]  # SFT step, then GRPO
    assert report["config"]["seed"] == 1

    # Stage 2 trained from stage 1's saved weights.
    rl_log = (out / "runs" / "sft_then_rl" / "rl" / "train.log").read_text().splitlines()[0]
    sft_hf = out / "runs" / "sft_then_rl" / "sft" / "checkpoints" / "global_step_1" / "actor" / "huggingface"
    assert f"actor_rollout_ref.model.path={sft_hf}" in rl_log
    assert (sft_hf / "model.safetensors").is_file()

    table = (out / "compare.md").read_text()
    assert "| method | steps | final reward (last 2) | best reward (step) | eval val (%) |" in table
    for name in results:
        assert f"| `{name}` | 2 |" in table
    assert mpimg.imread(out / "compare.png").shape[:2] == (800, 1200)


def test_compare_two_seeds_two_methods_report_mean_std_and_per_seed_json(tmp_path):
    """`--seeds 2 --steps 2`, grpo and sft: four trainer launches, seed-major, one directory each."""
    out = tmp_path / "cmp"
    cmd = [
        sys.executable, "-m", "recipe.compare.cli",
        "--methods", "grpo,sft", "--steps", "2", "--seed", "0", "--seeds", "2",
        "--out", str(out), "--workdir", str(tmp_path / "assets"), "--eval-max-problems", "4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.index("[2/4 sft seed 0] step 2/2") < proc.stdout.index("[3/4 grpo seed 1] step 1/2")
    for method in ("grpo", "sft"):
        for seed in (0, 1):
            run = out / "runs" / method / f"seed{seed}"
            assert f"data.seed={seed}" in (run / "train.log").read_text().splitlines()[0], run
            assert len((run / "metrics.jsonl").read_text().splitlines()) >= 2, run

    report = json.loads((out / "compare.json").read_text())
    assert [(m["method"], m["seed"], m["status"]) for m in report["methods"]] == [
        ("grpo", 0, "ok"), ("sft", 0, "ok"), ("grpo", 1, "ok"), ("sft", 1, "ok"),
    ]  # fmt: skip
    for method, summary in report["summary"].items():
        per_seed = summary["final_reward"]["per_seed"]
        assert list(per_seed) == ["0", "1"], method
        assert summary["final_reward"]["mean"] == pytest.approx(sum(per_seed.values()) / 2), method
        spread = abs(per_seed["0"] - per_seed["1"]) / 2**0.5  # sample std of two values
        assert summary["final_reward"]["std"] == pytest.approx(spread), method
        assert summary["eval/val"]["n"] == 2 and summary["entropy"]["n"] == 2, method
    assert report["time_to_reward"]["grpo"]["seeds"] == 2
    assert all(len(m["step_wall_s"]) == 2 for m in report["methods"])

    table = (out / "compare.md").read_text()
    assert "| method | runs | final reward (last 2) | eval val (%) | response length | entropy" in table
    for method in ("grpo", "sft"):
        assert re.search(rf"\| `{method}` \| 2 \| \d\.\d{{3}} ± \d\.\d{{3}} \| \d+\.\d ± \d+\.\d \|", table)
    assert mpimg.imread(out / "compare.png").shape[:2] == (800, 1200)
