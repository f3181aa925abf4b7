"""The tiny bundled task of the embedded demo: one-operation arithmetic with a verifiable answer.

Problems are "a<op>b=" with operands 0..`max_operand` and `op` from `ops` ("+", "-", "*");
the answer is the plain decimal result ("3+4=" -> "7"). Subtraction only uses a >= b, so
every answer is a run of digits. The prompt is one user turn holding the problem; the expert
response is just the answer. The model of the demo is a ~100k-parameter random transformer
trained for minutes on CPU, so the task is kept short and easy.

Splits (all a pure function of the arguments and `seed`):
- the whole problem space is shuffled; with `val_held_out` (default) the first
  min(`num_val`, len(space) // 2) problems are held out for validation and never appear in
  train or expert rows, so val rows are distinct problems unseen in training whenever the
  space allows; otherwise (space too small, or `val_held_out=False`) val draws from the whole
  space. Val repeats problems only when `num_val` exceeds the problems available to it.
- train (RL prompts) and expert rows cycle through the remaining problems, each cycle in a new
  seeded order, so every problem appears once before any appears twice. Train and expert draw
  from the same problems (the space is small; expert data need not be disjoint from RL prompts).

Files: `train.parquet` and `val.parquet` (verl RL prompts, data_source "chord/tiny_arith",
scored by `chord.rewards.tiny_task`), `expert.parquet` (messages schema).

Usage::

    chord-prepare-tiny --out-dir data/tiny [--num-train 512] [--num-val 32] [--num-expert 256]
                       [--max-operand 9] [--ops +] [--seed 0] [--no-val-held-out]
"""

from __future__ import annotations

import argparse
import operator
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from chord.prepare.formats import expert_row, rl_row, write_expert_parquet, write_rl_parquet

DATA_SOURCE = "chord/tiny_arith"
T = TypeVar("T")
OPS: dict[str, Callable[[int, int], int]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def problem_space(max_operand: int, ops: Iterable[str]) -> list[tuple[str, str]]:
    """All (problem, answer) pairs in a fixed order, e.g. ("3+4=", "7"); answers are never negative."""
    if max_operand < 0:
        raise ValueError(f"max_operand must be >= 0, got {max_operand}")
    ops = list(dict.fromkeys(ops))  # keep order, drop repeats
    if not ops:
        raise ValueError("ops must name at least one operation")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown ops {unknown}; known: {sorted(OPS)}")
    space = []
    for op in ops:
        for a in range(max_operand + 1):
            for b in range(max_operand + 1):
                if op == "-" and a < b:
                    continue
                space.append((f"{a}{op}{b}=", str(OPS[op](a, b))))
    return space


def cycle_items(pool: list[T], n: int, rng: random.Random) -> list[T]:
    """`n` items from `pool`: whole passes in fresh random orders, so repeats come last."""
    out: list[T] = []
    while len(out) < n:
        order = list(pool)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


def _rl_rows(items: list[tuple[str, str]], split: str) -> list[dict[str, Any]]:
    return [
        rl_row(
            data_source=DATA_SOURCE,
            prompt=[{"role": "user", "content": problem}],
            ground_truth=answer,
            ability="arithmetic",
            # the expert response of this prompt: LUFFY adds it to the prompt's GRPO group
            extra_info={"split": split, "index": i, "problem": problem, "expert_response": answer},
        )
        for i, (problem, answer) in enumerate(items)
    ]


def generate_tiny_task(
    out_dir: str | Path,
    *,
    num_train: int = 512,
    num_val: int = 32,
    num_expert: int = 256,
    max_operand: int = 9,
    ops: str | Iterable[str] = "+",
    seed: int = 0,
    val_held_out: bool = True,
) -> dict[str, Path]:
    """Write train/val/expert parquet files to `out_dir`; returns {"train", "val", "expert"} -> path.

    Deterministic for given arguments. See the module docstring for the split rules.
    """
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_expert", num_expert)):
        if n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    space = problem_space(max_operand, ops)
    rng = random.Random(seed)
    shuffled = list(space)
    rng.shuffle(shuffled)
    n_held = min(num_val, len(shuffled) // 2) if val_held_out else 0
    if n_held > 0:
        val_pool, train_pool = shuffled[:n_held], shuffled[n_held:]
    else:
        val_pool, train_pool = shuffled, shuffled
    val = cycle_items(val_pool, num_val, rng)
    train = cycle_items(train_pool, num_train, rng)
    expert = cycle_items(train_pool, num_expert, rng)

    out = Path(out_dir)
    expert_rows = [
        expert_row(
            data_source=DATA_SOURCE,
            messages=[{"role": "user", "content": p}, {"role": "assistant", "content": a}],
        )
        for p, a in expert
    ]
    return {
        "train": write_rl_parquet(_rl_rows(train, "train"), out / "train.parquet"),
        "val": write_rl_parquet(_rl_rows(val, "val"), out / "val.parquet"),
        "expert": write_expert_parquet(expert_rows, out / "expert.parquet"),
    }


def main(argv: list[str] | None = None) -> None:
    """`chord-prepare-tiny` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--num-val", type=int, default=32)
    parser.add_argument("--num-expert", type=int, default=256)
    parser.add_argument("--max-operand", type=int, default=9)
    parser.add_argument("--ops", default="+", help='operations as one string, e.g. "+-*"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-val-held-out", dest="val_held_out", action="store_false")
    args = parser.parse_args(argv)
    try:
        paths = generate_tiny_task(
            args.out_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            num_expert=args.num_expert,
            max_operand=args.max_operand,
            ops=args.ops,
            seed=args.seed,
            val_held_out=args.val_held_out,
        )
    except ValueError as exc:
        parser.exit(1, f"error: {exc}\n")
    n_space = len(problem_space(args.max_operand, args.ops))
    print(f"tiny task: {n_space} distinct problems (ops {args.ops!r}, operands 0..{args.max_operand})")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    main()
