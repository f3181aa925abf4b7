"""The two output formats of data preparation, built row by row and written as parquet.

- RL prompts, as verl's `RLHFDataset` reads them: `data_source` (str, selects the reward in
  `chord.rewards`), `prompt` (list of {role, content}), `ability` (str), `reward_model`
  ({style: "rule", ground_truth: str}), `extra_info` (dict: split, index, ...; the same keys in
  every row of a file, since parquet stores it as one struct type).
- Expert demonstrations in the `messages` schema of `chord.data.schema`: `messages` (list of
  {role, content}; the last one is the assistant answer the SFT loss is taken on),
  `data_source` (str), and optionally `tools` (JSON string) and `quality` (float >= 0).

Rows are written with explicit arrow types (`messages` is always
list<struct<role: string, content: string>>) in row groups of `row_group_size` rows, so the
expert buffer can shuffle at row-group granularity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)
REWARD_MODEL_TYPE = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
DEFAULT_ROW_GROUP_SIZE = 1024


def _message(role: str, content: str) -> dict[str, str]:
    if not isinstance(role, str) or not isinstance(content, str):
        raise TypeError(f"a message needs string role and content, got {role!r}, {type(content).__name__}")
    return {"role": role, "content": content}


def rl_row(
    *,
    data_source: str,
    prompt: Sequence[dict[str, str]],
    ground_truth: str,
    ability: str,
    extra_info: dict[str, Any],
) -> dict[str, Any]:
    """One verl RL prompt row; `extra_info` must contain "split" and "index"."""
    missing = {"split", "index"} - set(extra_info)
    if missing:
        raise ValueError(f"extra_info needs keys {sorted(missing)}")
    if not isinstance(ground_truth, str) or not ground_truth:
        raise ValueError(f"ground_truth must be a non-empty string, got {ground_truth!r}")
    return {
        "data_source": data_source,
        "prompt": [_message(m["role"], m["content"]) for m in prompt],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": dict(extra_info),
    }


def expert_row(
    *,
    data_source: str,
    messages: Sequence[dict[str, str]],
    tools: str | None = None,
    quality: float | None = None,
) -> dict[str, Any]:
    """One expert row; the last message must be the assistant answer."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("expert messages must end with an assistant message")
    if quality is not None and (not math.isfinite(quality) or quality < 0):
        raise ValueError(f"quality must be a finite number >= 0, got {quality!r}")
    row: dict[str, Any] = {
        "messages": [_message(m["role"], m["content"]) for m in messages],
        "data_source": data_source,
    }
    if tools is not None:
        row["tools"] = tools
    if quality is not None:
        row["quality"] = float(quality)
    return row


def _write(table: pa.Table, path: str | Path, row_group_size: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, row_group_size=max(1, row_group_size))
    return out


def write_rl_parquet(
    rows: Sequence[dict[str, Any]], path: str | Path, *, row_group_size: int = DEFAULT_ROW_GROUP_SIZE
) -> Path:
    """Write RL prompt rows (from `rl_row`); `extra_info`'s struct type is inferred from the rows."""
    if not rows:
        raise ValueError(f"{path}: no RL rows to write")
    keys = set(rows[0]["extra_info"])
    for i, row in enumerate(rows):
        if set(row["extra_info"]) != keys:
            raise ValueError(f"{path}: row {i}, column 'extra_info': keys differ from row 0's {sorted(keys)}")
    table = pa.table(
        {
            "data_source": pa.array([r["data_source"] for r in rows], pa.string()),
            "prompt": pa.array([r["prompt"] for r in rows], MESSAGES_TYPE),
            "ability": pa.array([r["ability"] for r in rows], pa.string()),
            "reward_model": pa.array([r["reward_model"] for r in rows], REWARD_MODEL_TYPE),
            "extra_info": pa.array([r["extra_info"] for r in rows]),
        }
    )
    return _write(table, path, row_group_size)


def write_expert_parquet(
    rows: Sequence[dict[str, Any]], path: str | Path, *, row_group_size: int = DEFAULT_ROW_GROUP_SIZE
) -> Path:
    """Write expert rows (from `expert_row`); `tools`/`quality` columns only if some row has them."""
    if not rows:
        raise ValueError(f"{path}: no expert rows to write")
    columns: dict[str, pa.Array] = {
        "messages": pa.array([r["messages"] for r in rows], MESSAGES_TYPE),
        "data_source": pa.array([r["data_source"] for r in rows], pa.string()),
    }
    if any("tools" in r for r in rows):
        columns["tools"] = pa.array([r.get("tools") for r in rows], pa.string())
    if any("quality" in r for r in rows):
        columns["quality"] = pa.array([r.get("quality") for r in rows], pa.float64())
    return _write(pa.table(columns), path, row_group_size)
