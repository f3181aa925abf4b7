"""Checkpoint completeness and the resume point (recipe.train.checkpoints), on fake folders."""

from __future__ import annotations

import pytest

from recipe.train.checkpoints import (
    STATE_FILE,
    TRACKER_FILE,
    IncompleteCheckpointError,
    missing_parts,
    resolve_resume,
    write_state,
)


def _checkpoint(root, step: int, *, complete: bool = True):
    """A folder laid out as verl + chord write it (actor shards, data.pt, then chord_state.json)."""
    folder = root / f"global_step_{step}"
    (folder / "actor").mkdir(parents=True)
    for rank in range(2):
        (folder / "actor" / f"model_world_size_2_rank_{rank}.pt").write_bytes(b"w" * (10 + rank))
    (folder / "data.pt").write_bytes(b"d")
    if complete:
        write_state(str(folder), {"global_steps": step})
    return folder


def _track(root, text: str) -> None:
    (root / TRACKER_FILE).write_text(text)


def test_state_file_is_the_manifest_of_the_folder(tmp_path):
    folder = _checkpoint(tmp_path, 2)
    assert missing_parts(str(folder)) == []
    shard = folder / "actor" / "model_world_size_2_rank_1.pt"
    shard.write_bytes(b"w")  # truncated
    assert missing_parts(str(folder)) == ["actor/model_world_size_2_rank_1.pt (size 1, saved 11)"]
    shard.unlink()
    assert missing_parts(str(folder)) == ["actor/model_world_size_2_rank_1.pt"]
    assert not list(folder.glob(f"{STATE_FILE}.*"))  # no temporary file left behind


def test_a_folder_without_state_file_did_not_finish_saving(tmp_path):
    folder = _checkpoint(tmp_path, 4, complete=False)
    assert missing_parts(str(folder)) == [f"{STATE_FILE} (written last: the save did not finish)"]


def test_auto_uses_the_trackers_folder_when_complete(tmp_path):
    _checkpoint(tmp_path, 2)
    folder = _checkpoint(tmp_path, 4)
    _track(tmp_path, "4")
    point = resolve_resume(str(tmp_path), "auto")
    assert (point.folder, point.note, point.step) == (str(folder), None, 4)


def test_crash_between_tracker_and_state_file_falls_back_to_the_previous_checkpoint(tmp_path):
    previous = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, complete=False)
    _track(tmp_path, "4")
    point = resolve_resume(str(tmp_path), "auto")
    assert point.folder == str(previous) and point.step == 2
    assert "global_step_4, which is incomplete" in point.note and "chord_state.json" in point.note


def test_crash_during_the_save_keeps_the_tracker_on_the_previous_checkpoint(tmp_path):
    previous = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, complete=False)  # actor shards written, tracker not yet
    _track(tmp_path, "2")
    assert resolve_resume(str(tmp_path), "auto").folder == str(previous)


def test_a_torn_tracker_uses_the_newest_complete_folder(tmp_path):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    _track(tmp_path, "")
    point = resolve_resume(str(tmp_path), "auto")
    assert point.folder == str(newest) and "unreadable" in point.note


def test_retention_leftovers_are_skipped(tmp_path):
    # verl's max_ckpt_to_keep deletes only global_step_<K>/actor: chord_state.json stays behind
    old = _checkpoint(tmp_path, 2)
    for shard in (old / "actor").iterdir():
        shard.unlink()
    _checkpoint(tmp_path, 4, complete=False)
    _track(tmp_path, "4")
    with pytest.raises(IncompleteCheckpointError) as err:
        resolve_resume(str(tmp_path), "auto")
    message = str(err.value)
    assert "global_step_4" in message and "trainer.resume_mode=disable" in message


def test_first_save_never_finished_starts_from_scratch(tmp_path):
    _checkpoint(tmp_path, 2, complete=False)
    point = resolve_resume(str(tmp_path), "auto")
    assert point.folder is None and "starting from scratch" in point.note
    assert resolve_resume(str(tmp_path / "nothing"), "auto").folder is None


def test_resume_path_to_an_incomplete_folder_names_what_to_pass_instead(tmp_path):
    good = _checkpoint(tmp_path, 2)
    bad = _checkpoint(tmp_path, 4, complete=False)
    with pytest.raises(IncompleteCheckpointError) as err:
        resolve_resume(str(tmp_path), "resume_path", str(bad))
    message = str(err.value)
    assert f"checkpoint {bad} is incomplete" in message
    assert f"trainer.resume_from_path={good} instead" in message
    assert resolve_resume(str(tmp_path), "resume_path", str(good)).folder == str(good)


def test_disable_ignores_checkpoints(tmp_path):
    _checkpoint(tmp_path, 2)
    _track(tmp_path, "2")
    assert resolve_resume(str(tmp_path), "disable").folder is None
