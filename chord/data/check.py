"""Checking expert data end to end: `validate(...)` and the `chord-check-data` command.

`validate` reads every row of every file (a row group at a time, so memory stays flat), runs
the same row checks and tokenisation as `ExpertBuffer`, and summarises token lengths and how
many rows the length limits would truncate or drop. The first bad row raises
`ExpertDataError` naming its file, row and column.

Usage::

    chord-check-data FILE_OR_DIR... [--tokenizer PATH] [--max-prompt-length N]
                     [--max-response-length N] [--schema auto|messages|prompt_response]

Exit code 0 when the data is usable, 1 (with the error on stderr) when it is not.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from chord.data.errors import ExpertDataError
from chord.data.reader import PathLike, RowGroupReader, iter_row_groups, open_expert_files
from chord.data.schema import parse_row
from chord.data.tokenization import ExpertTokenizer

_CHUNK_ROWS = 512  # rows converted to Python and tokenised at once


@dataclass(frozen=True)
class LengthSummary:
    """Token-length percentiles (nearest rank: the smallest length L with >= q of rows <= L)."""

    count: int
    p50: int
    p90: int
    p99: int
    max: int
    mean: float

    @classmethod
    def from_counts(cls, counts: Counter[int]) -> LengthSummary | None:
        """Summarise a histogram {length: number of rows} (memory: one entry per distinct length)."""
        total = sum(counts.values())
        if total == 0:
            return None
        lengths = sorted(counts)

        def rank(q: float) -> int:
            need, seen = max(1, math.ceil(q * total)), 0
            for length in lengths:
                seen += counts[length]
                if seen >= need:
                    return length
            return lengths[-1]

        mean = sum(length * c for length, c in counts.items()) / total
        return cls(total, rank(0.5), rank(0.9), rank(0.99), lengths[-1], mean)

    def format(self) -> str:
        return (
            f"p50 {self.p50:,}  p90 {self.p90:,}  p99 {self.p99:,}  max {self.max:,}  (mean {self.mean:,.1f})"
        )


@dataclass(frozen=True)
class FileReport:
    name: str
    schema: str
    rows: int
    row_groups: int
    max_row_group_rows: int
    columns: tuple[str, ...]


@dataclass
class ValidationReport:
    """What `validate` found. Token fields are None without a tokenizer; `over_*` count rows
    beyond the given limits (None without limits): `overflow="truncate"` would truncate
    `over_limits` rows and `overflow="drop"` would drop them."""

    files: list[FileReport]
    rows: int
    prompt_tokens: LengthSummary | None = None
    response_tokens: LengthSummary | None = None
    max_prompt_length: int | None = None
    max_response_length: int | None = None
    over_prompt: int | None = None
    over_response: int | None = None
    over_limits: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def schemas(self) -> list[str]:
        return sorted({f.schema for f in self.files})

    def format(self) -> str:
        """A human-readable summary (what the CLI prints)."""
        lines = [f"files: {len(self.files)}  rows: {self.rows:,}  schema: {', '.join(self.schemas)}"]
        for f in self.files:
            lines.append(
                f"  {f.name}: {f.rows:,} rows, {f.row_groups} row groups "
                f"(largest {f.max_row_group_rows:,} rows), "
                f"schema {f.schema}, columns {', '.join(f.columns)}"
            )
        if self.prompt_tokens is not None and self.response_tokens is not None:
            lines.append(f"prompt tokens:   {self.prompt_tokens.format()}")
            lines.append(f"response tokens: {self.response_tokens.format()}  (EOS included)")
        if self.over_limits is not None:
            share = 100.0 * self.over_limits / max(1, self.rows)
            lines.append(
                f"limits: max_prompt_length={self.max_prompt_length}, "
                f"max_response_length={self.max_response_length}"
            )
            lines.append(
                f"  rows over the limits: {self.over_limits:,} ({share:.2f}%): "
                f"prompt too long {self.over_prompt:,}, "
                f"response too long {self.over_response:,}"
            )
            lines.append(
                f"  overflow=truncate would truncate {self.over_limits:,} rows; "
                f"overflow=drop would drop {self.over_limits:,} rows"
            )
        lines.extend(self.notes)
        return "\n".join(lines)


def validate(
    paths: PathLike | Iterable[PathLike],
    tokenizer: Any = None,
    *,
    max_prompt_length: int | None = None,
    max_response_length: int | None = None,
    schema: str = "auto",
    filesystem: pafs.FileSystem | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> ValidationReport:
    """Check every row of the expert data (streaming); raise `ExpertDataError` at the first bad one.

    With a `tokenizer`, rows are also rendered and tokenised exactly as `ExpertBuffer` does
    (which checks `ref_logp` lengths) and token lengths are summarised; limits then count the
    rows over them. Limits without a tokenizer raise ValueError.
    """
    has_limits = max_prompt_length is not None or max_response_length is not None
    if has_limits and tokenizer is None:
        raise ValueError("length limits need a tokenizer")
    files = open_expert_files(paths, schema=schema, filesystem=filesystem)
    tokenize = ExpertTokenizer(tokenizer, chat_template_kwargs) if tokenizer is not None else None
    prompt_counts: Counter[int] = Counter()
    response_counts: Counter[int] = Counter()
    over_prompt = over_response = over_limits = 0
    p_max = max_prompt_length if max_prompt_length is not None else math.inf
    r_max = max_response_length if max_response_length is not None else math.inf
    reader = RowGroupReader()
    try:
        for f, rg, table in iter_row_groups(files, reader):
            first_row = f.row_group_start(rg)
            for chunk_start in range(0, table.num_rows, _CHUNK_ROWS):
                values = table.slice(chunk_start, _CHUNK_ROWS).to_pylist()
                records = [
                    parse_row(v, f.schema, f.name, first_row + chunk_start + i) for i, v in enumerate(values)
                ]
                if tokenize is None:
                    continue
                for row in tokenize(records):
                    p, r = len(row.prompt_ids), len(row.response_ids)
                    prompt_counts[p] += 1
                    response_counts[r] += 1
                    over_prompt += p > p_max
                    over_response += r > r_max
                    over_limits += p > p_max or r > r_max
    finally:
        reader.close()
    report = ValidationReport(
        files=[
            FileReport(
                f.name,
                f.schema,
                f.num_rows,
                len(f.row_group_rows),
                max(f.row_group_rows, default=0),
                f.columns,
            )
            for f in files
        ],
        rows=sum(f.num_rows for f in files),
    )
    if tokenize is not None:
        report.prompt_tokens = LengthSummary.from_counts(prompt_counts)
        report.response_tokens = LengthSummary.from_counts(response_counts)
    else:
        report.notes.append("no tokenizer given: token lengths and ref_logp lengths were not checked")
    if has_limits:
        report.max_prompt_length, report.max_response_length = max_prompt_length, max_response_length
        report.over_prompt, report.over_response, report.over_limits = over_prompt, over_response, over_limits
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chord-check-data",
        description="Check expert parquet data for CHORD / iw-SFT and summarise it.",
    )
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="parquet files, directories or URIs")
    parser.add_argument("--tokenizer", help="tokenizer path or name (enables token statistics)")
    parser.add_argument("--max-prompt-length", type=int, help="count rows whose prompt is longer")
    parser.add_argument("--max-response-length", type=int, help="count rows whose response is longer")
    parser.add_argument("--schema", default="auto", choices=["auto", "messages", "prompt_response"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `chord-check-data` command; returns the exit code (0 usable, 1 bad data)."""
    args = _parser().parse_args(argv)
    if (args.max_prompt_length is not None or args.max_response_length is not None) and not args.tokenizer:
        print(
            "chord-check-data: error: --max-prompt-length/--max-response-length need --tokenizer",
            file=sys.stderr,
        )
        return 2
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer  # only the CLI needs transformers

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    try:
        report = validate(
            args.paths,
            tokenizer,
            max_prompt_length=args.max_prompt_length,
            max_response_length=args.max_response_length,
            schema=args.schema,
        )
    except ExpertDataError as exc:
        print(f"chord-check-data: error: {exc}", file=sys.stderr)
        return 1
    print(report.format())
    print("OK: the expert data is usable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
