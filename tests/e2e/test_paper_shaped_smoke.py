"""The paper-shaped benchmark's command, 2 steps of GRPO on 2 seeds (the full run is a benchmark).

Builds the shifted-expert task and a quickly pre-trained base policy (the smoke shortens the
pre-training through the config's `shift_task` section), then runs
`benchmarks/bench_paper_shaped.py` as the README gives it: chord-compare on `shift_tiny` with
held-out and retention accuracy from chord-eval, two runs at a time (`--jobs 2`, the
benchmark's default). Also the real-trainer check of `--seeds`: both seeds in one launch
(`--sweep`), per-seed run directories,
the mean ± std report and its per-seed JSON, time-to-reward and the claims table. (More
methods through chord-compare on the real trainer: tests/integration/test_compare_cpu.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_paper_shaped_benchmark_two_steps(tmp_path):
    out, workdir = tmp_path / "out", tmp_path / "shift"
    cmd = [
        sys.executable, "benchmarks/bench_paper_shaped.py", "--seeds", "2", "--steps", "2",
        "--methods", "grpo", "--out", str(out), "--workdir", str(workdir),
        "shift_task.base_policy.max_steps=20",
        "shift_task.data.num_train=64", "shift_task.data.num_expert=64",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "shift_tiny base policy: expected reward" in proc.stdout

    base = json.loads((workdir / "base_model" / "base_policy.json").read_text())
    assert base["key"]["spec"]["max_steps"] == 20 and 0.0 < base["task_reward"] < 1.0
    pretrain = pq.read_table(workdir / "data" / "pretrain.parquet").to_pylist()
    hedged = [r for r in pretrain if r["quality"] == 0.0]
    assert hedged and all(", not " in r["messages"][1]["content"] for r in hedged)  # shift_tiny: hedge_rows 1
    for name in ("train", "val", "retention", "expert", "pretrain"):
        assert (workdir / "data" / f"{name}.parquet").exists(), name

    report = json.loads((out / "compare.json").read_text())
    assert report["config"]["config_name"] == "shift_tiny" and report["config"]["jobs"] == 2
    assert (report["config"]["eval_k"], report["config"]["eval_temperature"]) == (8, 1.0)  # as RL samples
    assert [(m["method"], m["seed"], m["status"]) for m in report["methods"]] == [
        ("base", 0, "ok"), ("base", 1, "ok"),  # the starting policy, scored once per seed
        ("grpo", 0, "ok"), ("grpo", 1, "ok"),
    ], [m.get("error") for m in report["methods"]]  # fmt: skip
    base_eval = report["summary"].pop("base")
    assert base_eval["eval/val"]["n"] == 2 and base_eval["final_reward"]["n"] == 0
    for result in report["methods"][2:]:
        name, seed = result["method"], result["seed"]
        assert set(result["eval_acc"]) == {"val", "retention"}, name  # held-out and second skill
        assert len(result["step_wall_s"]) == 2, name
        run = out / "runs" / name / f"seed{seed}"
        assert (run / "checkpoints" / "global_step_2").is_dir(), run  # each seed's own checkpoint
    # both seeds in one launch (chord-compare --sweep, the default): one log, one start-up
    launch = (out / "runs" / "grpo" / "train.log").read_text()
    assert "sweep.seeds=[0,1]" in launch.splitlines()[0] and "sweep seed 1 (2 of 2)" in launch
    assert report["config"]["sweep"] is True
    for method, summary in report["summary"].items():
        per_seed = summary["final_reward"]["per_seed"]
        assert list(per_seed) == ["0", "1"], method
        assert summary["final_reward"]["mean"] == pytest.approx(sum(per_seed.values()) / 2), method
        spread = abs(per_seed["0"] - per_seed["1"]) / 2**0.5  # sample std of two values
        assert summary["final_reward"]["std"] == pytest.approx(spread), method
        assert summary["eval/retention"]["n"] == 2 and summary["entropy"]["n"] == 2, method
    assert report["time_to_reward"]["grpo"]["seeds"] == 2
    table = (out / "compare.md").read_text()
    assert re.search(r"\| `grpo` \| 2 \| \d\.\d{3} ± \d\.\d{3} \|", table), table
    claims = (out / "claims.md").read_text()  # the papers' orderings, written after the runs
    premise = next(line for line in claims.splitlines() if line.startswith("| `grpo` > `base` | eval/val |"))
    assert "not measured" not in premise  # both rows there, 2 seeds each
    assert "| `chord_phi` > `grpo` | final_reward | - |" in claims and "not measured" in claims
    info = json.loads((out / "benchmark.json").read_text())
    assert info["exit_code"] == 0 and info["wall_s"] > 0 and len(info["load_before"]) == 3
