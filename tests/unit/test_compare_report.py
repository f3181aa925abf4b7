"""chord-compare's summaries, Markdown table and JSON report, on hand-made metric rows."""

from __future__ import annotations

import json

import pytest

from recipe.compare.report import (
    MethodResult,
    curves,
    first_step_reaching,
    fmt_mean_std,
    fmt_reach,
    join_stages,
    markdown_table,
    mean_std,
    seed_stat,
    seed_summary,
    seed_table,
    summarize,
    time_to_reward,
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


# ---------------------------------------------------------------------------- over seeds
def _seed_run(method: str, seed: int, rewards: list[float], **extra) -> MethodResult:
    rows = [_row(i, r, entropy=2.0 - i / 4) for i, r in enumerate(rewards, 1)]
    result = summarize(method, rows, last_k=2)
    result.seed = seed
    result.step_wall_s = [[i, 8.0 + 2.0 * i] for i in range(1, len(rewards) + 1)]
    for key, value in extra.items():
        setattr(result, key, value)
    return result


def _two_seeds() -> list[MethodResult]:
    return [
        _seed_run("grpo", 0, [0.0, 0.2, 0.4, 0.4], eval_acc={"val": 10.0, "skill2": 50.0}, wall_s=100.0),
        _seed_run("chord_phi", 0, [0.4, 0.4, 0.6, 0.6], eval_acc={"val": 30.0, "skill2": 40.0}, wall_s=120.0),
        _seed_run("grpo", 1, [0.0, 0.0, 0.2, 0.2], eval_acc={"val": 20.0, "skill2": 60.0}, wall_s=110.0),
        _seed_run("chord_phi", 1, [0.0, 0.1, 0.1, 0.1], eval_acc={"val": 50.0, "skill2": 30.0}, wall_s=140.0),
    ]


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx((5.0 / 3.0) ** 0.5)  # (2.25 + 0.25 + 0.25 + 2.25) / (4 - 1)
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([]) == (None, None)


def test_fmt_mean_std_shows_a_dash_for_one_seed_and_for_none():
    assert fmt_mean_std(seed_stat({0: 0.3, 1: 0.4}), 3) == "0.350 ± 0.071"  # std = 0.1 / sqrt(2)
    assert fmt_mean_std(seed_stat({0: 0.3}), 3) == "0.300 ± -"
    assert fmt_mean_std(seed_stat({0: None}), 3) == "-"
    stat = seed_stat({0: 0.3, 1: None})
    assert stat == {"mean": 0.3, "std": None, "n": 1, "per_seed": {"0": 0.3, "1": None}}


def test_first_step_reaching_uses_the_trailing_moving_average():
    points = [[1, 0.0], [2, 0.2], [3, 0.4], [4, 0.6]]  # window 2: 0.0, 0.1, 0.3, 0.5
    assert first_step_reaching(points, 0.3, window=2) == 3
    assert first_step_reaching(points, 0.5, window=2) == 4
    assert first_step_reaching(points, 0.6, window=2) is None
    assert first_step_reaching(points, 0.6, window=1) == 4
    assert first_step_reaching(points, 0.0, window=2) == 1
    assert first_step_reaching([], 0.0, window=2) is None


def test_time_to_reward_per_seed_against_grpos_final_reward_of_the_same_seed():
    reach = time_to_reward(_two_seeds(), window=2)
    # grpo seed 0: final (0.4 + 0.4) / 2 = 0.4, moving average 0, 0.1, 0.3, 0.4 -> step 4 (wall 16)
    # grpo seed 1: final 0.2, moving average 0, 0, 0.1, 0.2 -> step 4
    assert reach["grpo"]["per_seed"] == {
        "0": {"target": pytest.approx(0.4), "step": 4, "wall_s": 16.0},
        "1": {"target": pytest.approx(0.2), "step": 4, "wall_s": 16.0},
    }
    assert (reach["grpo"]["reached"], reach["grpo"]["seeds"]) == (2, 2)
    # chord_phi seed 0 starts at 0.4 >= 0.4 (step 1, wall 10); seed 1 peaks at 0.1 < 0.2
    phi = reach["chord_phi"]
    assert phi["per_seed"]["0"] == {"target": pytest.approx(0.4), "step": 1, "wall_s": 10.0}
    assert phi["per_seed"]["1"] == {"target": pytest.approx(0.2), "step": None, "wall_s": None}
    assert (phi["reached"], phi["seeds"]) == (1, 2)
    assert phi["step"]["mean"] == 1 and phi["step"]["std"] is None
    assert fmt_reach(phi, "step", 1) == "1.0 ± - (1/2 reached)"
    assert fmt_reach(reach["grpo"], "wall_s", 0) == "16 ± 0 (2/2 reached)"


def test_time_to_reward_is_none_without_grpo_and_skips_seeds_whose_grpo_failed():
    runs = _two_seeds()
    assert time_to_reward([r for r in runs if r.method != "grpo"], window=2) is None
    runs[2].status = "failed"  # grpo seed 1
    phi = time_to_reward(runs, window=2)["chord_phi"]
    assert list(phi["per_seed"]) == ["0"]
    assert (phi["reached"], phi["seeds"]) == (1, 1)


def test_seed_summary_mean_std_per_quantity_and_benchmark_over_finished_runs():
    runs = _two_seeds()
    runs.append(_seed_run("chord_phi", 2, [0.9, 0.9], status="failed"))
    summary = seed_summary(runs)
    phi = summary["chord_phi"]
    assert (phi["runs"], phi["ok"], phi["seeds"]) == (3, 2, [0, 1, 2])
    assert phi["final_reward"]["per_seed"] == {"0": pytest.approx(0.6), "1": pytest.approx(0.1)}
    assert phi["final_reward"]["mean"] == pytest.approx(0.35)
    assert phi["final_reward"]["std"] == pytest.approx(0.25 * 2**0.5)  # |0.6 - 0.1| / sqrt(2)
    assert phi["eval/val"]["mean"] == pytest.approx(40.0)
    assert phi["eval/skill2"]["std"] == pytest.approx(10.0 / 2**0.5)
    assert phi["entropy"]["mean"] == pytest.approx(1.125)  # last 2 steps: 2 - 3/4, 2 - 4/4
    assert phi["wall_s"]["mean"] == pytest.approx(130.0)
    table = seed_table(summary, time_to_reward(runs, window=2), last_k=2).splitlines()
    assert table[0] == (
        "| method | runs | final reward (last 2) | eval skill2 (%) | eval val (%) | response length "
        "| entropy (last 2) | wall (s) | steps to GRPO's reward | wall (s) to GRPO's reward |"
    )
    assert table[2] == (
        "| `grpo` | 2 | 0.300 ± 0.141 | 55.0 ± 7.1 | 15.0 ± 7.1 | 3.00 ± 0.00 | 1.125 ± 0.000 | 105 ± 7 "
        "| 4.0 ± 0.0 (2/2 reached) | 16 ± 0 (2/2 reached) |"
    )
    assert table[3].startswith("| `chord_phi` | 2/3 ok | 0.350 ± 0.354 | 35.0 ± 7.1 | 40.0 ± 14.1 |")
    assert table[3].endswith("| 1.0 ± - (1/2 reached) | 10 ± - (1/2 reached) |")


def test_write_report_over_seeds_has_summary_per_seed_json_and_both_tables(tmp_path):
    config = {"config_name": "cpu_tiny", "steps": 4}
    json_path, md_path = write_report(_two_seeds(), config, tmp_path, window=2)
    report = json.loads(json_path.read_text())
    assert [(m["method"], m["seed"]) for m in report["methods"]] == [
        ("grpo", 0), ("chord_phi", 0), ("grpo", 1), ("chord_phi", 1),
    ]  # fmt: skip
    assert report["summary"]["grpo"]["final_reward"]["per_seed"] == {"0": 0.4, "1": 0.2}
    assert report["time_to_reward"]["chord_phi"]["per_seed"]["1"]["step"] is None
    text = md_path.read_text()
    assert "2 seeds (0, 1), 4 steps per method and seed" in text
    assert "| `chord_phi` | 2 | 0.350 ± 0.354 |" in text
    assert "| method | seed | steps | final reward (last 2) |" in text
    assert "| `chord_phi` | 1 | 4 | 0.100 | 0.100 (2) |" in text
    assert "window 2 steps" in text

    without_grpo = [r for r in _two_seeds() if r.method != "grpo"]
    _, md_path = write_report(without_grpo, {"steps": 4}, tmp_path / "no_grpo", window=2)
    text = md_path.read_text()
    assert "No time-to-reward columns: `grpo` is not among the methods" in text
    assert "to GRPO's reward |" not in text
