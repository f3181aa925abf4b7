"""Checkpoint folders that resume right, or not at all.

A checkpoint is `<default_local_dir>/global_step_<K>/`: verl's files (actor shards, `data.pt`,
...), then the tracker `latest_checkpointed_iteration.txt` (verl writes it after its files),
then `chord_state.json`, written last and atomically (temporary file, fsync, rename). Its
`files` entry lists every other file of the folder with its size, so it is the folder's commit
marker and manifest: a folder is *complete* when it has `chord_state.json` and every listed
file with that size. A crash at any point leaves the previous complete folder intact.

`resolve_resume(root, mode, resume_from_path)` picks the folder to resume from, as verl would,
but only a complete one:
- `resume_mode=auto`: the tracker's folder when complete; otherwise (the crash came between
  the tracker and `chord_state.json`, the tracker is torn or missing, verl's retention deleted
  files) the newest complete folder not after the tracker's step, with a note saying so; none:
  `IncompleteCheckpointError` naming the folder and what to pass (without any tracker, i.e.
  the first save never finished, a fresh start, as verl does);
- `resume_mode=resume_path`: that folder, or `IncompleteCheckpointError` naming what is missing
  and which folder to pass instead.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from recipe.train.stops import ChordStop

STATE_FILE = "chord_state.json"
TRACKER_FILE = "latest_checkpointed_iteration.txt"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


class IncompleteCheckpointError(ChordStop):
    """A checkpoint folder that cannot be resumed from; the message says what to pass instead."""


def write_state(folder: str, state: dict[str, Any]) -> None:
    """Write `chord_state.json` into `folder` (complete, apart from it): the state plus the manifest."""
    manifest = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, folder)
            if rel != STATE_FILE and not rel.startswith(f"{STATE_FILE}."):
                manifest[rel] = os.path.getsize(path)
    tmp = os.path.join(folder, f"{STATE_FILE}.tmp")
    with open(tmp, "w") as f:
        json.dump({**state, "files": manifest}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, STATE_FILE))
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, STATE_FILE)) as f:
        return json.load(f)


def missing_parts(folder: str) -> list[str]:
    """What keeps `folder` from being a complete checkpoint (empty: complete)."""
    if not os.path.isdir(folder):
        return ["the folder itself"]
    try:
        state = read_state(folder)
    except FileNotFoundError:
        return [f"{STATE_FILE} (written last: the save did not finish)"]
    except (OSError, ValueError) as exc:
        return [f"{STATE_FILE} is unreadable ({exc})"]
    missing = []
    for rel, size in sorted(state.get("files", {}).items()):
        path = os.path.join(folder, rel)
        if not os.path.exists(path):
            missing.append(rel)
        elif os.path.getsize(path) != size:
            missing.append(f"{rel} (size {os.path.getsize(path)}, saved {size})")
    return missing


def step_folders(root: str) -> list[tuple[int, str]]:
    """`(step, path)` of every `global_step_<K>` folder under `root`, by step."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _STEP_DIR.match(name)
        if match and os.path.isdir(os.path.join(root, name)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return sorted(found)


def read_tracker(root: str) -> int | None:
    """The tracker's step; None if it is missing or torn."""
    try:
        with open(os.path.join(root, TRACKER_FILE)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ResumePoint:
    folder: str | None  # None: start from scratch
    note: str | None = None  # set when this is not the folder verl would have picked

    @property
    def step(self) -> int:
        return int(_STEP_DIR.match(os.path.basename(self.folder)).group(1)) if self.folder else 0


def _latest_complete(root: str, at_most: int | None) -> str | None:
    for step, path in reversed(step_folders(root)):
        if (at_most is None or step <= at_most) and not missing_parts(path):
            return path
    return None


def _instead(root: str, below: int | None = None) -> str:
    best = _latest_complete(root, below)
    if best is not None:
        return f"pass trainer.resume_mode=resume_path trainer.resume_from_path={best} instead"
    return f"no complete checkpoint is in {root}: pass trainer.resume_mode=disable to start over"


def resolve_resume(root: str, mode: str, resume_from_path: str | None = None) -> ResumePoint:
    """The complete folder to resume from (see the module docstring)."""
    root = os.path.abspath(root)
    if mode == "disable":
        return ResumePoint(None)
    if mode == "resume_path":
        folder = os.path.abspath(str(resume_from_path))
        missing = missing_parts(folder)
        if missing:
            raise IncompleteCheckpointError(
                f"checkpoint {folder} is incomplete (missing: {', '.join(missing[:5])}); "
                + _instead(os.path.dirname(folder))
            )
        return ResumePoint(folder)
    if mode != "auto":
        raise ValueError(f"trainer.resume_mode: expected auto, resume_path or disable, got {mode!r}")
    tracker = read_tracker(root)
    tracker_exists = os.path.exists(os.path.join(root, TRACKER_FILE))
    folders = step_folders(root)
    if tracker is not None:
        folder = os.path.join(root, f"global_step_{tracker}")
        missing = missing_parts(folder)
        if not missing:
            return ResumePoint(folder)
        problem = f"the tracker names {folder}, which is incomplete (missing: {', '.join(missing[:5])})"
    elif tracker_exists:
        problem = f"the tracker {os.path.join(root, TRACKER_FILE)} is unreadable"
    elif folders:
        problem = f"{root} has checkpoint folders but no tracker {TRACKER_FILE}"
    else:
        return ResumePoint(None)
    best = _latest_complete(root, tracker)
    if best is not None:
        return ResumePoint(best, note=f"{problem}; resuming from {best}, the newest complete checkpoint")
    if tracker is None and not tracker_exists:  # the first save never finished: verl's fresh start
        incomplete = ", ".join(os.path.basename(p) for _, p in folders)
        return ResumePoint(None, note=f"{problem} and none is complete ({incomplete}): starting from scratch")
    raise IncompleteCheckpointError(f"{problem}; " + _instead(root, tracker))


def choose_resume_point(config: Any) -> ResumePoint:
    """`resolve_resume` for verl's `trainer` section; when the folder is not the one verl would
    pick, say so and point verl at it (`resume_mode=resume_path`)."""
    from omegaconf import open_dict

    trainer = config.trainer
    point = resolve_resume(trainer.default_local_dir, trainer.resume_mode, trainer.get("resume_from_path"))
    if point.note:
        print(f"chord: {point.note}", flush=True)
        if point.folder is not None:
            with open_dict(trainer):
                trainer.resume_mode = "resume_path"
                trainer.resume_from_path = point.folder
    return point


def check_expert_files(
    folder: str, state: dict[str, Any], files: list[str], schema: str, accept: bool
) -> list[str]:
    """Compare the expert files with the fingerprints `state` saved; stop on a change unless
    `accept` (`chord.expert.accept_changed_files`). Returns the changes."""
    from chord.data.fingerprint import file_fingerprints, fingerprint_changes
    from recipe.train.stops import ExpertDataChangedStop

    saved = state.get("expert_files")
    if saved is None:  # written before fingerprints were recorded: nothing to compare
        return []
    changes = fingerprint_changes(saved, file_fingerprints(files, schema))
    if changes and not accept:
        raise ExpertDataChangedStop(
            f"chord.expert.files changed since checkpoint {folder} was written: "
            + "; ".join(changes)
            + ". Restore the files, or pass chord.expert.accept_changed_files=true to continue on "
            "the new data (the expert stream then restarts from its beginning)"
        )
    for change in changes:
        print(
            f"chord: accepted changed expert data (chord.expert.accept_changed_files): {change}", flush=True
        )
    return changes
