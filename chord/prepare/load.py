"""Open a source dataset through `datasets`, from a local file or folder or a hub name.

- a local `.parquet`, `.json` or `.jsonl` file: read with the matching `datasets` builder
  (a JSON file may hold one top-level list of records, as ToolACE's `data.json` does);
- a local folder: `datasets.load_dataset(folder, name=config)` (a downloaded hub repository or
  a folder of data files);
- anything else: a hub name, `datasets.load_dataset(name, name=config, split=split)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}


def load_source(source: str, *, config: str | None = None, split: str = "train") -> Any:
    """The `split` of `source` as a `datasets.Dataset` (memory-mapped, rows read lazily)."""
    import datasets

    path = Path(source).expanduser()
    if path.is_file():
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"{source}: unsupported file type (expected one of {sorted(_BUILDERS)})")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        return datasets.load_dataset(str(path), name=config, split=split)
    if path.suffix.lower() in _BUILDERS or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file or folder")
    return datasets.load_dataset(source, name=config, split=split)


def require_columns(dataset: Any, columns: tuple[str, ...], source: str) -> None:
    """ValueError naming `source` and the missing columns if any of `columns` is absent."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(dataset.column_names)}")
