"""chord-compare on the real verl trainer (CPU, tiny model and task): 2 methods x 2 steps.

Three trainer launches (sft_then_rl is two), one to two minutes each, most of it Ray and FSDP
start-up. Checks the table, the JSON, the plot and the SFT -> RL hand-off. GRPO, `--seeds` and
`--jobs` on the real trainer: tests/e2e/test_paper_shaped_smoke.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_compare_two_methods_two_steps_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "cmp"
    cmd = [
        sys.executable, "-m", "recipe.compare.cli",
        "--methods", "chord_phi,sft_then_rl", "--steps", "2", "--seed", "1",
        "--out", str(out), "--workdir", str(tmp_path / "assets"), "--eval-max-problems", "8",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1800)
    printed = proc.stdout
    assert proc.returncode == 0, (printed + proc.stderr)[-4000:]
    assert "[1/2 chord_phi] step 2/2" in printed
    assert "[2/2 sft_then_rl:rl] step 2/2" in printed
    assert "all 4/4 (100%)" in printed

    report = json.loads((out / "compare.json").read_text())
    results = {m["method"]: m for m in report["methods"]}
    base = results.pop("base")  # the starting policy: scored by the same chord-eval, not trained
    assert base["status"] == "ok" and base["steps"] == 0 and 0.0 <= base["eval_acc"]["val"] <= 100.0
    assert list(results) == ["chord_phi", "sft_then_rl"]
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
