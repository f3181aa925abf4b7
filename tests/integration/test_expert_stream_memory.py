"""Streaming a ~200 MB expert parquet through ExpertBuffer keeps memory flat.

Runs benchmarks/bench_expert_buffer.py: it writes the file one row group at a time, then streams
one full epoch with next_batch in a fresh process and reports its peak RSS (VmHWM) there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_expert_buffer.py"


def test_streaming_a_200mb_file_keeps_rss_growth_far_below_its_size(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--size-mb", "200", "--out-dir", str(tmp_path), "--json"]
    # window 4 x 64-row groups (~5 MB of arrow data) and 32-row batches: a trainer-like step
    cmd += ["--window", "4", "--batch-size", "32"]
    # The tiny tokenizer does not split text into words, so its Rust BPE cache (10,000 entries)
    # would fill with whole prompts (~75 MB, bounded): tokenizer memory, not the buffer's. Off.
    cmd += ["--tokenizer-cache", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    gen, run = result["generate"], result["stream"]
    file_mb = gen["file_mb"]
    assert 190 <= file_mb <= 230 and gen["row_groups"] >= 100
    assert run["rows"] == gen["rows"] and run["epoch_done"]  # every row of the file was served
    assert gen["peak_growth_mb"] < 0.25 * file_mb, gen  # the generator writes in chunks
    assert run["peak_growth_mb"] < 0.25 * file_mb, run
    # flat: the second half of the file costs about what the first did (allocator noise of a few
    # MB allowed; holding the rows served would add ~100 MB here)
    assert run["rss_max_second_half_mb"] <= run["rss_max_first_half_mb"] + 0.1 * file_mb, run
