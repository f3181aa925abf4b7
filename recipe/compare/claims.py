"""The papers' orderings, checked against a multi-seed `chord-compare` report (`compare.json`).

Each claim is "method A above method B on a quantity" (CHORD, arXiv 2508.11408; iw-SFT, arXiv
2507.12856; the baselines' and hybrids' own papers, see PAPER_CLAIMS). For a pair, with means
``m_A``, ``m_B``, sample standard deviations ``s_A``, ``s_B`` over ``n_A``, ``n_B`` seeds::

    d  = m_A - m_B
    se = sqrt(s_A^2 / n_A + s_B^2 / n_B)

and the verdict is ``holds`` (``d > 2 se``), ``holds in the mean only`` (``0 < d <= 2 se``),
``not in the mean`` (``-2 se <= d <= 0``) or ``reversed`` (``d < -2 se``). With 3 seeds the
2-se rule is a rough screen, not a test: it says whether the seeds' spread could hide the
difference. A pair with a method or quantity missing from the report is ``not measured``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    """`better` above `worse` on `quantity` (a `seed_summary` key), as `source` claims."""

    source: str
    better: str
    worse: str
    quantity: str


# The papers' orderings the benchmark can see (README, "A paper-shaped benchmark"), after the
# task's own premise: RL alone improves the starting policy (`base`, chord-compare's row of the
# untrained model), without which the RL-side claims have nothing to show.
PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("The task: GRPO alone improves the starting policy", "grpo", "base", "eval/val"),
    *(
        Claim("CHORD: the mixture above SFT-then-RL and above either alone", chord, other, "final_reward")
        for chord in ("chord_mu", "chord_phi")
        for other in ("sft_then_rl", "grpo", "sft")
    ),
    # "keeps entropy" has no direction (SFT can sharpen or flatten the policy): read the
    # entropy column against GRPO's in the report instead of an ordering here.
    Claim(
        "CHORD: phi-weighting keeps general skills better than plain SFT",
        "chord_phi",
        "sft",
        "eval/retention",
    ),
    *(
        Claim("iw-SFT: above SFT when demonstrations vary in quality", iw, "sft", q)
        for iw in ("iw_sft", "iw_sft_q")
        for q in ("final_reward", "eval/val")
    ),
    # The baselines' and hybrids' own headline comparisons (their abstracts), on held-out
    # accuracy as their benchmark tables report it: DFT (arXiv 2508.05629) above SFT; LUFFY
    # (2504.14945), HPT (2509.04419), SRFT (2506.19767) and ReLIFT (2506.07527) above RL alone
    # and above SFT followed by RL.
    Claim("DFT: above SFT", "dft", "sft", "eval/val"),
    *(
        Claim(f"{label}: above RL alone and SFT-then-RL", method, other, "eval/val")
        for method, label in (("luffy", "LUFFY"), ("hpt", "HPT"), ("srft", "SRFT"), ("relift", "ReLIFT"))
        for other in ("grpo", "sft_then_rl")
    ),
)

HOLDS, MEAN_ONLY, NOT_IN_MEAN, REVERSED, NOT_MEASURED = (
    "holds",
    "holds in the mean only",
    "not in the mean",
    "reversed",
    "not measured",
)


def verdict(
    better: dict[str, Any] | None, worse: dict[str, Any] | None
) -> tuple[str, float | None, float | None]:
    """(verdict, d, se) for two `seed_stat` entries (module docstring)."""
    if not better or not worse or better.get("mean") is None or worse.get("mean") is None:
        return NOT_MEASURED, None, None
    d = float(better["mean"]) - float(worse["mean"])
    var = 0.0
    for stat in (better, worse):
        if stat.get("std") is not None and stat.get("n", 0) > 0:
            var += float(stat["std"]) ** 2 / int(stat["n"])
    se = math.sqrt(var)
    if d > 2 * se:
        return HOLDS, d, se
    if d > 0:
        return MEAN_ONLY, d, se
    if d >= -2 * se:
        return NOT_IN_MEAN, d, se
    return REVERSED, d, se


def check_claims(summary: dict[str, dict[str, Any]], claims: tuple[Claim, ...] = PAPER_CLAIMS) -> list[dict]:
    """One row per claim: the claim, both means and their difference, se and the verdict."""
    rows = []
    for claim in claims:
        a = summary.get(claim.better, {}).get(claim.quantity)
        b = summary.get(claim.worse, {}).get(claim.quantity)
        result, d, se = verdict(a, b)
        rows.append(
            {
                "source": claim.source,
                "better": claim.better,
                "worse": claim.worse,
                "quantity": claim.quantity,
                "better_mean": None if not a else a.get("mean"),
                "worse_mean": None if not b else b.get("mean"),
                "difference": d,
                "se": se,
                "verdict": result,
            }
        )
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def claims_table(rows: list[dict]) -> str:
    """Markdown: per source, a line naming the claim, then a table with one line per pair."""
    out = []
    for source in dict.fromkeys(row["source"] for row in rows):
        out += [
            f"{source}:",
            "",
            "| A > B | quantity | A | B | A - B | 2 se | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r["source"] == source):
            two_se = None if row["se"] is None else 2 * row["se"]
            out.append(
                f"| `{row['better']}` > `{row['worse']}` | {row['quantity']} | {_num(row['better_mean'])} | "
                f"{_num(row['worse_mean'])} | {_num(row['difference'])} | {_num(two_se)} | {row['verdict']} |"
            )
        out.append("")
    return "\n".join(out)
