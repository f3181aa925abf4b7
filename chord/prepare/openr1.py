"""OpenR1-Math-220k -> expert parquet (SFT traces) + disjoint RL prompt parquet, as in CHORD.

Problems (rows) are first filtered, then put in one seeded random order:
- dropped: empty problem, problem text in a non-English script (CJK, kana, Hangul, full-width
  forms, Cyrillic; `text_filters.has_non_english_script`), duplicate problem text (the first
  occurrence is kept).
- expert: walking the order, a problem gives one generation that is math-verify-correct
  (`correctness_math_verify`), not cut off (`finish_reasons` != "length"), free of non-English
  script and at most `max_tokens` tokens long (counted with `--tokenizer`; without one,
  `token_count.estimate_tokens`); among several such generations one is picked at random
  (seeded). The first `num_expert` problems that have one are taken. Generations are read and
  tokenised only for the problems walked, so generation-level drop counts cover those problems.
- RL: walking the same order, problems not taken as expert whose `answer` is an integer
  (`text_filters.integer_answer`) and that have at least 2 generations; the first `num_rl`.
  The RL drop counts cover the problems not taken as expert.
Both user turns are `math_user_turn(problem)`: the instruction the traces were generated
with, a newline, the problem. RL ground truth is the canonical integer string.

`paired` (`--paired`, for LUFFY, HPT, SRFT and ReLIFT): each RL prompt also keeps one of its
own usable generations (the expert rule above) as `extra_info.expert_response`; RL problems
without one are dropped (`rl_paired_without_usable_generation`), and in this mode the RL
eligibility counts cover the problems walked until `num_rl` were found. The expert file and
the disjointness of the two sets stay as in the default (CHORD's) split.

Fewer qualifying problems than asked raise InsufficientDataError, unless `allow_fewer`
(writes what exists, with a warning). Counts of everything dropped are printed and returned.

Usage::

    chord-prepare-openr1 --source open-r1/OpenR1-Math-220k --out-dir data/openr1 \\
        [--config default] [--split train] [--num-expert 5000] [--num-rl 20000] [--seed 0] \\
        [--tokenizer PATH] [--max-tokens 8192] [--allow-fewer] [--paired]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chord.prepare.counts import DropCounts, PrepareResult, check_enough
from chord.prepare.formats import expert_row, rl_row, write_expert_parquet, write_rl_parquet
from chord.prepare.load import load_source, require_columns
from chord.prepare.text_filters import has_non_english_script, integer_answer
from chord.prepare.token_count import make_token_counter

DATA_SOURCE = "openr1"
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
REQUIRED_COLUMNS = ("problem", "answer", "generations", "correctness_math_verify")
_LIGHT_COLUMNS = ("problem", "answer", "correctness_math_verify", "finish_reasons", "uuid", "source")


def math_user_turn(problem: str) -> str:
    """The user message for a math problem: the OpenR1 generation instruction, newline, problem."""
    return f"{MATH_INSTRUCTION}\n{problem.strip()}"


@dataclass
class _Problem:
    row: int
    problem: str
    answer: str
    correct: list[int]  # indices of math-verify-correct generations
    num_generations: int
    finish_reasons: list[Any]
    uuid: str
    source: str


def _as_list(value: Any, source: str, row: int, column: str, *, nullable: bool = False) -> list:
    if value is None and nullable:
        return []
    if not isinstance(value, list):
        raise ValueError(
            f"{source}: row {row}, column '{column}': expected a list, got {type(value).__name__}"
        )
    return value


def _scan_problems(dataset: Any, source: str, counts: DropCounts) -> list[_Problem]:
    """Pass over the light columns: checked, filtered, de-duplicated problems in file order."""
    columns = [c for c in _LIGHT_COLUMNS if c in dataset.column_names]
    seen: set[str] = set()
    problems: list[_Problem] = []
    for i, row in enumerate(dataset.select_columns(columns)):
        problem, answer = row["problem"], row["answer"]
        if not isinstance(problem, str) or not isinstance(answer, (str, type(None))):
            raise ValueError(f"{source}: row {i}, column 'problem'/'answer': expected strings")
        if not problem.strip():
            counts.drop("problem_empty")
            continue
        if has_non_english_script(problem):
            counts.drop("problem_non_english")
            continue
        key = " ".join(problem.split())
        if key in seen:
            counts.drop("problem_duplicate")
            continue
        seen.add(key)
        correctness = _as_list(row["correctness_math_verify"], source, i, "correctness_math_verify")
        problems.append(
            _Problem(
                row=i,
                problem=problem,
                answer=answer or "",
                correct=[g for g, ok in enumerate(correctness) if ok is True],
                num_generations=len(correctness),
                finish_reasons=_as_list(
                    row.get("finish_reasons"), source, i, "finish_reasons", nullable=True
                ),
                uuid=str(row.get("uuid") or ""),
                source=str(row.get("source") or ""),
            )
        )
    counts.total("problems_read", len(dataset))
    counts.total("problems_after_filters", len(problems))
    counts.total("problems_with_a_correct_generation", sum(1 for p in problems if p.correct))
    return problems


def _pick_generation(
    p: _Problem,
    dataset: Any,
    source: str,
    rng: random.Random,
    count_tokens: Any,
    max_tokens: int,
    counts: DropCounts,
) -> str | None:
    """One usable generation of problem `p` (random among the usable ones), or None."""
    generations = _as_list(dataset[p.row]["generations"], source, p.row, "generations")
    if len(generations) != p.num_generations:
        raise ValueError(
            f"{source}: row {p.row}, column 'generations': {len(generations)} generations but "
            f"{p.num_generations} correctness_math_verify values"
        )
    counts.drop("generation_incorrect", p.num_generations - len(p.correct))
    order = list(p.correct)
    rng.shuffle(order)
    for g in order:
        text = generations[g]
        if not isinstance(text, str) or not text.strip():
            counts.drop("generation_empty")
            continue
        if g < len(p.finish_reasons) and p.finish_reasons[g] == "length":
            counts.drop("generation_cut_off")
            continue
        if has_non_english_script(text):
            counts.drop("generation_non_english")
            continue
        if count_tokens(text) > max_tokens:
            counts.drop("generation_over_token_limit")
            continue
        return text
    return None


def prepare_openr1(
    source: str,
    out_dir: str | Path,
    *,
    config: str | None = None,
    split: str = "train",
    num_expert: int = 5000,
    num_rl: int = 20000,
    seed: int = 0,
    tokenizer: str | None = None,
    max_tokens: int = 8192,
    allow_fewer: bool = False,
    expert_name: str = "expert.parquet",
    rl_name: str = "train.parquet",
    paired: bool = False,
) -> PrepareResult:
    """Write `out_dir/expert_name` (messages schema) and `out_dir/rl_name` (verl RL prompts).

    See the module docstring for the selection rules. Returns the paths and the counts.
    """
    if num_expert < 0 or num_rl < 0:
        raise ValueError("num_expert and num_rl must be >= 0")
    dataset = load_source(source, config=config, split=split)
    require_columns(dataset, REQUIRED_COLUMNS, source)
    counts = DropCounts(f"OpenR1 preparation of {source}")
    problems = _scan_problems(dataset, source, counts)
    count_tokens, counter_name = make_token_counter(tokenizer)

    rng = random.Random(seed)
    order = list(range(len(problems)))
    rng.shuffle(order)

    expert_rows: list[dict[str, Any]] = []
    taken: set[int] = set()
    walked = 0
    for k in order:
        if len(expert_rows) >= num_expert:
            break
        p = problems[k]
        if not p.correct:
            continue
        walked += 1
        text = _pick_generation(p, dataset, source, rng, count_tokens, max_tokens, counts)
        if text is None:
            counts.drop("expert_problem_without_usable_generation")
            continue
        taken.add(k)
        messages = [
            {"role": "user", "content": math_user_turn(p.problem)},
            {"role": "assistant", "content": text},
        ]
        expert_rows.append(expert_row(data_source=DATA_SOURCE, messages=messages))
    counts.total("expert_problems_examined", walked)
    check_enough("expert problems", len(expert_rows), num_expert, allow_fewer=allow_fewer)

    rl_rows: list[dict[str, Any]] = []
    rl_eligible = 0
    for k in order:
        if k in taken:
            continue
        p = problems[k]
        answer = integer_answer(p.answer)
        if answer is None:
            counts.drop("rl_non_integer_answer")
            continue
        if p.num_generations < 2:
            counts.drop("rl_fewer_than_2_generations")
            continue
        extra_info = {"uuid": p.uuid, "problem_source": p.source, "source_row": p.row}
        if paired:  # the prompt's own verified-correct generation is its demonstration
            if len(rl_rows) >= num_rl:
                break  # reading generations is what costs: stop once enough were found
            text = (
                _pick_generation(p, dataset, source, rng, count_tokens, max_tokens, counts)
                if p.correct
                else None
            )
            if text is None:
                counts.drop("rl_paired_without_usable_generation")
                continue
            extra_info["expert_response"] = text
        rl_eligible += 1
        if len(rl_rows) >= num_rl:
            continue  # eligible but not needed
        rl_rows.append(
            rl_row(
                data_source=DATA_SOURCE,
                prompt=[{"role": "user", "content": math_user_turn(p.problem)}],
                ground_truth=answer,
                ability="math",
                extra_info={"split": "train", "index": len(rl_rows), **extra_info},
            )
        )
    counts.total("rl_eligible_problems", rl_eligible)
    check_enough(
        "RL problems (integer answer, >= 2 generations, not expert)",
        len(rl_rows),
        num_rl,
        allow_fewer=allow_fewer,
    )

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if expert_rows:
        paths["expert"] = write_expert_parquet(expert_rows, out / expert_name)
    if rl_rows:
        paths["rl"] = write_rl_parquet(rl_rows, out / rl_name)
    counts.total("expert_written", len(expert_rows))
    counts.total("rl_written", len(rl_rows))
    counts.print()
    print(f"token counts: {counter_name}, limit {max_tokens}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return PrepareResult(paths=paths, counts=counts.as_dict())


def main(argv: list[str] | None = None) -> None:
    """`chord-prepare-openr1` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="open-r1/OpenR1-Math-220k", help="local file/folder or hub name")
    parser.add_argument("--config", default=None, help="dataset config (hub or folder), e.g. default")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--num-expert", type=int, default=5000)
    parser.add_argument("--num-rl", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=None, help="tokenizer path/name for the token limit")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--allow-fewer", action="store_true", help="write what qualifies if too few")
    parser.add_argument("--expert-name", default="expert.parquet")
    parser.add_argument("--rl-name", default="train.parquet")
    parser.add_argument(
        "--paired", action="store_true", help="keep a verified-correct generation with each RL prompt"
    )
    args = parser.parse_args(argv)
    try:
        prepare_openr1(
            args.source,
            args.out_dir,
            config=args.config,
            split=args.split,
            num_expert=args.num_expert,
            num_rl=args.num_rl,
            seed=args.seed,
            tokenizer=args.tokenizer,
            max_tokens=args.max_tokens,
            allow_fewer=args.allow_fewer,
            expert_name=args.expert_name,
            rl_name=args.rl_name,
            paired=args.paired,
        )
    except (ValueError, FileNotFoundError) as exc:  # data problems: a message, not a traceback
        parser.exit(1, f"error: {exc}\n")


if __name__ == "__main__":
    main()
