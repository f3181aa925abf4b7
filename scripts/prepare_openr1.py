"""Prepare OpenR1-Math-220k -> expert + RL prompt parquet.

A thin wrapper of the console script; run: python scripts/prepare_openr1.py --help
"""

import sys
from pathlib import Path

try:
    from chord.prepare.openr1 import main
except ImportError:  # not installed: use the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chord.prepare.openr1 import main

if __name__ == "__main__":
    main()
