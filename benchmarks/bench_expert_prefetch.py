"""What the expert buffer's prefetch takes off the trainer's critical path.

The trainer calls `ExpertBuffer.next_batch(n)` once per step; the rest of the step (rollout,
log-probs, update) is simulated by sleeping `--step-s` seconds, during which a prefetching
buffer reads and tokenises the next batch on its background thread. Reported per mode: the
median and max time `next_batch` kept the caller waiting (the measured steps, after the first),
the peak RSS of a fresh process, and the load average. Modes alternate (off, on, on, off, ...)
for `--repeats` rounds, each in a fresh process.

Data: the synthetic expert parquet of `bench_expert_buffer.py` (200-char prompts, ~2,000-char
responses, `ref_logp`), tokenised with the tiny byte-level tokenizer (one token per byte).

    python benchmarks/bench_expert_prefetch.py --rows 64 --steps 12 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_expert_buffer import _max_rss_mb, generate  # noqa: E402


def serve(path: str, tokenizer_dir: str, *, prefetch: bool, rows: int, steps: int, step_s: float) -> dict:
    """In this process: `steps` x (next_batch(rows), then sleep step_s); the caller's waits."""
    from transformers import AutoTokenizer

    from chord.data import ExpertBuffer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    buffer = ExpertBuffer(
        path, tokenizer, max_prompt_length=512, max_response_length=4096, seed=0, prefetch=prefetch
    )
    if prefetch:
        buffer.prefetch(rows)  # as the trainer does while its workers start
    waits, fingerprints = [], []
    for _ in range(steps):
        start = time.perf_counter()
        batch = buffer.next_batch(rows)
        waits.append(time.perf_counter() - start)
        fingerprints.append(zlib.crc32(repr(batch.row_ids).encode()))
        time.sleep(step_s)
    buffer.close()
    return {"waits": waits, "rows": fingerprints, "peak_rss_mb": _max_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="expert rows per step")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--step-s", type=float, default=1.0, help="simulated rest of the step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size-mb", type=float, default=20.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the child process: JSON arguments
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(**json.loads(args.serve))))
        return
    from chord.tiny_model import build_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="bench_prefetch_"))
    path = tmp / "expert.parquet"
    generate(path, args.size_mb)
    tokenizer_dir = str(build_tokenizer(tmp / "tok"))
    results: dict[str, list[dict]] = {"off": [], "on": []}
    for rep in range(args.repeats):
        for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
            spec = dict(
                path=str(path), tokenizer_dir=tokenizer_dir, prefetch=mode == "on",
                rows=args.rows, steps=args.steps, step_s=args.step_s,
            )  # fmt: skip
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--serve", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["load"] = (load, os.getloadavg()[0])
            results[mode].append(run)
    same = all(r["rows"] == results["off"][0]["rows"] for runs in results.values() for r in runs)
    loads = [x for runs in results.values() for r in runs for x in r["load"]]
    print(f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}; same rows in every run: {same}")
    print(f"{args.rows} rows per step, {args.steps} steps, rest of the step {args.step_s} s\n")
    print("| prefetch | wait per step, median (run medians) | wait, max | peak RSS MB |")
    print("|---|---|---|---|")
    for mode, runs in results.items():
        waits = [w for r in runs for w in r["waits"][1:]]
        medians = [statistics.median(r["waits"][1:]) for r in runs]
        rss = [r["peak_rss_mb"] for r in runs]
        print(
            f"| {mode} | {statistics.median(waits) * 1e3:.1f} ms ({min(medians) * 1e3:.1f}-"
            f"{max(medians) * 1e3:.1f}) | {max(waits) * 1e3:.1f} ms | {statistics.median(rss):.0f} |"
        )


if __name__ == "__main__":
    main()
