"""Benchmark files for `chord-eval`: parquet in verl's RL prompt format, one file per benchmark.

Each row needs `data_source` (str), `prompt` (a non-empty list of {role, content} messages) and
`reward_model` (a struct with `ground_truth`); `extra_info` (a struct) is optional. The benchmark
is named after the file stem (`aime24.parquet` -> "aime24").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_COLUMNS = ("data_source", "prompt", "reward_model")


@dataclass(frozen=True)
class EvalProblem:
    """One prompt of a benchmark; `row` is its 0-based row in the file."""

    row: int
    data_source: str
    messages: list[dict[str, str]]
    ground_truth: Any
    extra_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: Path
    problems: list[EvalProblem]


def _bad(path: Path, row: int, column: str, why: str) -> ValueError:
    return ValueError(f"{path}: row {row}, column '{column}': {why}")


def _parse_messages(path: Path, row: int, prompt: Any) -> list[dict[str, str]]:
    if not isinstance(prompt, list) or len(prompt) == 0:
        raise _bad(path, row, "prompt", f"expected a non-empty list of messages, got {prompt!r:.80}")
    messages = []
    for j, message in enumerate(prompt):
        if not isinstance(message, dict):
            raise _bad(path, row, "prompt", f"message {j} is not a {{role, content}} struct")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise _bad(path, row, "prompt", f"message {j} needs string 'role' and 'content'")
        messages.append({"role": role, "content": content})
    return messages


def load_benchmark(path: str | Path, max_problems: int | None = None) -> Benchmark:
    """Read and validate one benchmark parquet file (the first `max_problems` rows if given).

    Raises FileNotFoundError for a missing file and ValueError naming the file, row and column
    for a malformed one.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    table = pq.read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {table.column_names}")
    if max_problems is not None:
        table = table.slice(0, max_problems)
    if table.num_rows == 0:
        raise ValueError(f"{path}: no rows")
    columns = [*REQUIRED_COLUMNS, *(["extra_info"] if "extra_info" in table.column_names else [])]
    problems = []
    for row, record in enumerate(table.select(columns).to_pylist()):
        data_source = record["data_source"]
        if not isinstance(data_source, str) or not data_source:
            raise _bad(path, row, "data_source", f"expected a non-empty string, got {data_source!r}")
        reward_model = record["reward_model"]
        if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
            raise _bad(path, row, "reward_model", "expected a struct with a non-null 'ground_truth'")
        extra_info = record.get("extra_info") or {}
        if not isinstance(extra_info, dict):
            raise _bad(path, row, "extra_info", f"expected a struct, got {type(extra_info).__name__}")
        problems.append(
            EvalProblem(
                row=row,
                data_source=data_source,
                messages=_parse_messages(path, row, record["prompt"]),
                ground_truth=reward_model["ground_truth"],
                extra_info=extra_info,
            )
        )
    return Benchmark(name=path.stem, path=path, problems=problems)
