"""Prepare ToolACE data.json -> tool-call RL prompts + expert rows.

A thin wrapper of the console script; run: python scripts/prepare_toolace.py --help
"""

import sys
from pathlib import Path

try:
    from chord.prepare.toolace import main
except ImportError:  # not installed: use the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chord.prepare.toolace import main

if __name__ == "__main__":
    main()
