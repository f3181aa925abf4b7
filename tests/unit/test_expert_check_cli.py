"""validate() and the chord-check-data command: summary, percentiles, exit codes."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from chord.data import LengthSummary, validate
from chord.data.check import main


def _expert_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    # prompt tokens: 19 around the question (ChatML, byte tokenizer); response: len + EOS
    rows = [{"prompt": "q" * (i + 1), "response": "r" * (i + 1)} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), d / "part-0.parquet", row_group_size=3)
    pq.write_table(pa.Table.from_pylist(rows[:5]), d / "part-1.parquet", row_group_size=2)
    return d


def test_length_summary_uses_nearest_rank():
    s = LengthSummary.from_counts(Counter({1: 50, 2: 40, 10: 9, 100: 1}))
    assert (s.count, s.p50, s.p90, s.p99, s.max, s.mean) == (100, 1, 2, 10, 100, 3.2)
    assert LengthSummary.from_counts(Counter()) is None


def test_validate_counts_rows_lengths_and_rows_over_the_limits(tmp_path, tiny_tokenizer):
    report = validate(_expert_dir(tmp_path), tiny_tokenizer, max_prompt_length=25, max_response_length=6)
    assert report.rows == 15 and [f.rows for f in report.files] == [10, 5]
    assert [f.row_groups for f in report.files] == [4, 3]
    assert report.schemas == ["prompt_response"]
    assert report.prompt_tokens.max == 29 and report.response_tokens.max == 11
    assert report.prompt_tokens.p50 == 23  # lengths 20..29 and 20..24: the 8th of 15 is 23
    # prompt over 25 tokens: questions of 7..10 chars (4 rows); responses over 6: 6..10 chars (5 rows)
    assert (report.over_prompt, report.over_response, report.over_limits) == (4, 5, 5)


def test_cli_prints_summary_and_exits_0(tmp_path, tiny_model_dir, capsys):
    d = _expert_dir(tmp_path)
    code = main(
        [
            str(d),
            "--tokenizer",
            str(tiny_model_dir),
            "--max-prompt-length",
            "25",
            "--max-response-length",
            "6",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "files: 2  rows: 15  schema: prompt_response" in out
    assert f"{d}/part-1.parquet: 5 rows, 3 row groups" in out
    assert "prompt tokens:   p50 23  p90 28  p99 29  max 29" in out
    assert "response tokens: p50 5  p90 10  p99 11  max 11" in out
    assert "rows over the limits: 5 (33.33%): prompt too long 4, response too long 5" in out
    assert "overflow=truncate would truncate 5 rows; overflow=drop would drop 5 rows" in out
    assert out.rstrip().endswith("OK: the expert data is usable")


def test_cli_without_tokenizer_checks_rows_only(tmp_path, capsys):
    assert main([str(_expert_dir(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "rows: 15" in out and "token lengths and ref_logp lengths were not checked" in out


def test_cli_exits_1_naming_file_row_and_column(tmp_path, capsys):
    d = _expert_dir(tmp_path)
    bad = [{"prompt": "p", "response": "r", "quality": q} for q in (1.0, 0.0, -1.0)]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "bad.parquet")
    assert main([str(tmp_path / "bad.parquet")]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: {tmp_path}/bad.parquet, row 2, column 'quality': quality must be a finite number >= 0" in err
    )
    assert main([str(d), str(tmp_path / "missing.parquet")]) == 1
    assert f"{tmp_path}/missing.parquet: no such file or directory" in capsys.readouterr().err


def test_cli_limits_need_a_tokenizer(tmp_path, capsys):
    assert main([str(_expert_dir(tmp_path)), "--max-prompt-length", "8"]) == 2
    assert "need --tokenizer" in capsys.readouterr().err
