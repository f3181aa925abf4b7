"""ToolACE `data.json` -> single-turn tool-call RL prompts + expert rows (+ an optional eval split).

A dialog gives one sample: its system prompt (ToolACE's instructions with the tools' JSON
schemas embedded), its first user turn, and the assistant's first reply as the ground-truth
call in ToolACE's bracket syntax, e.g. `[Get Weather(city="Paris")]`. Dropped, each counted:
- empty conversation; first turn not from the user; no assistant reply right after it;
- more than one user turn (multi-turn), unless `include_multi_turn` (then the first exchange
  of a multi-turn dialog is used too);
- a first reply that is not a tool call (`chord.rewards.call_syntax.parse_tool_calls` fails,
  e.g. a clarifying question) or an empty call list;
- a duplicate (system, user) prompt (the first is kept).
The usable samples are shuffled (seeded) and split, disjoint: `num_eval` eval rows (a held-out
BFCL-style test set: same format as the RL prompts, `extra_info.split` "test"), then
`num_expert` expert rows, then `num_rl` RL prompts. data_source is "toolace" everywhere, which
`chord.rewards` scores with the exact-call-match reward.

`paired` (`--paired`, for LUFFY, HPT, SRFT and ReLIFT): each RL prompt also carries its
reference call, which scores 1 under the exact-call-match reward, as
`extra_info.expert_response`; the splits stay disjoint as above.

Outputs (in `out_dir`): `train.parquet` (RL prompts: system + user), `expert.parquet`
(messages: system, user, assistant call), `eval.parquet` (only if `num_eval` > 0). The tools
are not repeated in a `tools` column: they are already in the system prompt.

Usage::

    chord-prepare-toolace --source Team-ACE/ToolACE --out-dir data/toolace \\
        [--num-rl 5000] [--num-expert 500] [--num-eval 0] [--seed 0] [--include-multi-turn] \\
        [--allow-fewer] [--paired]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from chord.prepare.counts import DropCounts, PrepareResult, check_enough
from chord.prepare.formats import expert_row, rl_row, write_expert_parquet, write_rl_parquet
from chord.prepare.load import load_source, require_columns
from chord.rewards.call_syntax import ToolCallParseError, parse_tool_calls

DATA_SOURCE = "toolace"
REQUIRED_COLUMNS = ("system", "conversations")


def _check_turns(conversations: Any, source: str, row: int) -> list[dict[str, str]]:
    if not isinstance(conversations, list):
        raise ValueError(f"{source}: row {row}, column 'conversations': expected a list")
    for t, turn in enumerate(conversations):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("from"), str)
            or not isinstance(turn.get("value"), str)
        ):
            raise ValueError(
                f"{source}: row {row}, column 'conversations', turn {t}: expected {{from: str, value: str}}"
            )
    return conversations


def _sample(record: dict, source: str, row: int, include_multi_turn: bool, counts: DropCounts) -> dict | None:
    """(system, user, call, num_calls) of one dialog, or None (counted) if it gives no sample."""
    system = record["system"]
    if not isinstance(system, str):
        raise ValueError(f"{source}: row {row}, column 'system': expected a string")
    turns = _check_turns(record["conversations"], source, row)
    if not turns:
        counts.drop("empty_conversation")
        return None
    if turns[0]["from"] != "user":
        counts.drop("first_turn_not_user")
        return None
    if not include_multi_turn and sum(t["from"] == "user" for t in turns) > 1:
        counts.drop("multi_turn")
        return None
    if len(turns) < 2 or turns[1]["from"] != "assistant":
        counts.drop("no_assistant_reply")
        return None
    call = turns[1]["value"].strip()
    try:
        calls = parse_tool_calls(call)
    except ToolCallParseError:
        counts.drop("reply_not_tool_call")
        return None
    if not calls:
        counts.drop("reply_empty_call_list")
        return None
    return {"system": system, "user": turns[0]["value"], "call": call, "num_calls": len(calls), "row": row}


def _prompt(s: dict) -> list[dict[str, str]]:
    return [{"role": "system", "content": s["system"]}, {"role": "user", "content": s["user"]}]


def _rl_rows(samples: list[dict], split: str, paired: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i, s in enumerate(samples):
        extra_info = {"split": split, "index": i, "num_calls": s["num_calls"], "source_row": s["row"]}
        if paired:
            extra_info["expert_response"] = s["call"]
        rows.append(
            rl_row(
                data_source=DATA_SOURCE,
                prompt=_prompt(s),
                ground_truth=s["call"],
                ability="tool_use",
                extra_info=extra_info,
            )
        )
    return rows


def prepare_toolace(
    source: str,
    out_dir: str | Path,
    *,
    config: str | None = None,
    split: str = "train",
    num_rl: int = 5000,
    num_expert: int = 500,
    num_eval: int = 0,
    seed: int = 0,
    include_multi_turn: bool = False,
    allow_fewer: bool = False,
    paired: bool = False,
) -> PrepareResult:
    """Write `train.parquet`, `expert.parquet` and (if `num_eval`) `eval.parquet` to `out_dir`.

    See the module docstring for the rules. Returns the paths and the counts (also printed).
    """
    if min(num_rl, num_expert, num_eval) < 0:
        raise ValueError("num_rl, num_expert and num_eval must be >= 0")
    dataset = load_source(source, config=config, split=split)
    require_columns(dataset, REQUIRED_COLUMNS, source)
    counts = DropCounts(f"ToolACE preparation of {source}")
    seen: set[tuple[str, str]] = set()
    samples: list[dict] = []
    for i, record in enumerate(dataset.select_columns(list(REQUIRED_COLUMNS))):
        s = _sample(record, source, i, include_multi_turn, counts)
        if s is None:
            continue
        key = (s["system"], s["user"].strip())
        if key in seen:
            counts.drop("duplicate_prompt")
            continue
        seen.add(key)
        samples.append(s)
    counts.total("dialogs_read", len(dataset))
    counts.total("usable_samples", len(samples))
    hint = "" if include_multi_turn else "--include-multi-turn also uses multi-turn dialogs' first call"
    check_enough(
        "single-turn tool-call samples",
        len(samples),
        num_rl + num_expert + num_eval,
        allow_fewer=allow_fewer,
        hint=hint,
    )

    random.Random(seed).shuffle(samples)
    eval_samples = samples[:num_eval]
    expert_samples = samples[num_eval : num_eval + num_expert]
    rl_samples = samples[num_eval + num_expert : num_eval + num_expert + num_rl]

    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if rl_samples:
        paths["rl"] = write_rl_parquet(_rl_rows(rl_samples, "train", paired), out / "train.parquet")
    if expert_samples:
        rows = [
            expert_row(
                data_source=DATA_SOURCE, messages=[*_prompt(s), {"role": "assistant", "content": s["call"]}]
            )
            for s in expert_samples
        ]
        paths["expert"] = write_expert_parquet(rows, out / "expert.parquet")
    if eval_samples:
        paths["eval"] = write_rl_parquet(_rl_rows(eval_samples, "test"), out / "eval.parquet")
    counts.total("rl_written", len(rl_samples))
    counts.total("expert_written", len(expert_samples))
    counts.total("eval_written", len(eval_samples))
    counts.total("usable_unused", max(0, len(samples) - num_eval - num_expert - num_rl))
    counts.print()
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return PrepareResult(paths=paths, counts=counts.as_dict())


def main(argv: list[str] | None = None) -> None:
    """`chord-prepare-toolace` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="Team-ACE/ToolACE", help="data.json, a folder, or a hub name")
    parser.add_argument("--config", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--num-rl", type=int, default=5000)
    parser.add_argument("--num-expert", type=int, default=500)
    parser.add_argument("--num-eval", type=int, default=0, help="held-out BFCL-style eval rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-multi-turn", action="store_true")
    parser.add_argument("--allow-fewer", action="store_true", help="write what qualifies if too few")
    parser.add_argument("--paired", action="store_true", help="keep the reference call with each RL prompt")
    args = parser.parse_args(argv)
    try:
        prepare_toolace(
            args.source,
            args.out_dir,
            config=args.config,
            split=args.split,
            num_rl=args.num_rl,
            num_expert=args.num_expert,
            num_eval=args.num_eval,
            seed=args.seed,
            include_multi_turn=args.include_multi_turn,
            allow_fewer=args.allow_fewer,
            paired=args.paired,
        )
    except (ValueError, FileNotFoundError) as exc:  # data problems: a message, not a traceback
        parser.exit(1, f"error: {exc}\n")


if __name__ == "__main__":
    main()
