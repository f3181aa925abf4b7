"""The metrics record (verl's `file` logger backend) survives resumes: one record per step.

verl's `FileLogger` (`verl/utils/tracking.py`) opens its JSONL file with "wb", so every restart
erases the history. `ResumableFileLogger` is that backend with one change of contract:

- it opens nothing until the trainer knows where it resumes (`begin(step)`, called after the
  checkpoint is loaded); then records of steps <= `step` are kept, later ones dropped (those
  steps are re-run), and new records are appended. `step = 0` (a fresh start) empties the file,
  as verl does;
- a record for the step of the previous record (on resume: the validation before training, at
  the resumed step) is merged into that record (keys already there keep their values), so the
  file holds every step exactly once, in order;
- a torn last line (the job was killed mid-write) is dropped at `begin`;
- `after_log(step)` is called once a record is on disk (the trainer commits the checkpoint of
  that step only then, so a checkpoint never runs ahead of the record).

The file's path follows verl's rule (`VERL_FILE_LOGGER_PATH`, else
`$VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl`). `install(trainer)` puts the class in
place of verl's `FileLogger` for the duration of `fit()` (the module attribute verl's `Tracking`
looks up when "file" is in `trainer.logger`); verl's source is not touched.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from verl.utils import tracking as verl_tracking

_VerlFileLogger = verl_tracking.FileLogger


def record_path(project_name: str, experiment_name: str) -> str:
    """The JSONL path verl's `FileLogger` would use."""
    path = os.getenv("VERL_FILE_LOGGER_PATH")
    if path is None:
        root = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
        path = os.path.join(root, project_name, f"{experiment_name}.jsonl")
    return path


def trim_record(path: str, keep_through_step: int) -> tuple[int, int]:
    """Keep the records of steps <= `keep_through_step` (all dropped if it is 0); atomic rewrite.

    Lines that are not a JSON record with an integer `step` (a torn last line) are dropped.
    Returns (records kept, records dropped).
    """
    if not os.path.exists(path):
        return 0, 0
    kept: list[bytes] = []
    dropped = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                dropped += 1
                continue
            if keep_through_step > 0 and isinstance(step, int) and step <= keep_through_step:
                kept.append(line if line.endswith(b"\n") else line + b"\n")
            else:
                dropped += 1
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(kept), dropped


def _last_record(path: str) -> tuple[int, int | None, dict | None]:
    """(byte offset where the last line starts, its step, its data) of a trimmed record file."""
    with open(path, "rb") as f:
        content = f.read()
    if not content:
        return 0, None, None
    start = content.rstrip(b"\n").rfind(b"\n") + 1
    record = json.loads(content[start:])
    return start, record["step"], record.get("data", {})


class ResumableFileLogger(_VerlFileLogger):
    """verl's `file` backend, appending after the resumed step instead of truncating."""

    def __init__(
        self, project_name: str, experiment_name: str, after_log: Callable[[int], None] | None = None
    ):
        # verl's __init__ opens the file with "wb": not called on purpose (see the module docstring)
        self.project_name = project_name
        self.experiment_name = experiment_name
        self.filepath = record_path(project_name, experiment_name)
        self.fp = None
        self._last_offset = 0
        self._last_step: int | None = None
        self._last_data: dict | None = None
        self.after_log = after_log

    def begin(self, step: int) -> None:
        """Keep the records of steps <= `step` and open the file for appending."""
        directory = os.path.dirname(os.path.abspath(self.filepath))
        os.makedirs(directory, exist_ok=True)
        kept, dropped = trim_record(self.filepath, step)
        if step > 0:
            print(
                f"chord: metrics record {self.filepath}: resuming after step {step}, kept {kept} "
                f"records, dropped {dropped} (steps that are re-run)"
            )
        else:
            print(f"Creating file logger at {os.path.abspath(self.filepath)}")
        self.fp = open(self.filepath, "ab", buffering=0)
        if kept:
            self._last_offset, self._last_step, self._last_data = _last_record(self.filepath)
        else:
            self._last_offset, self._last_step, self._last_data = 0, None, None

    def log(self, data: dict[str, Any], step: int) -> None:
        if self.fp is None:
            raise RuntimeError(
                f"{self.filepath}: the metrics record was written before the trainer said where it "
                "resumes (ResumableFileLogger.begin)"
            )
        if step == self._last_step:
            # one record per step: merge, keeping the values that were logged first
            data = {**data, **(self._last_data or {})}
            os.ftruncate(self.fp.fileno(), self._last_offset)
        else:
            self._last_offset = os.fstat(self.fp.fileno()).st_size
        line = orjson.dumps({"step": step, "data": data}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        self.fp.write(line)
        self._last_step, self._last_data = step, json.loads(line)["data"]
        if self.after_log is not None:
            self.after_log(step)

    def finish(self) -> None:
        if self.fp is not None:
            self.fp.close()
            self.fp = None


@contextlib.contextmanager
def install(
    loggers: list[ResumableFileLogger], after_log: Callable[[int], None] | None = None
) -> Iterator[None]:
    """Within the block, verl's `Tracking` builds `ResumableFileLogger`s for the "file" backend
    (each one appended to `loggers`, for the trainer to call `begin` on)."""

    def factory(project_name: str, experiment_name: str) -> ResumableFileLogger:
        logger = ResumableFileLogger(project_name, experiment_name, after_log)
        loggers.append(logger)
        return logger

    saved = verl_tracking.FileLogger
    verl_tracking.FileLogger = factory
    try:
        yield
    finally:
        verl_tracking.FileLogger = saved


WANDB_RUN_ID_FILE = "wandb_run_id.txt"


def set_wandb_resume_env(config: Any, environ: dict[str, str] | None = None) -> str | None:
    """With "wandb" in `trainer.logger`: one wandb run per checkpoint folder, resumed on restart.

    verl's `Tracking` calls `wandb.init` without a run id; wandb reads `WANDB_RUN_ID` and
    `WANDB_RESUME` from the environment. Unless the user set them, the id is kept in
    `<default_local_dir>/wandb_run_id.txt` (created on the first start, or anew with
    `trainer.resume_mode=disable`) and `WANDB_RESUME=allow`. wandb keeps the steps it already
    has: steps re-run after the resumed checkpoint are not logged to it twice.
    Returns the id used (None without wandb).
    """
    environ = os.environ if environ is None else environ
    loggers = config.trainer.logger
    loggers = [loggers] if isinstance(loggers, str) else list(loggers)
    if "wandb" not in loggers:
        return None
    if "WANDB_RUN_ID" not in environ:
        import uuid

        root = str(config.trainer.default_local_dir)
        path = os.path.join(root, WANDB_RUN_ID_FILE)
        if os.path.exists(path) and config.trainer.resume_mode != "disable":
            with open(path) as f:
                run_id = f.read().strip()
        else:
            os.makedirs(root, exist_ok=True)
            run_id = uuid.uuid4().hex[:16]
            with open(path, "w") as f:
                f.write(run_id + "\n")
        environ["WANDB_RUN_ID"] = run_id
    environ.setdefault("WANDB_RESUME", "allow")
    return environ["WANDB_RUN_ID"]
