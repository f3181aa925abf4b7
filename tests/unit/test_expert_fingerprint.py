"""Expert-file fingerprints (chord.data.fingerprint) and the resume check built on them."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chord.data.fingerprint import file_fingerprints, fingerprint_changes
from recipe.train.checkpoints import check_expert_files
from recipe.train.stops import ExpertDataChangedStop


def _rows(n: int, letter: str = "q") -> pa.Table:
    return pa.table({"prompt": [f"{letter}{i}" for i in range(n)], "response": [f"a{i}" for i in range(n)]})


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "expert.parquet"
    pq.write_table(_rows(10), path, row_group_size=4)
    return path


def test_fingerprint_records_path_size_rows_and_schema(data):
    (fp,) = file_fingerprints([str(data)])
    assert fp["name"] == str(data)
    assert fp["size"] == data.stat().st_size
    assert fp["rows"] == 10
    assert fp["schema"] == "prompt_response"
    assert "prompt: string" in fp["arrow_schema"]
    assert fp["footer_crc32"] != 0
    assert fingerprint_changes([fp], file_fingerprints([str(data)])) == []


def test_truncated_file_is_named(data):
    saved = file_fingerprints([str(data)])
    pq.write_table(_rows(6), data, row_group_size=4)
    (change,) = fingerprint_changes(saved, file_fingerprints([str(data)]))
    assert change.startswith(f"{data}: truncated") and "6 rows" in change and "10 rows" in change


def test_deleted_file_is_named(data):
    saved = file_fingerprints([str(data)])
    data.unlink()
    (change,) = fingerprint_changes(saved, file_fingerprints([str(data)]))
    assert change.startswith(f"{data}: deleted")


def test_replaced_content_of_the_same_size_and_rows_is_detected(data):
    saved = file_fingerprints([str(data)])
    pq.write_table(_rows(10, letter="z"), data, row_group_size=4)  # other text, same lengths
    current = file_fingerprints([str(data)])
    assert (current[0]["size"], current[0]["rows"]) == (saved[0]["size"], saved[0]["rows"])
    (change,) = fingerprint_changes(saved, current)
    assert change.startswith(f"{data}: replaced")


def test_schema_change_and_added_file_are_named(tmp_path, data):
    saved = file_fingerprints([str(data)])
    table = _rows(10).append_column("quality", pa.array([1.0] * 10))
    pq.write_table(table, data, row_group_size=4)
    other = tmp_path / "more.parquet"
    pq.write_table(_rows(3), other)
    changes = fingerprint_changes(saved, file_fingerprints([str(data), str(other)]))
    assert len(changes) == 2
    assert changes[0].startswith(f"{data}: ") and ("schema changed" in changes[0] or "size" in changes[0])
    assert changes[1].startswith(f"{other}: added")


def test_moved_unchanged_data_is_not_a_change(tmp_path, data):
    saved = file_fingerprints([str(data)])
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(data, moved / "expert.parquet")
    assert fingerprint_changes(saved, file_fingerprints([str(moved / "expert.parquet")])) == []


def test_resume_check_stops_naming_the_file_unless_accepted(data, capsys):
    state = {"expert_files": file_fingerprints([str(data)])}
    assert check_expert_files("ckpt/global_step_2", state, [str(data)], "auto", accept=False) == []
    pq.write_table(_rows(6), data)
    with pytest.raises(ExpertDataChangedStop) as err:
        check_expert_files("ckpt/global_step_2", state, [str(data)], "auto", accept=False)
    message = str(err.value)
    assert str(data) in message and "truncated" in message and "global_step_2" in message
    assert "chord.expert.accept_changed_files=true" in message
    changes = check_expert_files("ckpt/global_step_2", state, [str(data)], "auto", accept=True)
    assert len(changes) == 1
    assert "accepted changed expert data" in capsys.readouterr().out
