"""`chord-eval` end to end on CPU: tiny model, tiny arithmetic benchmark, HF backend."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipe.eval.cli import RESULTS_JSON, RESULTS_MD, main


def _tiny_arith(path: Path, pairs: list[tuple[int, int]]) -> Path:
    rows = [
        {
            "data_source": "chord/tiny_arith",
            "prompt": [{"role": "user", "content": f"{a}+{b}="}],
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"index": i, "split": "test"},
        }
        for i, (a, b) in enumerate(pairs)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def benchmarks(tmp_path) -> list[Path]:
    return [
        _tiny_arith(tmp_path / "tiny_arith.parquet", [(3, 4), (1, 2), (2, 5)]),
        _tiny_arith(tmp_path / "tiny_hard.parquet", [(9, 9), (8, 7)]),
    ]


def _run(model, benchmarks, out, *extra) -> int:
    argv = ["--model", str(model), "--data", *map(str, benchmarks), "--backend", "hf"]
    argv += ["--k", "2", "--max-new-tokens", "4", "--seed", "5", "--out", str(out), *extra]
    return main(argv)


def test_chord_eval_writes_json_and_markdown_per_benchmark(tiny_model_dir, benchmarks, tmp_path, capsys):
    rc = _run(tiny_model_dir, benchmarks, tmp_path / "out", "--k-per-benchmark", "tiny_hard=4")
    assert rc == 0
    report = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    assert list(report["summary"]) == ["tiny_arith", "tiny_hard"]
    assert report["config"]["k"] == {"tiny_arith": 2, "tiny_hard": 4}
    assert report["config"]["backend"] == "hf" and report["config"]["model_kind"] == "hf"

    arith, hard = report["summary"]["tiny_arith"], report["summary"]["tiny_hard"]
    assert arith["num_problems"] == 3 and hard["num_problems"] == 2
    assert list(arith["pass_at"]) == ["1", "2"] and list(hard["pass_at"]) == ["1", "2", "4"]
    for summary in (arith, hard):
        values = [summary["avg_at_k"], summary["truncation_rate"], *summary["pass_at"].values()]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert 1.0 <= summary["mean_response_length"] <= 4.0

    problems = report["benchmarks"]["tiny_hard"]["problems"]
    assert [p["ground_truth"] for p in problems] == ["18", "15"]
    assert all(len(p["samples"]) == 4 for p in problems)
    sample = problems[0]["samples"][0]
    assert set(sample) >= {"response", "score", "correct", "num_tokens", "truncated"}
    assert sample["correct"] == (sample["score"] >= 1.0)

    table = (tmp_path / "out" / RESULTS_MD).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| tiny_")]
    assert [r.split("|")[1].strip() for r in rows] == ["tiny_arith", "tiny_hard"]
    assert "| benchmark | problems | k | avg@k | pass@1 | pass@2 | pass@4 |" in table
    assert "| tiny_arith | 3 | 2 |" in capsys.readouterr().out


def test_chord_eval_is_deterministic_given_the_seed(tiny_model_dir, benchmarks, tmp_path):
    assert _run(tiny_model_dir, benchmarks[:1], tmp_path / "a") == 0
    assert _run(tiny_model_dir, benchmarks[:1], tmp_path / "b") == 0
    a = json.loads((tmp_path / "a" / RESULTS_JSON).read_text())["benchmarks"]
    b = json.loads((tmp_path / "b" / RESULTS_JSON).read_text())["benchmarks"]
    for report in (a, b):
        report["tiny_arith"].pop("seconds")
    assert a == b


def test_chord_eval_reports_bad_arguments_with_exit_code_2(tiny_model_dir, benchmarks, tmp_path, capsys):
    assert _run(tiny_model_dir, benchmarks, tmp_path / "out", "--k-per-benchmark", "gpqa=4") == 2
    assert "unknown benchmark(s) ['gpqa']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
