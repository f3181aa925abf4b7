"""The shifted-expert task family: a CPU-scale task where SFT, RL and their mixtures differ.

The bundled tiny task (`chord.prepare.tiny_task`) starts from a random model that never earns
a reward, so only imitation learns there. This family has the three properties of the papers'
regime (arXiv 2508.11408, 2507.12856), at tiny scale:

1. **Partial competence**: the RL task is addition "a+b=" (operands 0..`max_operand`); the base
   policy is the tiny model pre-trained briefly on answer-only addition (`pretrain.parquet`,
   see `chord.prepare.base_policy`) until its sampled reward is in a target band (e.g. 0.3),
   so GRPO alone has something to improve. With `hedge_rows` > 0 the pre-training data also
   hold, for every addition problem, that many *hedged* answers, "19, not 20" (a near miss
   after the answer; `quality` 0.0, clean rows 1.0), so the base policy hedges on about
   `hedge_rows / (hedge_rows + 1)` of its answers whatever the problem. The reward reads the
   last integer, so a hedged answer scores 0: a habit shared by every problem, which RL can
   remove and which then lifts held-out problems too. Without it the base policy's errors are
   per-problem arithmetic slips of a model that memorises each fact: GRPO at a few hundred
   optimizer steps neither fixes them nor generalises (measured: README, paper-shaped
   benchmark).
2. **Expert data from another policy/style**: demonstrations use a worked form, "12+7=19"
   where the base policy writes "19". The reward (`chord.rewards.shift_task`) scores the
   last integer, so both styles are correct, but imitating the expert shifts the policy's
   format. A share `low_quality_fraction` of the demonstrations has a wrong answer (off by
   1-2) and `quality` 0.0 (correct ones 1.0): where iw-SFT(Q) should differ from SFT.
3. **A second skill and a held-out split**: subtraction "a-b=" (a >= b) is in the
   pre-training data and never in RL or expert data (`retention.parquet`, data_source
   "chord/shift_sub": forgetting shows there); `num_held_out` addition problems never appear
   in RL or expert rows (`val.parquet`, data_source "chord/shift_add": generalisation).
   Pre-training sees every problem of both skills: "held out" means not trained by RL or SFT
   here, not unseen by the base policy.

Files: `train.parquet` (RL prompts; `extra_info.expert_response` = the correct worked form,
for LUFFY and the paired hybrids), `val.parquet`, `retention.parquet`, `expert.parquet`
(messages + quality), `pretrain.parquet` (messages, answer-only style, both skills, plus the
hedged addition answers; `quality` 1.0 / 0.0 marks which rows the base policy's expected
reward is measured on).

Usage::

    chord-prepare-shift --out-dir data/shift [--max-operand 14] [--num-held-out 45]
                        [--num-train 2048] [--num-expert 1024] [--low-quality-fraction 0.25]
                        [--hedge-rows 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from chord.prepare.formats import expert_row, rl_row, write_expert_parquet, write_rl_parquet
from chord.prepare.tiny_task import cycle_items

TASK_SOURCE = "chord/shift_add"
SKILL_SOURCE = "chord/shift_sub"
WRONG_OFFSETS = (-2, -1, 1, 2)


def addition_problems(max_operand: int) -> list[tuple[int, int]]:
    """Every (a, b) with 0 <= a, b <= max_operand, in a fixed order."""
    if max_operand < 1:
        raise ValueError(f"max_operand must be >= 1, got {max_operand}")
    return [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]


def subtraction_problems(max_operand: int) -> list[tuple[int, int]]:
    """Every (a, b) with max_operand >= a >= b >= 0 (answers are never negative)."""
    return [(a, b) for a in range(max_operand + 1) for b in range(a + 1)]


def worked_form(a: int, b: int, answer: int) -> str:
    """The expert's style: the equation restated with its answer, e.g. "12+7=19"."""
    return f"{a}+{b}={answer}"


def wrong_answer(answer: int, rng: random.Random) -> int:
    """A near miss: `answer` off by 1 or 2, never negative."""
    choices = [answer + d for d in WRONG_OFFSETS if answer + d >= 0]
    return rng.choice(choices)


def hedged_form(answer: int, rng: random.Random) -> str:
    """The base policy's flawed habit: the answer, then a near miss, e.g. "19, not 20" (scores 0)."""
    return f"{answer}, not {wrong_answer(answer, rng)}"


def _pretrain_rows(
    add: list[tuple[int, int]], sub: list[tuple[int, int]], hedge_rows: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Every problem of both skills answer-only (quality 1.0), then `hedge_rows` hedged answers
    per addition problem (quality 0.0)."""

    def row(source: str, problem: str, answer: str, quality: float) -> dict[str, Any]:
        messages = [{"role": "user", "content": problem}, {"role": "assistant", "content": answer}]
        return expert_row(data_source=source, messages=messages, quality=quality)

    rows = [
        row(source, f"{a}{op}{b}=", str(a + b if op == "+" else a - b), 1.0)
        for source, op, items in ((TASK_SOURCE, "+", add), (SKILL_SOURCE, "-", sub))
        for a, b in items
    ]
    for _ in range(hedge_rows):
        rows += [row(TASK_SOURCE, f"{a}+{b}=", hedged_form(a + b, rng), 0.0) for a, b in add]
    return rows


def _rl_rows(items: list[tuple[int, int]], op: str, source: str, split: str) -> list[dict[str, Any]]:
    rows = []
    for i, (a, b) in enumerate(items):
        answer = a + b if op == "+" else a - b
        extra = {"split": split, "index": i, "problem": f"{a}{op}{b}="}
        if op == "+":
            extra["expert_response"] = worked_form(a, b, answer)
        rows.append(
            rl_row(
                data_source=source,
                prompt=[{"role": "user", "content": f"{a}{op}{b}="}],
                ground_truth=str(answer),
                ability="arithmetic",
                extra_info=extra,
            )
        )
    return rows


def generate_shift_task(
    out_dir: str | Path,
    *,
    max_operand: int = 14,
    num_held_out: int = 45,
    num_train: int = 2048,
    num_expert: int = 1024,
    low_quality_fraction: float = 0.25,
    hedge_rows: int = 0,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the five parquet files (see the module docstring); returns name -> path. Deterministic."""
    for name, n in (("num_train", num_train), ("num_expert", num_expert), ("num_held_out", num_held_out)):
        if n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    if not 0.0 <= low_quality_fraction < 1.0:
        raise ValueError(f"low_quality_fraction must be in [0, 1), got {low_quality_fraction}")
    if hedge_rows < 0:
        raise ValueError(f"hedge_rows must be >= 0, got {hedge_rows}")
    add = addition_problems(max_operand)
    if num_held_out > len(add) // 2:
        raise ValueError(f"num_held_out={num_held_out} leaves too few training problems (of {len(add)})")
    sub = subtraction_problems(max_operand)
    rng = random.Random(seed)
    shuffled = list(add)
    rng.shuffle(shuffled)
    held_out, train_pool = sorted(shuffled[:num_held_out]), shuffled[num_held_out:]
    train = cycle_items(train_pool, num_train, rng)
    expert_items = cycle_items(train_pool, num_expert, rng)
    n_bad = round(low_quality_fraction * num_expert)
    bad = set(rng.sample(range(num_expert), n_bad))

    expert_rows = []
    for i, (a, b) in enumerate(expert_items):
        answer = wrong_answer(a + b, rng) if i in bad else a + b
        expert_rows.append(
            expert_row(
                data_source=TASK_SOURCE,
                messages=[
                    {"role": "user", "content": f"{a}+{b}="},
                    {"role": "assistant", "content": worked_form(a, b, answer)},
                ],
                quality=0.0 if i in bad else 1.0,
            )
        )
    pretrain_rows = _pretrain_rows(add, sub, hedge_rows, rng)
    out = Path(out_dir)
    return {
        "train": write_rl_parquet(_rl_rows(train, "+", TASK_SOURCE, "train"), out / "train.parquet"),
        "val": write_rl_parquet(_rl_rows(held_out, "+", TASK_SOURCE, "held_out"), out / "val.parquet"),
        "retention": write_rl_parquet(
            _rl_rows(sub, "-", SKILL_SOURCE, "retention"), out / "retention.parquet"
        ),
        "expert": write_expert_parquet(expert_rows, out / "expert.parquet"),
        "pretrain": write_expert_parquet(pretrain_rows, out / "pretrain.parquet"),
    }


def main(argv: list[str] | None = None) -> None:
    """`chord-prepare-shift` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--max-operand", type=int, default=14)
    parser.add_argument("--num-held-out", type=int, default=45)
    parser.add_argument("--num-train", type=int, default=2048)
    parser.add_argument("--num-expert", type=int, default=1024)
    parser.add_argument("--low-quality-fraction", type=float, default=0.25)
    parser.add_argument("--hedge-rows", type=int, default=0, help="hedged answers per addition problem")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        paths = generate_shift_task(
            args.out_dir,
            max_operand=args.max_operand,
            num_held_out=args.num_held_out,
            num_train=args.num_train,
            num_expert=args.num_expert,
            low_quality_fraction=args.low_quality_fraction,
            hedge_rows=args.hedge_rows,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.exit(1, f"error: {exc}\n")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    main()
