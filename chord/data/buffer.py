"""`ExpertBuffer`: expert rows for every training step, streamed from parquet, resumable.

The trainer's driver calls `next_batch(n)` once per step and saves `state_dict()` with its
checkpoint. Rows come in the order of `chord.data.order` (seeded per epoch, one window of row
groups decoded at a time, so memory stays flat however large the files are); each row is
checked (`chord.data.schema`), tokenised and fitted to the length limits
(`chord.data.tokenization`) as it is served.

State (JSON-serialisable)::

    {"version": 1, "fingerprint": "<sha256>", "seed": 0, "num_files": 2, "num_rows": 5000,
     "epoch": 3, "unit_index": 16, "offset": 37, "stats": {...}}

`unit_index` is the position, in epoch `epoch`'s unit order, where the current window starts
and `offset` the number of rows of that window already consumed (served or dropped). The
orders themselves are recomputed from the seed, so a buffer restored with `load_state_dict`
serves exactly the rows an uninterrupted run would have. The fingerprint covers the file
names (not their directories, so data may move), every row group's row count, the seed and
the shuffle settings; a state saved for anything else is refused.

Prefetch (`prefetch=True`): after serving a batch of `n` rows, the buffer builds the next `n`
rows (read, check, tokenise, limits) on one background thread, so the trainer's next
`next_batch(n)` only waits for what is left of it. At most one batch is built ahead (bounded
memory). A prefetched batch is *not* consumed: the cursor and counters (and so `state_dict()`)
change only when `next_batch` hands it out, the rows are the ones a buffer without prefetch
serves, and `load_state_dict` discards anything prefetched. A bad row raises from the
`next_batch` call that would have served it, with the position unchanged, as without prefetch.
The background thread tokenises with its own copy of the tokenizer (a Rust tokenizer must not be
used from two threads at once, and the caller keeps using its own).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import torch

from chord.data.batch import ExpertBatch
from chord.data.errors import ExpertDataError
from chord.data.order import ShuffleOrder, Window
from chord.data.reader import ExpertFile, PathLike, RowGroupReader, open_expert_files
from chord.data.schema import ExpertRecord, parse_row
from chord.data.tokenization import OVERFLOW_MODES, ExpertTokenizer, TokenizedRow, apply_limits

STATE_VERSION = 1
DEFAULT_WINDOW_ROW_GROUPS = 8

_STAT_KEYS = (
    "rows_served",  # rows returned in batches
    "rows_read",  # rows consumed from the data: served + dropped
    "tokens_served",  # response tokens returned (after truncation)
    "truncated",  # served rows that were cut to fit (prompt and/or response)
    "prompt_truncated",
    "response_truncated",
    "dropped",  # rows skipped under overflow="drop"
    "epochs_completed",
)


@dataclass
class _Built:
    """A batch made from the cursor `start`, and the cursor / counters after it (not yet committed)."""

    n: int
    start: tuple[int, int, int]  # (epoch, window start, offset) the batch was made from
    end: tuple[int, int, int]
    counts: dict[str, int]
    tokens: int
    batch: ExpertBatch


class ExpertBuffer:
    """An endless, seeded, resumable stream of tokenised expert rows (see the module docstring).

    Args:
        paths: parquet files, directories of them, or URIs (see `chord.data.reader`).
        tokenizer: a Hugging Face tokenizer with a chat template and an EOS token.
        max_prompt_length / max_response_length: token limits of the trainer's batch.
        overflow: "truncate" (left-truncate prompts, right-truncate responses) or "drop".
        shuffle, seed: seeded order per epoch; `shuffle=False` serves rows in file order.
        schema: "auto", "messages" or "prompt_response" (see `chord.data.schema`).
        shuffle_window_row_groups: row groups decoded and shuffled together (memory vs mixing).
        filesystem: a `pyarrow.fs.FileSystem` in which every path lives (default: local or URI).
        chat_template_kwargs: extra keyword arguments for `apply_chat_template`.
        max_open_files: parquet files kept open between reads.
        prefetch: build the next batch in the background after each `next_batch` (see the
            module docstring); `prefetch(n)` starts one explicitly (e.g. before the first step).

    Attributes: `num_rows` (rows per epoch), `epoch` (0-based epoch of the next row), `files`,
    `schemas`, `has_quality`, `has_ref_logp`, `fingerprint`, and `stats`: cumulative counters
    `rows_served`, `rows_read` (served + dropped), `tokens_served` (response tokens),
    `truncated` (= rows with `prompt_truncated` and/or `response_truncated`), `dropped`,
    `epochs_completed`. They are part of `state_dict()`.
    """

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        tokenizer: Any,
        *,
        max_prompt_length: int,
        max_response_length: int,
        overflow: str = "truncate",
        shuffle: bool = True,
        seed: int = 0,
        schema: str = "auto",
        shuffle_window_row_groups: int = DEFAULT_WINDOW_ROW_GROUPS,
        filesystem: pafs.FileSystem | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        max_open_files: int = 4,
        prefetch: bool = False,
    ) -> None:
        if overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
        for name, value in (
            ("max_prompt_length", max_prompt_length),
            ("max_response_length", max_response_length),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_prompt_length = max_prompt_length
        self.max_response_length = max_response_length
        self.overflow = overflow
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.files: list[ExpertFile] = open_expert_files(paths, schema=schema, filesystem=filesystem)
        # units: every non-empty row group, as (file index, row group index)
        self._units = [
            (fi, rg) for fi, f in enumerate(self.files) for rg, n in enumerate(f.row_group_rows) if n > 0
        ]
        if not self._units:
            raise ExpertDataError("the expert data has no rows", file=self.files[0].name)
        self._order = ShuffleOrder(
            [self.files[fi].row_group_rows[rg] for fi, rg in self._units],
            seed=self.seed,
            shuffle=self.shuffle,
            window_units=shuffle_window_row_groups,
        )
        self._tokenize = ExpertTokenizer(
            copy.deepcopy(tokenizer) if prefetch else tokenizer, chat_template_kwargs
        )
        self._reader = RowGroupReader(max_open_files)
        self.has_quality = "quality" in self.files[0].columns
        self.has_ref_logp = "ref_logp" in self.files[0].columns
        self.fingerprint = self._fingerprint()
        # cursor: (epoch, start of the current window in the epoch's unit order, rows consumed in it)
        self._epoch, self._start, self._offset = 0, 0, 0
        self._window: Window | None = None
        self._window_key: tuple[int, int] | None = None
        self._segments: list[tuple[ExpertFile, int, pa.Table]] = []  # (file, first file row, rows)
        self._segment_starts: list[int] = []
        self.stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self._prefetch_on = bool(prefetch)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[_Built] | None = None

    # -- public read-only facts -------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Rows in the data (one epoch), from the parquet footers."""
        return self._order.num_rows

    @property
    def epoch(self) -> int:
        """The epoch the next row comes from (0-based; = completed passes)."""
        return self._epoch

    @property
    def schemas(self) -> dict[str, str]:
        """File name -> its layout ("messages" or "prompt_response")."""
        return {f.name: f.schema for f in self.files}

    @property
    def window_row_groups(self) -> int:
        return self._order.window_units

    def _fingerprint(self) -> str:
        facts = {
            "files": [[PurePath(f.path).name, list(f.row_group_rows)] for f in self.files],
            "seed": self.seed,
            "shuffle": self.shuffle,
            # the window changes the order only when shuffling
            "window": self._order.window_units if self.shuffle else None,
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

    def _describe(self) -> str:
        return (
            f"seed={self.seed}, shuffle={self.shuffle}, window={self._order.window_units}, "
            f"{len(self.files)} files, {self.num_rows} rows"
        )

    # -- reading ------------------------------------------------------------------------------
    def _load_window(self, epoch: int, start: int) -> Window:
        if self._window_key != (epoch, start):
            # Free the previous window before decoding the next, and hand its pages back to the OS:
            # the allocator would otherwise keep them, and RSS would creep up over windows.
            self._segments, self._window, self._window_key = [], None, None
            pa.default_memory_pool().release_unused()
            window = self._order.window(epoch, start)
            segments, starts, at = [], [], 0
            for unit in window.units:
                fi, rg = self._units[unit]
                f = self.files[fi]
                table = self._reader.read(f, rg)
                segments.append((f, f.row_group_start(rg), table))
                starts.append(at)
                at += table.num_rows
            self._segments, self._segment_starts = segments, starts
            self._window, self._window_key = window, (epoch, start)
        assert self._window is not None
        return self._window

    def _read_records(self, window: Window, offset: int, count: int) -> list[ExpertRecord]:
        """Rows offset .. offset+count-1 of the window's serving order, checked."""
        wanted = window.row_order[offset : offset + count]
        by_segment: dict[int, list[tuple[int, int]]] = {}
        for pos, k in enumerate(wanted):
            s = bisect.bisect_right(self._segment_starts, k) - 1
            by_segment.setdefault(s, []).append((pos, k - self._segment_starts[s]))
        records: list[ExpertRecord | None] = [None] * len(wanted)
        for s, items in by_segment.items():
            f, first_row, table = self._segments[s]
            values = table.take(pa.array([local for _, local in items], type=pa.int64())).to_pylist()
            for (pos, local), row in zip(items, values, strict=True):
                records[pos] = parse_row(row, f.schema, f.name, first_row + local)
        return records  # type: ignore[return-value]

    def next_batch(self, n: int) -> ExpertBatch:
        """The next `n` usable rows (cycling over epochs; dropped rows are replaced by later ones).

        Raises `ExpertDataError` on a bad row (the buffer's position is then left unchanged),
        or when overflow="drop" leaves no row that fits.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        built = self._take_prefetched(n)
        if built is None:
            built = self._build(n, self._cursor)
        self._commit(built)
        if self._prefetch_on:
            self.prefetch(n)
        return built.batch

    def prefetch(self, n: int) -> None:
        """Start building the next `n` rows in the background (no-op if already under way).

        Nothing is consumed: the next `next_batch(n)` serves them and moves the cursor.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if self._pending is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expert-prefetch")
        self._pending = self._executor.submit(self._build, n, self._cursor)

    @property
    def _cursor(self) -> tuple[int, int, int]:
        return self._epoch, self._start, self._offset

    def _take_prefetched(self, n: int) -> _Built | None:
        """The prefetched batch if it is the one `next_batch(n)` would make now, else None.

        Waits for a build under way; its error (a bad row) is raised here, unconsumed.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        built = pending.result()
        return built if built.n == n and built.start == self._cursor else None

    def _discard_prefetched(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            try:
                pending.result()  # wait: the window cache must not be touched by two threads
            except Exception:  # noqa: BLE001 - a discarded batch's error belongs to no call
                pass

    def _build(self, n: int, cursor: tuple[int, int, int]) -> _Built:
        """The `n` usable rows from `cursor`; nothing is committed (see `_commit`)."""
        epoch, start, offset = cursor
        served: list[TokenizedRow] = []
        counts = dict.fromkeys(("truncated", "prompt_truncated", "response_truncated", "dropped", "read"), 0)
        consecutive_drops = 0
        while len(served) < n:
            window = self._load_window(epoch, start)
            take = min(n - len(served), window.num_rows - offset)
            for row in self._tokenize(self._read_records(window, offset, take)):
                outcome = apply_limits(row, self.max_prompt_length, self.max_response_length, self.overflow)
                counts["read"] += 1
                counts["prompt_truncated"] += outcome.prompt_truncated and not outcome.dropped
                counts["response_truncated"] += outcome.response_truncated and not outcome.dropped
                counts["truncated"] += outcome.truncated
                if outcome.row is None:
                    counts["dropped"] += 1
                    consecutive_drops += 1
                else:
                    served.append(outcome.row)
                    consecutive_drops = 0
            offset += take
            if offset == window.num_rows:
                start, offset = start + self._order.window_units, 0
                if start >= self._order.num_units:
                    epoch, start = epoch + 1, 0
            # 2 epochs' worth of positions cover every row at least once
            if consecutive_drops >= 2 * self.num_rows:
                raise ExpertDataError(
                    f"every expert row exceeds max_prompt_length={self.max_prompt_length} or "
                    f"max_response_length={self.max_response_length} under overflow='drop'",
                    file=self.files[0].name if len(self.files) == 1 else None,
                )
        tokens = sum(len(r.response_ids) for r in served)
        progress = epoch + (self._order.rows_before(epoch, start) + offset) / self.num_rows
        batch = ExpertBatch(
            prompt_ids=[r.prompt_ids for r in served],
            response_ids=[r.response_ids for r in served],
            quality=torch.tensor([r.quality for r in served], dtype=torch.float32)
            if self.has_quality
            else None,
            ref_logp=[r.ref_logp for r in served] if self.has_ref_logp else None,  # type: ignore[misc]
            data_source=[r.data_source for r in served],
            row_ids=[(r.file, r.row) for r in served],
            metrics={
                "expert_rows": float(n),
                "expert_tokens": float(tokens),
                "expert_prompt_tokens": float(sum(len(r.prompt_ids) for r in served)),
                "expert_truncated": float(counts["truncated"]),
                "expert_dropped": float(counts["dropped"]),
                "expert_epoch": float(progress),
            },
        )
        return _Built(n, cursor, (epoch, start, offset), counts, tokens, batch)

    def _commit(self, built: _Built) -> None:
        """Consume `built`: move the cursor past it and add its counters."""
        self._epoch, self._start, self._offset = built.end
        self.stats["rows_served"] += built.n
        self.stats["rows_read"] += built.counts["read"]
        self.stats["tokens_served"] += built.tokens
        for key in ("truncated", "prompt_truncated", "response_truncated", "dropped"):
            self.stats[key] += built.counts[key]
        self.stats["epochs_completed"] = built.end[0]

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The position and counters (JSON-serialisable); see the module docstring."""
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "window": self._order.window_units,
            "num_files": len(self.files),
            "num_rows": self.num_rows,
            "epoch": self._epoch,
            "unit_index": self._start,
            "offset": self._offset,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the buffer that saved `state` stopped.

        Raises ValueError if `state` was saved for other files, row groups, seed or shuffle
        settings, or is malformed. A prefetched batch is discarded.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not an expert buffer state of version {STATE_VERSION}: {state!r:.200}")
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                "expert buffer state was saved for different data or settings: saved for "
                f"seed={state.get('seed')}, shuffle={state.get('shuffle')}, window={state.get('window')}, "
                f"{state.get('num_files')} files, {state.get('num_rows')} rows; this buffer has "
                f"{self._describe()} (fingerprint {str(state.get('fingerprint'))[:12]} "
                f"!= {self.fingerprint[:12]})"
            )
        epoch, start, offset = int(state["epoch"]), int(state["unit_index"]), int(state["offset"])
        if epoch < 0 or not 0 <= start < self._order.num_units or start % self._order.window_units:
            raise ValueError(
                f"expert buffer state has an invalid position: epoch={epoch}, unit_index={start}"
            )
        if not 0 <= offset < self._order.window_rows(epoch, start):
            raise ValueError(f"expert buffer state has an invalid offset {offset} in its window")
        self._discard_prefetched()
        self._epoch, self._start, self._offset = epoch, start, offset
        self.stats = {key: int(state.get("stats", {}).get(key, 0)) for key in _STAT_KEYS}

    def close(self) -> None:
        """Stop prefetching; release open files and the decoded window."""
        self._discard_prefetched()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._segments, self._window, self._window_key = [], None, None
        self._reader.close()

    def __enter__(self) -> ExpertBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
