"""Expert-data schemas: which columns a file needs, their types, and what makes a row usable.

Two layouts are accepted (`schema="auto"` picks by column names, `messages` first):

- ``messages``: a list of ``{role, content}`` chat messages. The LAST message is the expert
  answer and must have role ``assistant``; every message before it is the prompt. Optional
  ``tools``: the tool definitions handed to the chat template, as a JSON string or a list.
- ``prompt_response``: ``prompt`` (a string, wrapped as one user message, or a list of chat
  messages) and ``response`` (a string).

Optional in both: ``quality`` (a number >= 0, e.g. the iw-SFT(Q) score), ``ref_logp`` (a list of
floats: reference log-probs of the response tokens, EOS included) and ``data_source`` (a string;
null or absent means "expert"). Other columns are ignored and never read.

Column types are checked from the parquet schema when a file is opened; row contents are
checked when the row is read (`parse_row`). Both raise `ExpertDataError` naming the place.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from chord.data.errors import ExpertDataError

SCHEMAS = ("messages", "prompt_response")
OPTIONAL_COLUMNS = ("quality", "ref_logp", "data_source")
DEFAULT_DATA_SOURCE = "expert"


@dataclass
class ExpertRecord:
    """One checked expert row, before tokenisation."""

    prompt_messages: list[dict[str, Any]]
    response: str
    tools: list[Any] | None
    quality: float | None
    ref_logp: list[float] | None
    data_source: str
    file: str
    row: int


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_list(t: pa.DataType) -> bool:
    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _is_messages_type(t: pa.DataType) -> bool:
    if not _is_list(t) or not pa.types.is_struct(t.value_type):
        return False
    fields = {f.name: f.type for f in t.value_type}
    return all(name in fields and _is_str(fields[name]) for name in ("role", "content"))


_MESSAGES_TYPE = "list<struct<role: string, content: string>>"

# column -> (check on the arrow type, the type the error message asks for)
_COLUMN_TYPES = {
    "messages": (_is_messages_type, _MESSAGES_TYPE),
    "tools": (lambda t: _is_str(t) or _is_list(t), "string (JSON) or list"),
    "prompt": (lambda t: _is_str(t) or _is_messages_type(t), f"string or {_MESSAGES_TYPE}"),
    "response": (_is_str, "string"),
    "quality": (lambda t: pa.types.is_floating(t) or pa.types.is_integer(t), "a number (float or int)"),
    "ref_logp": (lambda t: _is_list(t) and pa.types.is_floating(t.value_type), "list<float>"),
    "data_source": (_is_str, "string"),
}

_REQUIRED = {"messages": ("messages",), "prompt_response": ("prompt", "response")}
_OPTIONAL = {"messages": ("tools", *OPTIONAL_COLUMNS), "prompt_response": OPTIONAL_COLUMNS}


def detect_schema(arrow_schema: pa.Schema, file: str, requested: str = "auto") -> str:
    """Return the layout of a file ("messages" or "prompt_response").

    `requested` is "auto" or one of `SCHEMAS`; a requested layout must have its columns.
    """
    names = set(arrow_schema.names)
    if requested == "auto":
        if "messages" in names:
            return "messages"
        if "prompt" in names and "response" in names:
            return "prompt_response"
        raise ExpertDataError(
            "cannot tell the expert schema: need a 'messages' column, or 'prompt' and 'response' "
            f"columns; found {sorted(names)}",
            file=file,
        )
    if requested not in SCHEMAS:
        raise ValueError(f"schema must be 'auto' or one of {SCHEMAS}, got {requested!r}")
    for column in _REQUIRED[requested]:
        if column not in names:
            raise ExpertDataError(
                f"missing required column for schema '{requested}' (columns: {sorted(names)})",
                file=file,
                column=column,
            )
    return requested


def check_columns(arrow_schema: pa.Schema, file: str, kind: str) -> list[str]:
    """Check the types of the columns `kind` uses; return the columns to read, in order."""
    columns = []
    for column in (*_REQUIRED[kind], *_OPTIONAL[kind]):
        if column not in arrow_schema.names:
            continue
        ok, wanted = _COLUMN_TYPES[column]
        found = arrow_schema.field(column).type
        # an optional column that is null in every row has type null; its rows are checked one by one
        if pa.types.is_null(found) and column in _OPTIONAL[kind]:
            columns.append(column)
            continue
        if not ok(found):
            raise ExpertDataError(f"expected {wanted}, found {found}", file=file, column=column)
        columns.append(column)
    return columns


def _check_messages(value: Any, file: str, row: int, column: str) -> list[dict[str, Any]]:
    if value is None or len(value) == 0:
        raise ExpertDataError("no messages (null or empty list)", file=file, row=row, column=column)
    messages = []
    for i, message in enumerate(value):
        if message is None:
            raise ExpertDataError(f"message {i} is null", file=file, row=row, column=column)
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise ExpertDataError(f"message {i} has no role", file=file, row=row, column=column)
        if not isinstance(content, str):
            raise ExpertDataError(
                f"message {i} (role '{role}') has non-string content: {content!r}",
                file=file,
                row=row,
                column=column,
            )
        # Struct columns give every row every field; keep only the ones this row sets.
        messages.append({k: v for k, v in message.items() if v is not None})
    return messages


def _parse_tools(value: Any, file: str, row: int) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ExpertDataError(f"not valid JSON: {exc}", file=file, row=row, column="tools") from None
    if not isinstance(value, list):
        raise ExpertDataError(
            f"tools must be a list of tool definitions, got {type(value).__name__}",
            file=file,
            row=row,
            column="tools",
        )
    return value


def _parse_quality(value: Any, file: str, row: int) -> float:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
        raise ExpertDataError(
            f"quality must be a finite number >= 0, got {value!r}", file=file, row=row, column="quality"
        )
    return float(value)


def _parse_ref_logp(value: Any, file: str, row: int) -> list[float]:
    if value is None:
        raise ExpertDataError("ref_logp is null", file=file, row=row, column="ref_logp")
    try:
        ok = all(map(math.isfinite, value))  # the fast path, in C
    except TypeError:  # a null element
        ok = False
    if not ok:
        i, x = next((i, x) for i, x in enumerate(value) if x is None or not math.isfinite(x))
        raise ExpertDataError(
            f"ref_logp[{i}] is {x!r}; log-probs must be finite numbers", file=file, row=row, column="ref_logp"
        )
    return value if isinstance(value, list) else list(value)


def parse_row(values: dict[str, Any], kind: str, file: str, row: int) -> ExpertRecord:
    """Check one row (a dict of the columns `check_columns` returned) and normalise it.

    Raises `ExpertDataError` naming `file`, `row` and the column at fault.
    """
    tools = None
    if kind == "messages":
        messages = _check_messages(values["messages"], file, row, "messages")
        last = messages[-1]
        if last["role"] != "assistant":
            raise ExpertDataError(
                "the last message must be the assistant answer (role 'assistant'), "
                f"got role '{last['role']}'",
                file=file,
                row=row,
                column="messages",
            )
        if not last["content"].strip():
            raise ExpertDataError(
                "the last (assistant) message is empty", file=file, row=row, column="messages"
            )
        if len(messages) < 2:
            raise ExpertDataError(
                "no prompt: the assistant answer is the only message", file=file, row=row, column="messages"
            )
        prompt_messages, response = messages[:-1], last["content"]
        tools = _parse_tools(values.get("tools"), file, row)
    elif kind == "prompt_response":
        prompt = values["prompt"]
        if isinstance(prompt, str):
            if not prompt.strip():
                raise ExpertDataError("the prompt is empty", file=file, row=row, column="prompt")
            prompt_messages = [{"role": "user", "content": prompt}]
        else:
            prompt_messages = _check_messages(prompt, file, row, "prompt")
        response = values["response"]
        if not isinstance(response, str) or not response.strip():
            raise ExpertDataError(
                f"the response must be a non-empty string, got {response!r:.40}",
                file=file,
                row=row,
                column="response",
            )
    else:
        raise ValueError(f"unknown schema {kind!r}")
    quality = _parse_quality(values["quality"], file, row) if "quality" in values else None
    ref_logp = _parse_ref_logp(values["ref_logp"], file, row) if "ref_logp" in values else None
    source = values.get("data_source")
    if source is not None and not isinstance(source, str):
        raise ExpertDataError(f"expected a string, got {source!r}", file=file, row=row, column="data_source")
    return ExpertRecord(
        prompt_messages=prompt_messages,
        response=response,
        tools=tools,
        quality=quality,
        ref_logp=ref_logp,
        data_source=source or DEFAULT_DATA_SOURCE,
        file=file,
        row=row,
    )
