"""HPT, SRFT and ReLIFT through the real verl trainer on CPU (cpu_tiny: 2 FSDP2 ranks, hf rollout).

Three steps of each method with its metrics present; ReLIFT resumed from its step-2 checkpoint
takes the same SFT rounds as the uninterrupted run (its buffer rides in `chord_state.json`).
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.test_trainer_cpu import STEPS, run_trainer

pytestmark = pytest.mark.slow


def _steps(rows: list[dict]) -> list[int]:
    return [r["step"] for r in rows]


def test_hpt_gates_prompts_and_trains_their_demonstrations(workdir, tmp_path):
    rows = run_trainer(workdir, tmp_path, "method=hpt", "trainer.save_freq=-1")
    assert _steps(rows) == [1, 2, 3]
    for row in rows:
        data = row["data"]
        gated = data["hpt/gated_prompts"]
        assert 0 <= gated <= 16 and data["hpt/gated_fraction"] == pytest.approx(gated / 16)
        assert data["chord/expert_rows"] == 16  # one demonstration row per prompt, active or not
        assert "actor/hpt_loss" in data and data["actor/hpt_loss"] == data["actor/hpt_loss"]
        if gated:
            assert data["actor/sft_loss"] > 0 and data["chord/expert_tokens"] > 0
    # the tiny model starts untrained: at step 1 some prompt has no correct rollout
    assert rows[0]["data"]["hpt/gated_prompts"] > 0


def test_srft_logs_its_four_terms(workdir, tmp_path):
    rows = run_trainer(workdir, tmp_path, "method=srft", "trainer.save_freq=-1")
    assert _steps(rows) == [1, 2, 3]
    for row in rows:
        data = row["data"]
        assert data["chord/expert_rows"] == 16
        assert data["actor/sft_loss"] > 0 and data["actor/srft_demo_entropy"] > 0
        # demonstration weights 0.5 * exp(-H) lie in (0, 0.5]
        assert 0.0 < data["actor/sft_weight_mean"] <= 0.5
        for key in ("actor/srft_loss", "actor/srft_positive_loss", "actor/srft_negative_loss"):
            assert key in data and data[key] == data[key], key
        assert 0 <= data["srft/correct_rollouts"] <= 64
        # the demonstration scores 1, the tiny task's maximum: never below its group's mean, so
        # its advantage is >= 0 and its policy-gradient term (-A * p / (p + gamma)) <= 0
        assert data["srft/demo_advantage_mean"] >= 0 and data["actor/srft_demo_advantage_mean"] >= 0
        assert data["actor/srft_demo_pg_loss"] <= 0
    # some group has a failed rollout at step 1 (the tiny model starts untrained): A > 0 there
    assert rows[0]["data"]["srft/demo_advantage_mean"] > 0


# Every prompt fails (no reward reaches 2), 16 prompts a step, buffer of 40: the buffer holds 16,
# 32, then 48 -> one SFT round on the newest 40 at step 3, so step 3 needs step 2's saved buffer.
RELIFT = ("method=relift", "chord.relift.correct_threshold=2.0", "chord.relift.buffer_size=40")


@pytest.fixture(scope="module")
def relift_run(workdir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("relift")
    rows = run_trainer(workdir, run_dir, *RELIFT, "trainer.save_freq=2")
    return run_dir, rows


def test_relift_takes_an_sft_round_when_its_buffer_is_full(relift_run):
    run_dir, rows = relift_run
    assert _steps(rows) == [1, 2, 3]
    data = [r["data"] for r in rows]
    assert [d["relift/failed_prompts"] for d in data] == [16, 16, 16]
    assert [d["relift/buffer_size"] for d in data] == [16, 32, 0]
    assert [d["relift/sft_rounds"] for d in data] == [0, 0, 1]
    assert "relift/sft_loss" not in data[1] and data[2]["relift/sft_loss"] > 0
    assert data[2]["actor/pg_loss"] == data[2]["actor/pg_loss"]  # the RL update ran as well
    state = json.loads((run_dir / "checkpoints" / "global_step_2" / "chord_state.json").read_text())
    assert state["relift_buffer"]["rounds"] == 0 and len(state["relift_buffer"]["entries"]) == 32


def test_relift_resume_gives_the_same_sft_rounds(relift_run, workdir, tmp_path):
    run_dir, rows = relift_run
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "checkpoints" / "global_step_2", resumed_dir / "checkpoints" / "global_step_2")
    (resumed_dir / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("2")
    resumed = run_trainer(workdir, resumed_dir, *RELIFT, "trainer.save_freq=-1")
    assert _steps(resumed) == [STEPS]
    for key in ("relift/sft_rounds", "relift/buffer_size", "relift/sft_fingerprint"):
        assert resumed[0]["data"][key] == rows[-1]["data"][key], key
