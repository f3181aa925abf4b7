"""Bad expert data: every promised error names the file, and the row and column where they apply."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chord.data import ExpertBuffer, ExpertDataError, validate


def _good(i: int) -> dict:
    return {
        "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
        "quality": 1.0,
        "ref_logp": [-0.5] * (len(f"a{i}") + 1),  # byte tokenizer: one per byte + EOS
        "tools": None,
    }


BAD_ROW = 6  # in the second row group (row groups of 4)


def _with_bad_row(tmp_path, name: str, **override) -> str:
    rows = [_good(i) for i in range(9)]
    rows[BAD_ROW] = {**rows[BAD_ROW], **override}
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=4)
    return str(path)


def _where(path: str, row: int | None, column: str | None) -> str:
    text = re.escape(path)
    if row is not None:
        text += rf", row {row}"
    if column is not None:
        text += rf", column '{column}'"
    return text + ": "


ROW_ERRORS = {
    "last_turn_user": ({"messages": [{"role": "user", "content": "q"}]}, "messages", "got role 'user'"),
    "empty_assistant": (
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
        "messages",
        "assistant\\) message is empty",
    ),
    "null_content": (
        {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]},
        "messages",
        "message 0 \\(role 'user'\\) has non-string content",
    ),
    "no_messages": ({"messages": []}, "messages", "no messages"),
    "only_assistant": ({"messages": [{"role": "assistant", "content": "a"}]}, "messages", "no prompt"),
    "negative_quality": ({"quality": -0.5}, "quality", "finite number >= 0, got -0.5"),
    "nan_quality": ({"quality": float("nan")}, "quality", "finite number >= 0, got nan"),
    "null_quality": ({"quality": None}, "quality", "got None"),
    "ref_logp_length": (
        {"ref_logp": [-0.1]},
        "ref_logp",
        "ref_logp has 1 values but the response has 3 tokens",
    ),
    "ref_logp_nan": ({"ref_logp": [-0.1, float("nan"), -0.1]}, "ref_logp", "ref_logp\\[1\\] is nan"),
    "tools_bad_json": ({"tools": "[{'name': 1"}, "tools", "not valid JSON"),
    "tools_not_list": ({"tools": json.dumps({"name": "f"})}, "tools", "must be a list"),
}


@pytest.mark.parametrize("case", sorted(ROW_ERRORS))
def test_row_errors_name_file_row_and_column_when_streamed(tmp_path, tiny_tokenizer, case):
    override, column, reason = ROW_ERRORS[case]
    path = _with_bad_row(tmp_path, f"{case}.parquet", **override)
    buf = ExpertBuffer(path, tiny_tokenizer, max_prompt_length=64, max_response_length=16, shuffle=False)
    buf.next_batch(BAD_ROW)  # rows before the bad one are fine
    before = buf.state_dict()
    with pytest.raises(ExpertDataError, match=_where(path, BAD_ROW, column) + ".*" + reason) as info:
        buf.next_batch(2)
    assert (info.value.file, info.value.row, info.value.column) == (path, BAD_ROW, column)
    assert buf.state_dict() == before  # a failed batch does not move the buffer
    with pytest.raises(ExpertDataError, match=_where(path, BAD_ROW, column)):
        validate(path, tiny_tokenizer)


def _prompt_response_file(tmp_path, rows) -> str:
    path = tmp_path / "pr.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_prompt_response_row_errors(tmp_path):
    path = _prompt_response_file(
        tmp_path, [{"prompt": "p", "response": "r"}, {"prompt": "p", "response": ""}]
    )
    with pytest.raises(
        ExpertDataError, match=_where(path, 1, "response") + "the response must be a non-empty"
    ):
        validate(path)
    path = _prompt_response_file(tmp_path, [{"prompt": " ", "response": "r"}])
    with pytest.raises(ExpertDataError, match=_where(path, 0, "prompt") + "the prompt is empty"):
        validate(path)


def test_unreadable_and_missing_files(tmp_path, tiny_tokenizer):
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet at all")
    with pytest.raises(ExpertDataError, match=_where(str(junk), None, None) + "cannot read as parquet"):
        ExpertBuffer(str(junk), tiny_tokenizer, max_prompt_length=8, max_response_length=8)
    missing = str(tmp_path / "nope.parquet")
    with pytest.raises(ExpertDataError, match=_where(missing, None, None) + "no such file or directory"):
        validate(missing)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ExpertDataError, match="holds no \\*.parquet file"):
        validate(empty_dir)


def test_missing_required_column(tmp_path):
    path = _prompt_response_file(tmp_path, [{"prompt": "p", "response": "r"}])
    with pytest.raises(ExpertDataError, match=_where(path, None, "messages") + "missing required column"):
        validate(path, schema="messages")
    only_prompt = tmp_path / "only_prompt.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p"}]), only_prompt)
    with pytest.raises(
        ExpertDataError, match=_where(str(only_prompt), None, None) + "cannot tell the expert schema"
    ):
        validate(only_prompt)


WRONG_TYPES = {
    "messages": ("hello", "expected list<struct<role: string, content: string>>, found string"),
    "quality": ("high", "expected a number \\(float or int\\), found string"),
    "ref_logp": (["x"], "expected list<float>, found list<.*string>"),
    "data_source": (3, "expected string, found int64"),
}


@pytest.mark.parametrize("column", sorted(WRONG_TYPES))
def test_wrong_column_type_is_caught_from_the_parquet_schema(tmp_path, column):
    value, reason = WRONG_TYPES[column]
    row = {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        column: value,
    }
    path = str(tmp_path / f"wrong_{column}.parquet")
    pq.write_table(pa.Table.from_pylist([row]), path)
    with pytest.raises(ExpertDataError, match=_where(path, None, column) + reason):
        validate(path)


def test_optional_column_must_be_in_all_files_or_none(tmp_path):
    with_q = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "response": "r", "quality": 1.0}]), with_q)
    without_q = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "response": "r"}]), without_q)
    with pytest.raises(
        ExpertDataError,
        match=_where(str(tmp_path / "b.parquet"), None, "quality") + ".*must be in all files or none",
    ):
        validate(tmp_path)


def test_same_file_twice_is_refused(tmp_path):
    path = _prompt_response_file(tmp_path, [{"prompt": "p", "response": "r"}])
    with pytest.raises(ExpertDataError, match="the same file is given twice"):
        validate([path, str(tmp_path)])
