"""chord-compare's summaries, Markdown table and JSON report, on hand-made metric rows."""

from __future__ import annotations

import json

import pytest

from recipe.compare.report import (
    MethodResult,
    curves,
    join_stages,
    markdown_table,
    summarize,
    validation_accuracy,
    write_report,
)


def _row(step: int, reward: float, mu: float = 0.1, length: float = 3.0, entropy: float = 1.0) -> dict:
    return {
        "step": step,
        "critic/score/mean": reward,
        "chord/mu": mu,
        "actor/entropy": entropy,
        "response_length/mean": length,
        "timing_s/step": 1.5,
    }


def test_summarize_takes_final_reward_over_last_k_and_earliest_best():
    rows = [_row(1, 0.0), _row(2, 0.5, length=2.0), _row(3, 0.25, length=4.0), _row(4, 0.5, length=6.0)]
    result = summarize("chord_phi", rows, last_k=2)
    assert result.steps == 4
    assert result.last_k == 2
    assert result.final_reward == pytest.approx(0.375)  # (0.25 + 0.5) / 2
    assert result.best_reward == 0.5
    assert result.best_step == 2  # the first step reaching the best value
    assert result.response_length == pytest.approx(5.0)  # (4 + 6) / 2
    assert result.step_s == pytest.approx(1.5)


def test_summarize_clamps_last_k_to_the_steps_logged():
    result = summarize("grpo", [_row(1, 0.2), _row(2, 0.4)], last_k=5)
    assert result.last_k == 2
    assert result.final_reward == pytest.approx(0.3)


def test_summarize_without_reward_raises_naming_the_method():
    with pytest.raises(ValueError, match="grpo"):
        summarize("grpo", [{"step": 1, "chord/mu": 0.0}], last_k=1)


def test_join_stages_offsets_the_second_stage():
    sft = [_row(1, 0.0, mu=1.0), _row(2, 0.1, mu=1.0)]
    rl = [_row(1, 0.3, mu=0.0)]
    joined = join_stages([sft, rl], [0, 2])
    assert [r["step"] for r in joined] == [1, 2, 3]
    assert [r["chord/mu"] for r in joined] == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="overlap"):
        join_stages([sft, rl], [0, 1])


def test_curves_keep_finite_values_of_the_four_plotted_metrics():
    rows = [_row(1, 0.5), {**_row(2, 0.75), "actor/entropy": float("nan")}]
    out = curves(rows)
    assert out["reward"] == [[1, 0.5], [2, 0.75]]
    assert out["entropy"] == [[1, 1.0]]
    assert sorted(out) == ["entropy", "mu", "response_length", "reward"]


def test_validation_accuracy_keeps_the_last_value_per_source_in_percent():
    records = [
        {"step": 0, "data": {"val-core/chord/tiny_arith/acc/mean@1": 0.0}},
        {"step": 5, "data": {"critic/score/mean": 0.2, "val-core/chord/tiny_arith/acc/mean@1": 0.25}},
        {"step": 5, "data": {"val-aux/chord/tiny_arith/score/mean@1": 0.9}},
    ]
    assert validation_accuracy(records) == {"chord/tiny_arith": 25.0}


def test_markdown_table_has_one_row_per_method_and_eval_columns_per_benchmark():
    ok = MethodResult(
        "chord_phi", steps=4, last_k=2, final_reward=0.375, best_reward=0.5, best_step=2,
        response_length=5.0, eval_acc={"val": 31.25}, wall_s=95.4,
    )  # fmt: skip
    failed = MethodResult("grpo", status="failed", steps=1, last_k=1, final_reward=0.0, best_reward=0.0,
                          best_step=1, wall_s=40.0)  # fmt: skip
    table = markdown_table([ok, failed])
    lines = table.splitlines()
    assert lines[0] == (
        "| method | steps | final reward (last 2) | best reward (step) | eval val (%) "
        "| response length | wall (s) |"
    )
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| `chord_phi` | 4 | 0.375 | 0.500 (2) | 31.2 | 5.00 | 95 |"
    assert lines[3] == "| `grpo` | failed after 1 | 0.000 | 0.000 (1) | - | - | 40 |"


def test_write_report_writes_json_and_markdown(tmp_path):
    result = summarize("sft", [_row(1, 0.1), _row(2, 0.2)], last_k=2)
    result.eval_acc = {"val": 50.0}
    config = {"command": "chord-compare --steps 2", "config_name": "cpu_tiny", "seed": 0, "steps": 2}
    json_path, md_path = write_report([result], config, tmp_path, plot=tmp_path / "compare.png")
    report = json.loads(json_path.read_text())
    assert report["config"]["steps"] == 2
    assert report["methods"][0]["method"] == "sft"
    assert report["methods"][0]["curves"]["reward"] == [[1, 0.1], [2, 0.2]]
    text = md_path.read_text()
    assert "`chord-compare --steps 2`" in text
    assert "| `sft` | 2 | 0.150 | 0.200 (2) | 50.0 |" in text
    assert text.rstrip().endswith("![curves](compare.png)")
    assert MethodResult(**report["methods"][0]).final_reward == pytest.approx(0.15)  # round trip
