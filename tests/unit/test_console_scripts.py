"""Every console script of setup.py starts and prints its help, as installed in the venv.

Run as the installed scripts (not `python -m`): there the repository root is not on sys.path,
and `recipe` resolves through the editable install next to the `recipe/` folder that the verl
wheel also installs, so a module that relies on `recipe/__init__.py` would fail only here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = (REPO / "setup.py").read_text(encoding="utf-8")
SCRIPTS = re.findall(r'"(chord-[a-z0-9-]+)=([\w.]+):(\w+)"', SETUP)


def test_setup_declares_the_console_scripts():
    names = {name for name, _, _ in SCRIPTS}
    assert {"chord-train", "chord-demo", "chord-eval", "chord-compare", "chord-submit"} <= names


@pytest.mark.parametrize(("name", "module", "func"), SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_console_script_help(name, module, func, tmp_path):
    script = Path(sys.executable).parent / name
    cmd = (
        [str(script), "--help"]
        if script.exists()
        else [sys.executable, "-c", f"from {module} import {func}; {func}()", "--help"]
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage" in out.stdout.lower() or "powered by hydra" in out.stdout.lower(), out.stdout[:500]


def test_main_chord_alias_still_runs():
    out = subprocess.run(
        [sys.executable, "-m", "recipe.main_chord", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "powered by hydra" in out.stdout.lower()
