"""Finding expert parquet files and reading them one row group at a time.

Opening reads only each file's footer: the schema (checked by `chord.data.schema`) and the row
count of every row group. Rows are read later, a row group at a time, projected on the columns
the schema uses, so memory never depends on the file size.

Paths may be local files, local directories (every ``*.parquet`` directly inside, sorted by
name), or URIs that `pyarrow.fs.FileSystem.from_uri` understands (``s3://``, ``gs://``,
``hdfs://``, ``file://`` ...). With an explicit `filesystem`, every path is a path inside it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from chord.data.errors import ExpertDataError
from chord.data.schema import check_columns, detect_schema

# Columns that must be in every file or in none: a batch either has them for all rows or not.
ALL_OR_NONE_COLUMNS = ("quality", "ref_logp")

PathLike = str | os.PathLike


@dataclass(frozen=True)
class ExpertFile:
    """One expert parquet file, as opened: where it is, its layout and its row groups."""

    name: str  # as shown in messages and row ids: the path or URI the user gave (+ file name)
    path: str  # the path inside `filesystem`
    filesystem: pafs.FileSystem
    schema: str  # "messages" | "prompt_response"
    columns: tuple[str, ...]  # the columns read
    row_group_rows: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return sum(self.row_group_rows)

    def row_group_start(self, row_group: int) -> int:
        """Index (within the file) of the first row of `row_group`."""
        return sum(self.row_group_rows[:row_group])


def _as_list(paths: PathLike | Iterable[PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    out = [os.fspath(p) for p in paths]
    if not out:
        raise ValueError("no expert data paths given")
    return out


def resolve_paths(
    paths: PathLike | Iterable[PathLike], filesystem: pafs.FileSystem | None = None
) -> list[tuple[str, str, pafs.FileSystem]]:
    """Expand `paths` to parquet files: a list of (display name, path in filesystem, filesystem)."""
    found: list[tuple[str, str, pafs.FileSystem]] = []
    for given in _as_list(paths):
        try:
            if filesystem is not None:
                fs, path = filesystem, given
            elif "://" in given:
                fs, path = pafs.FileSystem.from_uri(given)
            else:
                fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(given))
            info = fs.get_file_info(path)
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise ExpertDataError(f"cannot open: {exc}", file=given) from None
        if info.type == pafs.FileType.NotFound:
            raise ExpertDataError("no such file or directory", file=given)
        if info.type == pafs.FileType.Directory:
            entries = fs.get_file_info(pafs.FileSelector(path, recursive=False))
            files = sorted(
                e.path for e in entries if e.type == pafs.FileType.File and e.path.endswith(".parquet")
            )
            if not files:
                raise ExpertDataError("directory holds no *.parquet file", file=given)
            base = given.rstrip("/")
            found.extend((f"{base}/{PurePath(f).name}", f, fs) for f in files)
        else:
            found.append((given, path, fs))
    seen: dict[tuple[str, str], str] = {}
    for name, path, fs in found:
        key = (fs.type_name, path)
        if key in seen:
            raise ExpertDataError(f"the same file is given twice (also as {seen[key]})", file=name)
        seen[key] = name
    return found


def _open_parquet(name: str, path: str, fs: pafs.FileSystem) -> pq.ParquetFile:
    try:
        source = fs.open_input_file(path)
    except (OSError, pa.ArrowException) as exc:
        raise ExpertDataError(f"cannot open: {exc}", file=name) from None
    try:
        return pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        source.close()
        raise ExpertDataError(f"cannot read as parquet: {exc}", file=name) from None


def open_expert_files(
    paths: PathLike | Iterable[PathLike],
    *,
    schema: str = "auto",
    filesystem: pafs.FileSystem | None = None,
) -> list[ExpertFile]:
    """Resolve and open every file (footer only), check its columns; return them in order."""
    files = []
    for name, path, fs in resolve_paths(paths, filesystem):
        pf = _open_parquet(name, path, fs)
        try:
            arrow_schema = pf.schema_arrow
            kind = detect_schema(arrow_schema, name, schema)
            columns = check_columns(arrow_schema, name, kind)
            meta = pf.metadata
            rows = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        finally:
            pf.close()
        files.append(ExpertFile(name, path, fs, kind, tuple(columns), rows))
    for column in ALL_OR_NONE_COLUMNS:
        having = [f.name for f in files if column in f.columns]
        if having and len(having) < len(files):
            missing = next(f.name for f in files if column not in f.columns)
            raise ExpertDataError(
                f"column '{column}' is in {having[0]} but not in this file; it must be in all files or none",
                file=missing,
                column=column,
            )
    return files


class RowGroupReader:
    """Reads row groups, keeping the last few files open (cheap re-use for remote stores)."""

    def __init__(self, max_open_files: int = 4) -> None:
        self._open: OrderedDict[str, pq.ParquetFile] = OrderedDict()
        self._max_open = max(1, max_open_files)

    def _handle(self, f: ExpertFile) -> pq.ParquetFile:
        key = f"{f.filesystem.type_name}:{f.path}"
        pf = self._open.pop(key, None)
        if pf is None:
            pf = _open_parquet(f.name, f.path, f.filesystem)
        self._open[key] = pf
        while len(self._open) > self._max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return pf

    def read(self, f: ExpertFile, row_group: int) -> pa.Table:
        """The used columns of one row group of `f`."""
        try:
            table = self._handle(f).read_row_group(row_group, columns=list(f.columns), use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise ExpertDataError(f"cannot read row group {row_group}: {exc}", file=f.name) from None
        if table.num_rows != f.row_group_rows[row_group]:
            raise ExpertDataError(
                f"row group {row_group} has {table.num_rows} rows, its footer said "
                f"{f.row_group_rows[row_group]} (file changed since it was opened?)",
                file=f.name,
            )
        return table

    def close(self) -> None:
        while self._open:
            _, pf = self._open.popitem()
            pf.close()


def iter_row_groups(files: Sequence[ExpertFile], reader: RowGroupReader | None = None):
    """Yield (file, row_group, table) for every non-empty row group, in file order."""
    reader = reader or RowGroupReader()
    for f in files:
        for rg, n in enumerate(f.row_group_rows):
            if n:
                yield f, rg, reader.read(f, rg)
