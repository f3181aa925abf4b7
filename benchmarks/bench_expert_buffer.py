"""Benchmark: stream a large expert parquet through `ExpertBuffer`, report rows/s and peak RSS.

Without --path, first writes a synthetic expert file of --size-mb (prompt/response schema with
a `ref_logp` column, many row groups), one row group at a time so the generator's own memory
stays flat. The streaming then runs in a fresh process, so its peak RSS is not the generator's:
it opens the buffer (tiny byte-level tokenizer: one token per byte), serves one row (so the
one-time set-up is done: libraries, thread pools, chat-template compilation, the first window),
measures RSS, serves `next_batch(--batch-size)` until the epoch is done, and reports the peak
RSS (VmHWM) and its growth over that baseline, plus the largest RSS seen in each half of
the epoch (equal halves = flat). The generator's growth is measured the same way, from its
first row group on.

    python benchmarks/bench_expert_buffer.py                       # 200 MB file in a temp dir
    python benchmarks/bench_expert_buffer.py --path data/expert.parquet --tokenizer MODEL_DIR
    python benchmarks/bench_expert_buffer.py --json                # one JSON line (for tests)

The synthetic `ref_logp` has one value per response byte + 1 (EOS), which matches only the
byte-level tiny tokenizer; with another --tokenizer use --no-ref-logp (or your own --path).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1 << 20


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def _max_rss_mb() -> float:
    """Peak RSS of this process. Linux: VmHWM, the high-water mark of this address space.
    (ru_maxrss is not used there: after a vfork+exec, e.g. from subprocess, it starts at the
    parent's peak, so a child started by a big process would report the parent's memory.)"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def generate(
    path: str | os.PathLike,
    size_mb: float = 200,
    *,
    rows_per_group: int = 64,
    prompt_chars: int = 200,
    response_chars: int = 2000,
    ref_logp: bool = True,
    seed: int = 0,
) -> dict:
    """Write a synthetic expert parquet of about `size_mb`; memory: one row group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)

    def text(n: int) -> str:  # incompressible ASCII: base64 of random bytes
        return base64.b64encode(rng.randbytes(n * 3 // 4 + 3)).decode()[:n]

    schema = pa.schema(
        [
            ("prompt", pa.string()),
            ("response", pa.string()),
            ("quality", pa.float32()),
            ("data_source", pa.string()),
        ]
        + ([("ref_logp", pa.list_(pa.float64()))] if ref_logp else [])
    )
    rows = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        while os.path.getsize(path) < size_mb * MB:  # each row group is on disk once written
            n = rows_per_group
            # vary lengths a little (+-10%) so token-length percentiles differ
            lengths = [int(response_chars * rng.uniform(0.9, 1.0)) for _ in range(n)]
            columns = {
                "prompt": pa.array([text(prompt_chars) for _ in range(n)]),
                "response": pa.array([text(k) for k in lengths]),
                "quality": pa.array(nprng.uniform(0.0, 1.0, n), type=pa.float32()),
                "data_source": pa.array(["synthetic"] * n),
            }
            if ref_logp:
                offsets = np.concatenate([[0], np.cumsum([k + 1 for k in lengths])]).astype(np.int32)
                values = pa.array(-nprng.exponential(1.0, int(offsets[-1])))
                columns["ref_logp"] = pa.ListArray.from_arrays(pa.array(offsets), values)
            table = pa.table(columns, schema=schema)
            writer.write_table(table, row_group_size=rows_per_group)
            if rows == 0:  # Arrow's one-time set-up (thread pools, codecs) is done by now
                rss_after_first = _rss_mb()
            rows += n
    return {
        "path": str(path),
        "rows": rows,
        "row_groups": -(-rows // rows_per_group),
        "file_mb": os.path.getsize(path) / MB,
        "rss_after_first_group_mb": rss_after_first,
    }


def stream(
    path: str,
    tokenizer_dir: str | None,
    *,
    batch_size: int = 64,
    window: int = 8,
    max_prompt_length: int = 512,
    max_response_length: int = 4096,
    max_rows: int | None = None,
    tokenizer_cache: int | None = None,
) -> dict:
    """Serve one epoch (or `max_rows`) of `path`; return throughput and memory figures."""
    from transformers import AutoTokenizer

    from chord.data import ExpertBuffer

    if tokenizer_dir is None:
        from chord.tiny_model import build_tokenizer

        tokenizer_dir = str(build_tokenizer(tempfile.mkdtemp(prefix="bench_tok_")))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer_cache is not None:
        # The Rust BPE model caches up to 10,000 pre-tokenized "words". The tiny tokenizer does
        # not split text into words, so every distinct prompt becomes one cached word (~75 MB
        # when full): memory of the tokenizer, bounded, not of the buffer. This isolates the buffer.
        tokenizer.backend_tokenizer.model._resize_cache(tokenizer_cache)
    buf = ExpertBuffer(
        path,
        tokenizer,
        max_prompt_length=max_prompt_length,
        max_response_length=max_response_length,
        shuffle_window_row_groups=window,
        seed=0,
    )
    buf.next_batch(1)  # warm up: first window decoded, tokenizer paths touched
    rss_before = _rss_mb()
    rows_goal = min(max_rows or buf.num_rows, buf.num_rows) - 1
    served, tokens = 1, 0
    rss_halves = [rss_before, rss_before]  # max sampled RSS in the first / second half of the stream
    start = time.perf_counter()
    while served < rows_goal + 1:
        batch = buf.next_batch(min(batch_size, rows_goal + 1 - served))
        served += len(batch)
        tokens += int(batch.metrics["expert_tokens"])
        half = int(served > (rows_goal + 1) // 2)
        rss_halves[half] = max(rss_halves[half], _rss_mb())
    seconds = time.perf_counter() - start
    peak = _max_rss_mb()
    file_mb = os.path.getsize(path) / MB if os.path.exists(path) else None
    return {
        "rows": served,
        "epoch_done": buf.epoch == 1,
        "seconds": seconds,
        "rows_per_s": (served - 1) / seconds,
        "response_tokens_per_s": tokens / seconds,
        "rss_before_mb": rss_before,
        "rss_max_first_half_mb": rss_halves[0],
        "rss_max_second_half_mb": rss_halves[1],
        "peak_rss_mb": peak,
        "peak_growth_mb": peak - rss_before,
        "file_mb": file_mb,
        "batch_size": batch_size,
        "window_row_groups": window,
        "tokenizer_cache": "default" if tokenizer_cache is None else tokenizer_cache,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="an existing expert parquet (default: generate one)")
    parser.add_argument("--size-mb", type=float, default=200.0, help="size of the generated file")
    parser.add_argument("--out-dir", help="where to write the generated file (default: a temp dir, removed)")
    parser.add_argument("--rows-per-group", type=int, default=64)
    parser.add_argument("--no-ref-logp", action="store_true", help="generate without the ref_logp column")
    parser.add_argument("--tokenizer", help="tokenizer dir (default: the tiny byte-level tokenizer)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=8, help="shuffle_window_row_groups")
    parser.add_argument("--max-rows", type=int, help="stop after this many rows (default: one epoch)")
    parser.add_argument(
        "--tokenizer-cache",
        type=int,
        help="resize the tokenizer's BPE word cache (0: off; default: as loaded)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--stream-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)

    if args.stream_only:
        result = stream(
            args.path,
            args.tokenizer,
            batch_size=args.batch_size,
            window=args.window,
            max_rows=args.max_rows,
            tokenizer_cache=args.tokenizer_cache,
        )
        print(json.dumps(result))
        return 0

    tmp = None
    generated = None
    path = args.path
    if path is None:
        out_dir = args.out_dir or (tmp := tempfile.mkdtemp(prefix="bench_expert_"))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = str(Path(out_dir) / "expert_bench.parquet")
        t0 = time.perf_counter()
        generated = generate(
            path, args.size_mb, rows_per_group=args.rows_per_group, ref_logp=not args.no_ref_logp
        )
        generated["seconds"] = time.perf_counter() - t0
        generated["peak_rss_mb"] = _max_rss_mb()
        generated["peak_growth_mb"] = generated["peak_rss_mb"] - generated["rss_after_first_group_mb"]
    try:
        cmd = [
            sys.executable,
            __file__,
            "--stream-only",
            "--path",
            path,
            "--batch-size",
            str(args.batch_size),
        ]
        cmd += ["--window", str(args.window)]
        if args.tokenizer:
            cmd += ["--tokenizer", args.tokenizer]
        if args.max_rows:
            cmd += ["--max-rows", str(args.max_rows)]
        if args.tokenizer_cache is not None:
            cmd += ["--tokenizer-cache", str(args.tokenizer_cache)]
        repo = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
        child = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        streamed = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if tmp is not None:
            Path(path).unlink(missing_ok=True)
            os.rmdir(tmp)
    result = {"generate": generated, "stream": streamed}
    if args.json:
        print(json.dumps(result))
        return 0
    if generated:
        g = generated
        print(
            f"generated {g['file_mb']:.1f} MB, {g['rows']:,} rows in {g['row_groups']} row groups, "
            f"{g['seconds']:.1f} s; generator peak RSS {g['peak_rss_mb']:.0f} MB "
            f"({g['peak_growth_mb']:.0f} MB above its RSS after the first row group)"
        )
    s = streamed
    print(
        f"streamed {s['rows']:,} rows (one epoch: {s['epoch_done']}) in {s['seconds']:.1f} s: "
        f"{s['rows_per_s']:,.0f} rows/s, {s['response_tokens_per_s']:,.0f} response tokens/s "
        f"(batch {s['batch_size']}, window {s['window_row_groups']} row groups, "
        f"tokenizer cache {s['tokenizer_cache']})"
    )
    print(
        f"RSS before streaming {s['rss_before_mb']:.0f} MB, peak {s['peak_rss_mb']:.0f} MB "
        f"(growth {s['peak_growth_mb']:.0f} MB = "
        f"{100 * s['peak_growth_mb'] / s['file_mb']:.1f}% of the file); "
        f"max RSS first half {s['rss_max_first_half_mb']:.0f} MB, "
        f"second half {s['rss_max_second_half_mb']:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
