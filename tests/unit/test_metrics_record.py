"""The resumable metrics record (recipe.train.record): every step once, in order, across resumes."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from verl.utils import tracking as verl_tracking

from recipe.train import record
from recipe.train.record import ResumableFileLogger, set_wandb_resume_env, trim_record


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _write(path, steps) -> None:
    path.write_text("".join(json.dumps({"step": s, "data": {"x": s}}) + "\n" for s in steps))


@pytest.fixture
def logger(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    return path


def test_trim_keeps_steps_up_to_the_resumed_one_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, [0, 1, 2, 3, 4])
    with open(path, "a") as f:
        f.write('{"step": 5, "da')  # killed mid-write
    assert trim_record(str(path), 3) == (4, 2)  # step 4 and the torn line dropped
    assert _steps(path) == [0, 1, 2, 3]
    assert trim_record(str(path), 0) == (0, 4)  # a fresh start empties it, as verl does
    assert path.read_text() == ""


def test_resume_after_a_crash_replaces_re_run_steps_and_appends(logger):
    first = ResumableFileLogger("p", "e")
    first.begin(0)
    for step in range(1, 6):  # crashed after logging step 5; last checkpoint at step 3
        first.log({"loss": float(step)}, step)
    first.fp.close()
    second = ResumableFileLogger("p", "e")
    second.begin(3)
    for step in range(4, 8):
        second.log({"loss": 10.0 * step}, step)
    second.finish()
    rows = [json.loads(line) for line in logger.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["data"]["loss"] for r in rows] == [1.0, 2.0, 3.0, 40.0, 50.0, 60.0, 70.0]


def test_a_second_record_of_the_resumed_step_is_merged_not_duplicated(logger):
    first = ResumableFileLogger("p", "e")
    first.begin(0)
    first.log({"val/acc": 0.1}, 0)
    first.log({"loss": 1.0}, 1)
    first.log({"loss": 2.0}, 2)
    first.finish()
    resumed = ResumableFileLogger("p", "e")
    resumed.begin(2)
    resumed.log({"val/acc": 0.5, "loss": 99.0}, 2)  # validation before training, at the resumed step
    resumed.log({"loss": 3.0}, 3)
    resumed.finish()
    rows = [json.loads(line) for line in logger.read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[2]["data"] == {"loss": 2.0, "val/acc": 0.5}  # first-logged values kept, new keys added


def test_logging_before_begin_is_an_error(logger):
    with pytest.raises(RuntimeError, match="begin"):
        ResumableFileLogger("p", "e").log({"a": 1.0}, 1)


def test_path_follows_verls_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path))
    assert record.record_path("proj", "exp") == str(tmp_path / "proj" / "exp.jsonl")


def test_install_makes_verls_tracking_build_the_resumable_logger(logger):
    _write(logger, [1, 2, 3])
    built: list[ResumableFileLogger] = []
    with record.install(built):
        tracking = verl_tracking.Tracking("p", "e", default_backend=["file"])
    assert verl_tracking.FileLogger is record._VerlFileLogger  # restored after the block
    assert len(built) == 1 and tracking.logger["file"] is built[0]
    assert _steps(logger) == [1, 2, 3]  # nothing truncated before the trainer knows the step
    built[0].begin(2)
    tracking.log({"a": 1.0}, step=3)
    tracking.finish()
    assert _steps(logger) == [1, 2, 3]
    assert json.loads(logger.read_text().splitlines()[-1])["data"] == {"a": 1.0}


def test_wandb_run_id_is_kept_in_the_checkpoint_folder(tmp_path):
    cfg = OmegaConf.create(
        {
            "trainer": {
                "logger": ["console", "wandb"],
                "default_local_dir": str(tmp_path),
                "resume_mode": "auto",
            }
        }
    )
    env: dict[str, str] = {}
    run_id = set_wandb_resume_env(cfg, env)
    assert env == {"WANDB_RUN_ID": run_id, "WANDB_RESUME": "allow"}
    again: dict[str, str] = {}
    assert set_wandb_resume_env(cfg, again) == run_id  # the restarted job continues the same run
    cfg.trainer.resume_mode = "disable"
    assert set_wandb_resume_env(cfg, {}) != run_id
    user = {"WANDB_RUN_ID": "mine"}
    assert set_wandb_resume_env(cfg, user) == "mine"
    cfg.trainer.logger = ["console", "file"]
    assert set_wandb_resume_env(cfg, {}) is None
