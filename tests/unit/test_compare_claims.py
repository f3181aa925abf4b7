"""The papers' orderings checked on a multi-seed report (recipe.compare.claims), hand-computed."""

from __future__ import annotations

import math

import pytest

from recipe.compare.claims import (
    HOLDS,
    MEAN_ONLY,
    NOT_IN_MEAN,
    NOT_MEASURED,
    PAPER_CLAIMS,
    REVERSED,
    Claim,
    check_claims,
    claims_table,
    verdict,
)


def stat(mean, std, n=3):
    return {"mean": mean, "std": std, "n": n, "per_seed": {}}


def test_verdict_uses_two_standard_errors_of_the_difference():
    # se = sqrt(0.03^2/3 + 0.04^2/3) = sqrt(0.0025/3) = 0.02887; 2 se = 0.0577
    se = math.sqrt((0.03**2 + 0.04**2) / 3)
    assert verdict(stat(0.50, 0.03), stat(0.40, 0.04)) == (HOLDS, pytest.approx(0.10), pytest.approx(se))
    assert verdict(stat(0.45, 0.03), stat(0.40, 0.04))[0] == MEAN_ONLY  # d = 0.05 <= 0.0577
    assert verdict(stat(0.40, 0.03), stat(0.40, 0.04))[0] == NOT_IN_MEAN  # d = 0
    assert verdict(stat(0.35, 0.03), stat(0.40, 0.04))[0] == NOT_IN_MEAN  # d = -0.05
    assert verdict(stat(0.30, 0.03), stat(0.40, 0.04))[0] == REVERSED  # d = -0.10
    # one seed: no std, so se = 0 and any positive difference holds
    assert verdict(stat(0.41, None, 1), stat(0.40, None, 1)) == (HOLDS, pytest.approx(0.01), 0.0)
    assert verdict(None, stat(0.4, 0.1)) == (NOT_MEASURED, None, None)
    assert verdict(stat(None, None, 0), stat(0.4, 0.1)) == (NOT_MEASURED, None, None)


def test_check_claims_reads_the_seed_summary_and_marks_missing_methods():
    summary = {
        "chord_phi": {"final_reward": stat(0.50, 0.01), "entropy": stat(0.9, 0.05)},
        "sft": {"final_reward": stat(0.30, 0.01), "entropy": stat(0.5, 0.05)},
    }
    claims = (
        Claim("c", "chord_phi", "sft", "final_reward"),
        Claim("c", "chord_phi", "sft", "entropy"),
        Claim("i", "iw_sft", "sft", "eval/val"),
    )
    rows = check_claims(summary, claims)
    assert [r["verdict"] for r in rows] == [HOLDS, HOLDS, NOT_MEASURED]
    assert rows[0]["difference"] == pytest.approx(0.2) and rows[0]["better_mean"] == 0.5
    table = claims_table(rows)
    assert table.splitlines()[0] == "c:"
    assert "| `chord_phi` > `sft` | final_reward | 0.500 | 0.300 | 0.200 | 0.016 | holds |" in table
    assert "| `iw_sft` > `sft` | eval/val | - | - | - | - | not measured |" in table


def test_paper_claims_cover_the_three_orderings_of_the_issue():
    pairs = {(c.better, c.worse, c.quantity) for c in PAPER_CLAIMS}
    for chord in ("chord_mu", "chord_phi"):
        for other in ("sft_then_rl", "grpo", "sft"):
            assert (chord, other, "final_reward") in pairs
    assert ("chord_phi", "sft", "eval/retention") in pairs
    assert not any(q == "entropy" for _, _, q in pairs)  # no direction: read against GRPO's
    assert {("iw_sft", "sft", "final_reward"), ("iw_sft_q", "sft", "eval/val")} <= pairs
    # the task's premise, read on chord-compare's row of the untrained policy
    assert ("grpo", "base", "eval/val") in pairs


def test_paper_claims_include_the_baselines_and_hybrids_own_orderings():
    pairs = {(c.better, c.worse, c.quantity) for c in PAPER_CLAIMS}
    assert ("dft", "sft", "eval/val") in pairs
    for hybrid in ("luffy", "hpt", "srft", "relift"):  # on held-out accuracy, as their papers report
        assert {(hybrid, "grpo", "eval/val"), (hybrid, "sft_then_rl", "eval/val")} <= pairs
    assert len(pairs) == len(PAPER_CLAIMS)  # no claim listed twice
