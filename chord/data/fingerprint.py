"""What the expert files were when a checkpoint was written, and what changed since.

`file_fingerprints(paths)` records, per file (directories expanded as the buffer does): the
name, size in bytes, row count, layout ("messages" / "prompt_response"), the arrow schema and a
CRC32 of the parquet footer (row-group offsets and statistics: a file rewritten with other
content but the same size and row count still differs there). Only footers are read.

`fingerprint_changes(saved, current)` lists the differences, one message per file, each naming
it: deleted, added, truncated / grown (size or rows), schema changed, content replaced. Files are
matched by position, so data moved to another directory unchanged is not a change.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from chord.data.errors import ExpertDataError
from chord.data.reader import PathLike, resolve_paths
from chord.data.schema import detect_schema


def _footer_crc(source: Any, size: int) -> int:
    if size < 12:
        return 0
    source.seek(size - 8)
    tail = source.read(8)
    (length,) = struct.unpack("<i", tail[:4])
    if tail[4:] != b"PAR1" or not 0 < length <= size - 12:
        return 0
    source.seek(size - 8 - length)
    return zlib.crc32(source.read(length))


def _one(name: str, path: str, fs: pafs.FileSystem, schema: str) -> dict[str, Any]:
    size = fs.get_file_info(path).size
    with fs.open_input_file(path) as source:
        try:
            meta = pq.ParquetFile(source).metadata
            arrow_schema = meta.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            raise ExpertDataError(f"cannot read as parquet: {exc}", file=name) from None
        crc = _footer_crc(source, size)
    try:
        layout = detect_schema(arrow_schema, name, schema)
    except ExpertDataError as exc:
        layout = f"unusable ({exc.reason})"
    return {
        "name": name,
        "size": int(size),
        "rows": int(meta.num_rows),
        "schema": layout,
        "arrow_schema": arrow_schema.to_string(show_schema_metadata=False),
        "footer_crc32": crc,
    }


def file_fingerprints(paths: PathLike | Iterable[PathLike], schema: str = "auto") -> list[dict[str, Any]]:
    """One fingerprint per expert file (see the module docstring); a missing path gives
    `{"name": path, "missing": True}` instead of an error."""
    given = [paths] if isinstance(paths, str) else list(paths)
    out: list[dict[str, Any]] = []
    for path in given:
        try:
            resolved = resolve_paths([path])
        except ExpertDataError as exc:
            out.append({"name": str(path), "missing": True, "reason": exc.reason})
            continue
        out.extend(_one(name, p, fs, schema) for name, p, fs in resolved)
    return out


def _describe(fp: dict[str, Any]) -> str:
    return f"{fp['size']} bytes, {fp['rows']} rows, {fp['schema']}"


def fingerprint_changes(saved: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """Differences between the fingerprints a checkpoint saved and the files now (empty: none)."""
    changes = []
    for i in range(max(len(saved), len(current))):
        old = saved[i] if i < len(saved) else None
        new = current[i] if i < len(current) else None
        if new is None or new.get("missing"):
            name = (new or old or {}).get("name")
            changes.append(
                f"{name}: deleted (the checkpoint recorded {_describe(old)})" if old else f"{name}: missing"
            )
        elif old is None:
            changes.append(f"{new['name']}: added after the checkpoint ({_describe(new)})")
        elif old.get("missing"):
            changes.append(f"{new['name']}: was missing when the checkpoint was written")
        elif new["rows"] < old["rows"] or new["size"] < old["size"]:
            changes.append(
                f"{new['name']}: truncated: now {_describe(new)}, the checkpoint recorded {_describe(old)}"
            )
        elif new["rows"] != old["rows"] or new["size"] != old["size"]:
            changes.append(
                f"{new['name']}: changed size: now {_describe(new)}, the checkpoint recorded {_describe(old)}"
            )
        elif new["schema"] != old["schema"] or new["arrow_schema"] != old["arrow_schema"]:
            changes.append(
                f"{new['name']}: schema changed: now {new['schema']} {new['arrow_schema']!r}, "
                f"the checkpoint recorded {old['schema']} {old['arrow_schema']!r}"
            )
        elif new["footer_crc32"] != old["footer_crc32"]:
            changes.append(
                f"{new['name']}: replaced: same size and rows, other content (parquet footer differs)"
            )
    return changes
