"""`chord` is the algorithm library: importing any of it must not pull in Ray or verl."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "chord.losses",
    "chord.schedules",
    "chord.advantages",
    "chord.data",
    "chord.rewards",
    "chord.metrics",
    "chord.prepare.tiny_task",
    "chord.tiny_model",
]


@pytest.mark.parametrize("module", MODULES)
def test_chord_module_imports_neither_ray_nor_verl(module):
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'verl')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"
