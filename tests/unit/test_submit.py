"""recipe/launch/submit.py: what a Ray job uploads, and the command and environment it runs with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recipe.launch.submit import (
    DEFAULT_EXCLUDES,
    SubmitError,
    build_entrypoint,
    build_excludes,
    build_runtime_env,
    checkpoint_dir_warning,
    follow_instructions,
    main,
    normalize_address,
    parse_env_vars,
    planned_upload,
)

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    return root


@pytest.fixture
def no_gitignore(monkeypatch):
    """Ray would also honour .gitignore; these tests check our own list alone."""
    monkeypatch.setenv("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "1")


def test_upload_leaves_out_checkpoints_weights_data_envs_and_caches(tmp_path, no_gitignore):
    kept = [
        "setup.py",
        "conf/cpu_tiny.yaml",
        "recipe/launch/submit.py",
        "chord/data/reader.py",  # a code folder named data is not /data/
        "chord/prepare/models.py",
        "scripts/slurm/chord.sbatch",
    ]
    dropped = [
        "checkpoints/global_step_10/model.safetensors",
        "outputs/demo/metrics.jsonl",
        "data/train.parquet",
        "data/raw/notes.txt",
        "models/qwen/config.json",
        ".venv/bin/python",
        ".git/HEAD",
        "recipe/__pycache__/submit.cpython-311.pyc",
        "wandb/run-1/files/log.txt",
        "results/step_3/pytorch_model.bin",
        "results/opt.pt",
        "exp/eval.parquet",
        "exp/shard.arrow",
        "chord_rl.egg-info/PKG-INFO",
        ".pytest_cache/v/cache",
    ]
    root = _tree(tmp_path, kept + dropped)
    assert [path for path, _ in planned_upload(root, build_excludes(env={}))] == sorted(kept)


def test_user_excludes_extend_the_defaults_from_flag_and_environment(tmp_path, no_gitignore):
    root = _tree(tmp_path, ["a.py", "notebooks/n.ipynb", "big/blob.dat"])
    excludes = build_excludes(["big/"], env={"CHORD_SUBMIT_EXCLUDES": "notebooks/, *.tmp"})
    assert excludes[: len(DEFAULT_EXCLUDES)] == list(DEFAULT_EXCLUDES)
    assert excludes[len(DEFAULT_EXCLUDES) :] == ["notebooks/", "*.tmp", "big/"]
    assert [path for path, _ in planned_upload(root, excludes)] == ["a.py"]
    assert build_excludes([".git/"], env={}) == list(DEFAULT_EXCLUDES)  # no repeats


def test_upload_sizes_are_the_file_sizes(tmp_path, no_gitignore):
    (tmp_path / "a.py").write_bytes(b"x" * 1234)
    assert planned_upload(tmp_path, build_excludes(env={})) == [("a.py", 1234)]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_every_tracked_file_of_this_repository_is_uploaded(no_gitignore):
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    tracked = {path for path in tracked if (REPO / path).is_file()}
    if not tracked:
        pytest.skip("not a git checkout")
    uploaded = {path for path, _ in planned_upload(REPO, build_excludes(env={}))}
    assert tracked - uploaded == set()  # no pattern drops code, configs or scripts


def test_entrypoint_quotes_arguments_and_places_cluster_defaults_for_hydra():
    assert build_entrypoint("chord-train", ["--config-name", "p", "x='a b'"], nnodes=2, gpus_per_node=8) == (
        "chord-train --config-name p trainer.nnodes=2 trainer.n_gpus_per_node=8 'x='\"'\"'a b'\"'\"''"
    )
    # the user's own value wins over --nnodes
    assert build_entrypoint("chord-train", ["trainer.nnodes=4"], nnodes=2) == "chord-train trainer.nnodes=4"
    assert build_entrypoint("python probe.py --v", []) == "python probe.py --v"
    with pytest.raises(SubmitError, match="empty"):
        build_entrypoint("  ", [])


def test_env_pairs_take_values_or_inherit_them_and_reject_bad_names():
    assert parse_env_vars(["A=1", "B=x=y", "C="], environ={}) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env_vars(["HOME"], environ={"HOME": "/h"}) == {"HOME": "/h"}
    with pytest.raises(SubmitError, match="not set in this shell"):
        parse_env_vars(["MISSING"], environ={})
    with pytest.raises(SubmitError, match="KEY=VALUE"):
        parse_env_vars(["1BAD=x"], environ={})


def test_runtime_env_ships_the_working_dir_with_excludes_and_env_vars():
    env = build_runtime_env(Path("/repo"), ["a/"], {"K": "v"})
    assert env == {"working_dir": "/repo", "excludes": ["a/"], "env_vars": {"K": "v"}}
    assert "env_vars" not in build_runtime_env(Path("/repo"), [], {})


def test_address_defaults_and_scheme():
    assert normalize_address(None, {}) == "http://127.0.0.1:8265"
    assert normalize_address(None, {"RAY_ADDRESS": "10.0.0.1:8265"}) == "http://10.0.0.1:8265"
    env = {"RAY_API_SERVER_ADDRESS": "https://ray.example/", "RAY_ADDRESS": "x"}
    assert normalize_address(None, env) == "https://ray.example"
    assert normalize_address("http://h:1", env) == "http://h:1"


def test_instructions_name_the_log_commands_and_the_driver_log():
    text = follow_instructions("raysubmit_1", "http://h:8265")
    assert "ray job logs -f raysubmit_1 --address http://h:8265" in text
    assert "/tmp/ray/session_latest/logs/job-driver-raysubmit_1.log" in text


def test_dry_run_prints_the_job_and_submits_nothing(tmp_path, capsys, no_gitignore):
    _tree(tmp_path, ["run.py", "checkpoints/x.safetensors"])
    rc = main(["--dry-run", f"--working-dir={tmp_path}", "--address=http://nowhere:1", "--env", "A=1",
               "a.b=1", "--", "--config-name", "p"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 files" in out
    assert "entrypoint: chord-train --config-name p a.b=1" in out
    assert "'env_vars': {'A': '1'}" in out


def test_option_before_dash_dash_is_refused_with_a_hint(capsys):
    assert main(["--dry-run", "config-name"]) == 2
    assert "put entrypoint options after `--`" in capsys.readouterr().err


def test_relative_or_missing_checkpoint_dir_for_chord_train_is_flagged():
    assert "not an absolute path" in checkpoint_dir_warning("chord-train", ["a=1"])
    assert checkpoint_dir_warning("chord-train", ["trainer.default_local_dir=ckpt"]) is not None
    assert checkpoint_dir_warning("/venv/bin/chord-train", ["trainer.default_local_dir=/shared/c"]) is None
    assert checkpoint_dir_warning("python", []) is None  # not the trainer


def test_the_real_checkout_ships_every_module_and_config(no_gitignore):
    """chord-submit's working dir holds every module of chord/ and recipe/ (all sub-packages) and conf/."""
    repo = Path(__file__).resolve().parents[2]
    shipped = {path for path, _ in planned_upload(repo, build_excludes(env={}))}
    needed = {
        str(p.relative_to(repo))
        for folder in ("chord", "recipe", "conf")
        for p in (repo / folder).rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
    }
    assert "recipe/train/main.py" in needed and "recipe/eval/data.py" in needed
    assert needed - shipped == set()
