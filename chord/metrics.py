"""Evaluation metrics: pass@k, avg@k and per-benchmark summary tables.

Pure Python (no torch, no Ray, no verl), so any evaluation script can import it.

Notation, per problem i of a benchmark: `n_i` samples were drawn, `c_i` of them are correct.

- pass@k (unbiased estimator, Chen et al. 2021):
  `pass@k_i = 1 - C(n_i - c_i, k) / C(n_i, k)`, the probability that at least one of k
  samples drawn without replacement from the n_i is correct; the benchmark value is the mean
  over problems. Computed as the product `prod_{j = n-c+1}^{n} (1 - k / j)`, which equals the
  binomial ratio and never forms the (huge) binomial coefficients.
- avg@k: `mean_i (c_i / n_i)`, the mean correctness of the samples of each problem, averaged
  over problems (with n_i = k it is the "avg@32" of the papers; it also estimates pass@1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

# A reward counts as "correct" when it reaches this value. All rewards of this project give
# exactly 1.0 to a correct answer (math: +1 / 0 / -0.1 / -1; tool calls and the tiny task: 1 / 0).
CORRECT_THRESHOLD = 1.0


def is_correct(score: float, threshold: float = CORRECT_THRESHOLD) -> bool:
    """`score >= threshold` (default 1.0), with a 1e-6 tolerance for float rounding.

    Math rewards give 0 / -0.1 / -1 to wrong, unformatted and truncated answers, binary rewards
    give 0, so only a full-credit answer counts. Raises ValueError on NaN.
    """
    if math.isnan(score):
        raise ValueError("score is NaN")
    return score >= threshold - 1e-6


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: `1 - C(n - c, k) / C(n, k)`.

    Args:
        n: samples drawn for the problem (n >= 1).
        c: correct samples among them (0 <= c <= n).
        k: budget (1 <= k <= n).

    `C(n - c, k) / C(n, k) = prod_{j = n - c + 1}^{n} (1 - k / j)`; when `n - c < k` every
    k-subset holds a correct sample and the value is exactly 1.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must satisfy 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    all_wrong = 1.0
    for j in range(n - c + 1, n + 1):
        all_wrong *= 1.0 - k / j
    return 1.0 - all_wrong


def _check_rows(correct: Sequence[Sequence[bool]]) -> None:
    if len(correct) == 0:
        raise ValueError("no problems: the list of per-problem samples is empty")
    for i, row in enumerate(correct):
        if len(row) == 0:
            raise ValueError(f"problem {i} has no samples")


def avg_at_k(scores: Sequence[Sequence[float | bool]]) -> float:
    """`mean_i mean_j scores[i][j]`: per-problem mean over its samples, then mean over problems.

    `scores[i][j]` is the correctness (bool or 0/1) of sample j of problem i.
    """
    _check_rows(scores)
    return sum(sum(float(s) for s in row) / len(row) for row in scores) / len(scores)


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """`mean_i pass_at_k(n_i, c_i, k)` over problems (`correct[i][j]`: sample j of problem i)."""
    _check_rows(correct)
    return sum(pass_at_k(len(row), sum(bool(x) for x in row), k) for row in correct) / len(correct)


def k_ladder(k: int) -> list[int]:
    """The budgets reported for pass@k: 1 and the powers of two up to k, plus k itself.

    `k_ladder(8) == [1, 2, 4, 8]`, `k_ladder(6) == [1, 2, 4, 6]`, `k_ladder(1) == [1]`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    ladder = []
    budget = 1
    while budget <= k:
        ladder.append(budget)
        budget *= 2
    if ladder[-1] != k:
        ladder.append(k)
    return ladder


@dataclass
class BenchmarkSummary:
    """Aggregates of one benchmark. Rates are in [0, 1]; lengths are in tokens."""

    benchmark: str
    num_problems: int
    k: int  # the budget of the headline avg@k / pass@k
    n_samples: int  # samples drawn per problem (>= k)
    avg_at_k: float  # mean correctness over all samples (see `avg_at_k`)
    pass_at: dict[int, float] = field(default_factory=dict)  # budget -> mean pass@budget
    mean_score: float = 0.0  # mean raw reward
    mean_response_length: float = 0.0
    truncation_rate: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pass_at"] = {str(b): v for b, v in self.pass_at.items()}
        return out


def summarize_benchmark(
    benchmark: str,
    correct: Sequence[Sequence[bool]],
    *,
    k: int,
    scores: Sequence[Sequence[float]],
    lengths: Sequence[Sequence[int]],
    truncated: Sequence[Sequence[bool]],
) -> BenchmarkSummary:
    """Summary of one benchmark from per-problem, per-sample lists (all the same shape).

    `avg_at_k` averages over all n samples of each problem; `pass_at` holds pass@b for every b
    in `k_ladder(k)`; the response length and truncation rate are means over all samples.
    """
    _check_rows(correct)
    for name, other in (("scores", scores), ("lengths", lengths), ("truncated", truncated)):
        if len(other) != len(correct) or any(len(a) != len(b) for a, b in zip(other, correct, strict=True)):
            raise ValueError(f"{benchmark}: `{name}` does not have the shape of `correct`")
    n_samples = min(len(row) for row in correct)
    if max(len(row) for row in correct) != n_samples:
        raise ValueError(f"{benchmark}: problems have different numbers of samples")
    if k > n_samples:
        raise ValueError(f"{benchmark}: k={k} exceeds the {n_samples} samples drawn per problem")
    total = n_samples * len(correct)
    return BenchmarkSummary(
        benchmark=benchmark,
        num_problems=len(correct),
        k=k,
        n_samples=n_samples,
        avg_at_k=avg_at_k(correct),
        pass_at={b: mean_pass_at_k(correct, b) for b in k_ladder(k)},
        mean_score=sum(sum(row) for row in scores) / total,
        mean_response_length=sum(sum(row) for row in lengths) / total,
        truncation_rate=sum(sum(bool(x) for x in row) for row in truncated) / total,
    )


def markdown_table(summaries: Sequence[BenchmarkSummary] | Mapping[str, BenchmarkSummary]) -> str:
    """A Markdown table, one row per benchmark; accuracies in percent (one decimal).

    Columns: benchmark, problems, k, avg@k, pass@b for the union of all budgets (blank where a
    benchmark's k is smaller), mean response length (tokens), truncation rate (percent).
    """
    rows = list(summaries.values()) if isinstance(summaries, Mapping) else list(summaries)
    budgets = sorted({b for s in rows for b in s.pass_at})
    header = ["benchmark", "problems", "k", "avg@k", *[f"pass@{b}" for b in budgets]]
    header += ["mean len", "truncated %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in rows:
        cells = [s.benchmark, str(s.num_problems), str(s.k), f"{100 * s.avg_at_k:.1f}"]
        cells += [f"{100 * s.pass_at[b]:.1f}" if b in s.pass_at else "" for b in budgets]
        cells += [f"{s.mean_response_length:.1f}", f"{100 * s.truncation_rate:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
