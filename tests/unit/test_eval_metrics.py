"""pass@k / avg@k estimators and the per-benchmark summary table (chord.metrics)."""

from __future__ import annotations

import math

import pytest

from chord.metrics import (
    avg_at_k,
    is_correct,
    k_ladder,
    markdown_table,
    mean_pass_at_k,
    pass_at_k,
    summarize_benchmark,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c / n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 0, 3, 0.0),  # no correct sample
        (5, 3, 3, 1.0),  # n - c = 2 < k: every 3-subset holds a correct sample
        (5, 5, 5, 1.0),
        (10, 1, 10, 1.0),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_binomial_ratio_and_stays_finite_for_large_n():
    assert pass_at_k(32, 7, 8) == pytest.approx(1 - math.comb(25, 8) / math.comb(32, 8), rel=1e-12)
    value = pass_at_k(5000, 3, 64)
    assert value == pytest.approx(1 - math.comb(4997, 64) / math.comb(5000, 64), rel=1e-9)
    assert 0.0 < value < 1.0


@pytest.mark.parametrize(
    ("n", "c", "k", "name"),
    [(5, 2, 6, "k"), (5, 2, 0, "k"), (5, 6, 1, "c"), (5, -1, 1, "c"), (0, 0, 1, "n")],
)
def test_pass_at_k_rejects_bad_arguments_naming_them(n, c, k, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers():
    with pytest.raises(TypeError, match="k must be an int"):
        pass_at_k(5, 2, 1.5)


def test_avg_at_k_is_mean_of_per_problem_means():
    # problem means: 0.5, 1.0, 0.0 (a problem with fewer samples weighs the same)
    assert avg_at_k([[1, 0], [True, True, True], [0, 0]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="problem 1 has no samples"):
        avg_at_k([[1], []])


def test_mean_pass_at_k_averages_over_problems():
    correct = [[True, False, False, False, True], [False] * 5]
    assert mean_pass_at_k(correct, 2) == pytest.approx((0.7 + 0.0) / 2)


def test_k_ladder_is_one_powers_of_two_and_k():
    assert k_ladder(1) == [1]
    assert k_ladder(8) == [1, 2, 4, 8]
    assert k_ladder(6) == [1, 2, 4, 6]
    assert k_ladder(32) == [1, 2, 4, 8, 16, 32]


def test_is_correct_requires_full_credit():
    assert is_correct(1.0) and is_correct(0.9999999)
    assert not is_correct(0.0) and not is_correct(-0.1) and not is_correct(-1.0)
    with pytest.raises(ValueError, match="NaN"):
        is_correct(float("nan"))


def test_summarize_benchmark_and_markdown_table():
    correct = [[True, False], [False, False]]
    summary = summarize_benchmark(
        "aime24",
        correct,
        k=2,
        scores=[[1.0, 0.0], [-0.1, -1.0]],
        lengths=[[10, 20], [30, 40]],
        truncated=[[False, False], [False, True]],
    )
    assert summary.num_problems == 2 and summary.n_samples == 2
    assert summary.avg_at_k == pytest.approx(0.25)
    assert summary.pass_at == {1: pytest.approx(0.25), 2: pytest.approx(0.5)}
    assert summary.mean_score == pytest.approx(-0.025)
    assert summary.mean_response_length == pytest.approx(25.0)
    assert summary.truncation_rate == pytest.approx(0.25)
    assert summary.to_dict()["pass_at"] == {"1": 0.25, "2": 0.5}

    table = markdown_table([summary])
    lines = table.strip().splitlines()
    assert lines[0] == "| benchmark | problems | k | avg@k | pass@1 | pass@2 | mean len | truncated % |"
    assert lines[2] == "| aime24 | 2 | 2 | 25.0 | 25.0 | 50.0 | 25.0 | 25.0 |"


def test_summarize_benchmark_rejects_k_above_samples():
    with pytest.raises(ValueError, match="k=4 exceeds the 2 samples"):
        summarize_benchmark(
            "amc", [[True, False]], k=4, scores=[[1, 0]], lengths=[[1, 1]], truncated=[[0, 0]]
        )
