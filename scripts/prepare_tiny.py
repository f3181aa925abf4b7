"""Prepare the tiny bundled arithmetic task (train/val/expert parquet).

A thin wrapper of the console script; run: python scripts/prepare_tiny.py --help
"""

import sys
from pathlib import Path

try:
    from chord.prepare.tiny_task import main
except ImportError:  # not installed: use the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chord.prepare.tiny_task import main

if __name__ == "__main__":
    main()
