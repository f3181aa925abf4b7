"""The paper-shaped benchmark's command, 2 steps of 2 methods on one seed (the full run is a benchmark).

Builds the shifted-expert task and a quickly pre-trained base policy (the smoke shortens the
pre-training through the config's `shift_task` section), then runs
`benchmarks/bench_paper_shaped.py` as the README gives it: chord-compare on `shift_tiny` with
held-out and retention accuracy from chord-eval.
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


def test_paper_shaped_benchmark_two_steps(tmp_path):
    out, workdir = tmp_path / "out", tmp_path / "shift"
    cmd = [
        sys.executable, "benchmarks/bench_paper_shaped.py", "--seeds", "1", "--steps", "2",
        "--methods", "grpo,chord_phi", "--out", str(out), "--workdir", str(workdir),
        "shift_task.base_policy.max_steps=20",
        "shift_task.data.num_train=64", "shift_task.data.num_expert=64",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "shift_tiny base policy: expected reward" in proc.stdout

    base = json.loads((workdir / "base_model" / "base_policy.json").read_text())
    assert base["key"]["spec"]["max_steps"] == 20 and 0.0 < base["task_reward"] < 1.0
    for name in ("train", "val", "retention", "expert", "pretrain"):
        assert (workdir / "data" / f"{name}.parquet").exists(), name

    report = json.loads((out / "compare.json").read_text())
    assert report["config"]["config_name"] == "shift_tiny"
    results = {m["method"]: m for m in report["methods"]}
    assert set(results) == {"grpo", "chord_phi"}
    for name, result in results.items():
        assert result["status"] == "ok", (name, result.get("error"))
        assert set(result["eval_acc"]) == {"val", "retention"}, name  # held-out and second skill
    info = json.loads((out / "benchmark.json").read_text())
    assert info["exit_code"] == 0 and info["wall_s"] > 0 and len(info["load_before"]) == 3
