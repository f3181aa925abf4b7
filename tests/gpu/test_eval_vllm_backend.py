"""chord-eval's vLLM backend on a GPU: n samples per prompt, reproducible given the seed."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.mark.gpu
def test_chord_eval_vllm_backend_samples_k_per_prompt_reproducibly(tiny_model_dir, tmp_path):
    pytest.importorskip("vllm")
    from recipe.eval.cli import RESULTS_JSON, main

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
        argv = ["--model", str(tiny_model_dir), "--data", str(data), "--backend", "vllm", "--k", "4"]
        argv += ["--max-new-tokens", "8", "--seed", "1", "--gpu-memory-utilization", "0.3"]
        argv += ["--max-model-len", "256", "--out", str(tmp_path / run)]
        assert main(argv) == 0
        reports.append(json.loads((tmp_path / run / RESULTS_JSON).read_text()))
    summary = reports[0]["summary"]["tiny_arith"]
    assert reports[0]["config"]["backend"] == "vllm"
    assert summary["n_samples"] == 4 and list(summary["pass_at"]) == ["1", "2", "4"]
    assert 0.0 <= summary["avg_at_k"] <= 1.0 and 1.0 <= summary["mean_response_length"] <= 8.0
    samples = [
        [s["response"] for s in p["samples"]] for p in reports[0]["benchmarks"]["tiny_arith"]["problems"]
    ]
    assert all(len(s) == 4 for s in samples)
    assert any(len(set(s)) > 1 for s in samples)  # the n samples of a prompt are not copies
    again = [
        [s["response"] for s in p["samples"]] for p in reports[1]["benchmarks"]["tiny_arith"]["problems"]
    ]
    assert samples == again
