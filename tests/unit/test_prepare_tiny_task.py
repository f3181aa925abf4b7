"""The tiny bundled arithmetic task: deterministic, correct answers, held-out validation problems."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from chord.prepare.tiny_task import DATA_SOURCE, OPS, generate_tiny_task, main, problem_space
from chord.rewards import compute_score


def _rows(path):
    return pq.read_table(path).to_pylist()


def _solve(problem: str) -> str:
    body = problem.rstrip("=")
    for op, fn in OPS.items():
        if op in body:
            a, b = body.split(op)
            return str(fn(int(a), int(b)))
    raise AssertionError(problem)


def test_problem_space_sizes_and_non_negative_answers():
    assert len(problem_space(9, "+")) == 100
    minus = problem_space(3, "-")
    assert len(minus) == 10 and all(not a.startswith("-") for _, a in minus)
    assert ("3*4=", "12") in problem_space(4, "*")


def test_files_have_the_requested_sizes_and_correct_answers(tmp_path):
    paths = generate_tiny_task(tmp_path, num_train=40, num_val=8, num_expert=20, ops="+-*", max_operand=5)
    train, val, expert = _rows(paths["train"]), _rows(paths["val"]), _rows(paths["expert"])
    assert (len(train), len(val), len(expert)) == (40, 8, 20)
    for r in train + val:
        problem, gt = r["prompt"][0]["content"], r["reward_model"]["ground_truth"]
        assert r["data_source"] == DATA_SOURCE and gt == _solve(problem) and gt.isdigit()
    for r in expert:
        user, answer = r["messages"]
        assert (user["role"], answer["role"]) == ("user", "assistant")
        assert compute_score(r["data_source"], answer["content"], _solve(user["content"]))["score"] == 1.0


def test_same_seed_same_files_other_seed_other_order(tmp_path):
    a = generate_tiny_task(tmp_path / "a", num_train=30, num_val=5, num_expert=10, seed=1)
    b = generate_tiny_task(tmp_path / "b", num_train=30, num_val=5, num_expert=10, seed=1)
    c = generate_tiny_task(tmp_path / "c", num_train=30, num_val=5, num_expert=10, seed=2)
    assert all(pq.read_table(a[k]).equals(pq.read_table(b[k])) for k in a)
    assert not pq.read_table(a["train"]).equals(pq.read_table(c["train"]))


def test_val_problems_are_distinct_and_held_out_from_train_and_expert(tmp_path):
    paths = generate_tiny_task(tmp_path, num_train=200, num_val=20, num_expert=50)
    val = [r["prompt"][0]["content"] for r in _rows(paths["val"])]
    train = {r["prompt"][0]["content"] for r in _rows(paths["train"])}
    expert = {r["messages"][0]["content"] for r in _rows(paths["expert"])}
    assert len(set(val)) == 20
    assert not set(val) & train and not set(val) & expert
    assert len(train) == 80  # the 100 problems minus the 20 held out, all used


def test_train_rows_cycle_through_all_problems_before_repeating(tmp_path):
    paths = generate_tiny_task(tmp_path, num_train=160, num_val=20, num_expert=1)
    counts = Counter(r["prompt"][0]["content"] for r in _rows(paths["train"]))
    assert set(counts.values()) == {2} and len(counts) == 80


def test_tiny_space_shares_problems_instead_of_failing(tmp_path):
    paths = generate_tiny_task(tmp_path, num_train=4, num_val=3, num_expert=2, max_operand=0)
    assert {r["prompt"][0]["content"] for r in _rows(paths["val"])} == {"0+0="}
    assert {r["prompt"][0]["content"] for r in _rows(paths["train"])} == {"0+0="}


def test_val_can_share_the_train_distribution_on_request(tmp_path):
    paths = generate_tiny_task(tmp_path, num_train=100, num_val=10, num_expert=1, val_held_out=False)
    train = {r["prompt"][0]["content"] for r in _rows(paths["train"])}
    assert len(train) == 100


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown ops"):
        problem_space(9, "/")
    with pytest.raises(ValueError, match="num_val"):
        generate_tiny_task("unused", num_val=0)


def test_cli(tmp_path, capsys):
    main(
        [
            "--out-dir",
            str(tmp_path),
            "--num-train",
            "12",
            "--num-val",
            "4",
            "--num-expert",
            "6",
            "--ops",
            "+-",
        ]
    )
    assert "155 distinct problems" in capsys.readouterr().out
    assert pq.read_metadata(tmp_path / "expert.parquet").num_rows == 6


def test_thin_script_runs_as_a_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "prepare_tiny.py"
    out = subprocess.run(
        [sys.executable, str(script), "--out-dir", str(tmp_path), "--num-train", "5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert pq.read_metadata(tmp_path / "train.parquet").num_rows == 5
