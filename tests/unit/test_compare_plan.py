"""chord-compare's run plan: method names, the sft_then_rl split, overrides (no trainer run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recipe.compare.plan import (
    PER_SEED_KEYS,
    SFT_THEN_RL,
    Launch,
    Stage,
    check_no_seed_runs_lost,
    check_user_overrides,
    launch_order,
    method_run_dir,
    micro_batch_override,
    override_key,
    parse_methods,
    plan_method,
    preset_methods,
    run_order,
    seed_values,
    seed_walls,
    split_steps,
    stage_overrides,
    sweep_overrides,
    trainer_command,
    why_not_swept,
)


def test_preset_methods_are_the_method_yaml_files():
    methods = preset_methods()
    assert {"grpo", "sft", "chord_mu", "chord_phi", "iw_sft"} <= set(methods)
    assert methods == sorted(methods)
    assert SFT_THEN_RL not in methods


def test_parse_methods_strips_and_rejects_unknown_or_repeated():
    known = ["grpo", "chord_phi", SFT_THEN_RL]
    assert parse_methods(" grpo, sft_then_rl ,", known) == ["grpo", "sft_then_rl"]
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['luffy'\]"):
        parse_methods("grpo,luffy", known)
    with pytest.raises(ValueError, match="repeated"):
        parse_methods("grpo,grpo", known)
    with pytest.raises(ValueError, match="at least one"):
        parse_methods(" , ", known)


def test_split_steps_rounds_and_keeps_both_stages():
    assert split_steps(40, 0.5) == (20, 20)
    assert split_steps(5, 0.5) == (3, 2)  # round half up
    assert split_steps(10, 0.25) == (3, 7)
    assert split_steps(2, 0.01) == (1, 1)
    assert split_steps(2, 0.99) == (1, 1)
    with pytest.raises(ValueError, match="--steps >= 2"):
        split_steps(1, 0.5)
    with pytest.raises(ValueError, match="sft-fraction"):
        split_steps(10, 1.0)


def test_plan_of_sft_then_rl_is_sft_then_grpo_from_its_checkpoint():
    plan = plan_method(SFT_THEN_RL, 10, sft_fraction=0.3)
    assert plan.stages == (
        Stage("sft", "sft", 3),
        Stage("rl", "grpo", 7, step_offset=3, init_from="sft"),
    )
    assert plan.steps == 10
    assert plan.switch_steps == [3]
    single = plan_method("chord_phi", 10)
    assert single.stages == (Stage("train", "chord_phi", 10),) and single.switch_steps == []


def test_stage_overrides_put_user_values_between_defaults_and_fixed_keys():
    stage = Stage("rl", "grpo", 7, step_offset=3, init_from="sft")
    run_dir = Path("/runs/sft_then_rl/rl")
    overrides = stage_overrides(
        stage,
        seed=3,
        run_dir=run_dir,
        save_checkpoint=True,
        user_overrides=["trainer.test_freq=5"],
        model_path=Path("/runs/sft_then_rl/sft/hf"),
    )
    assert overrides.index("trainer.test_freq=-1") < overrides.index("trainer.test_freq=5")
    assert overrides.index("trainer.test_freq=5") < overrides.index("method=grpo")
    for expected in (
        "trainer.total_training_steps=7",
        "trainer.default_local_dir=/runs/sft_then_rl/rl/checkpoints",
        "data.seed=3",
        "++chord.expert.seed=3",
        "++chord.prefix.seed=3",
        "actor_rollout_ref.rollout.seed=3",
        "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=/runs/sft_then_rl/rl/metrics.jsonl",
        "trainer.save_freq=7",
        "actor_rollout_ref.model.path=/runs/sft_then_rl/sft/hf",
        "trainer.resume_mode=disable",
    ):
        assert expected in overrides
    no_save = stage_overrides(Stage("train", "sft", 4), seed=0, run_dir=run_dir, save_checkpoint=False,
                              user_overrides=[])  # fmt: skip
    assert "trainer.save_freq=-1" in no_save
    assert not any(o.startswith("actor_rollout_ref.model.path") for o in no_save)
    assert trainer_command("py", "cpu_tiny", ["a=1"]) == [
        "py", "-m", "recipe.train.main", "--config-name", "cpu_tiny", "a=1",
    ]  # fmt: skip


def test_sweep_overrides_leave_the_per_seed_keys_to_chord_train():
    user = ["trainer.test_freq=5", "data.train_batch_size=8", "+actor_rollout_ref.model.foo=1"]
    stage, folder = Stage("train", "grpo", 4), Path("/runs/grpo")
    kwargs = {"save_checkpoint": True, "user_overrides": user}
    one_seed = stage_overrides(stage, seed=0, run_dir=folder, **kwargs)
    overrides = sweep_overrides(stage, seeds=[3, 4, 5], sweep_dir=folder, **kwargs)
    assert not [o for o in overrides if override_key(o) in PER_SEED_KEYS]
    assert overrides[-2:] == ["sweep.seeds=[3,4,5]", "sweep.dir=/runs/grpo"]
    assert "hydra.run.dir=/runs/grpo/hydra" in overrides
    # everything else as a launch of one seed, in the same order (the user's values in theirs)
    assert overrides[:-2] == [o for o in one_seed if override_key(o) not in PER_SEED_KEYS]
    assert [o for o in overrides if o in user] == user
    assert overrides.index("trainer.test_freq=-1") < overrides.index("trainer.test_freq=5")
    for expected in ("method=grpo", "trainer.total_training_steps=4", "trainer.resume_mode=disable",
                     "trainer.save_freq=4"):  # fmt: skip
        assert expected in overrides
    with pytest.raises(ValueError, match="sweep.dir: .* use --out"):
        check_user_overrides(["sweep.dir=/elsewhere"])


def test_a_method_is_swept_with_several_seeds_one_stage_and_without_no_sweep():
    grpo, two_stages = plan_method("grpo", 4), plan_method(SFT_THEN_RL, 4)
    assert why_not_swept(grpo, 3, sweep=True) is None
    assert why_not_swept(grpo, 1, sweep=True) == "one seed"
    assert why_not_swept(grpo, 3, sweep=False) == "--no-sweep"
    assert why_not_swept(two_stages, 3, sweep=True).startswith("2 stages (sft -> rl)")


def test_launch_order_runs_a_swept_method_once_at_its_first_seed():
    methods, seeds = ["grpo", SFT_THEN_RL, "uft", "chord_phi"], [0, 1]
    assert launch_order(methods, seeds, {"grpo", "chord_phi"}) == [
        Launch("grpo", (0, 1)), Launch(SFT_THEN_RL, (0,)), Launch("uft", (0,)),
        Launch("chord_phi", (0, 1)), Launch(SFT_THEN_RL, (1,)), Launch("uft", (1,)),
    ]  # fmt: skip
    assert launch_order(methods, seeds, set()) == [Launch(m, (s,)) for s, m in run_order(methods, seeds)]
    assert launch_order(["grpo"], [7], set()) == [Launch("grpo", (7,))]
    assert Launch("grpo", (0, 1)).is_sweep and not Launch("grpo", (0,)).is_sweep


def test_seed_walls_split_a_sweep_launch_at_each_seed_start():
    # launch 0..100 s: seed 0 from the start (start-up included) to seed 1's start at 40 s, seed 1
    # (its reset included) to 70 s, seed 2 to the launch's end
    assert seed_walls([0.0, 40.0, 70.0], 100.0) == [40.0, 30.0, 30.0]
    # the launch failed during seed 1: seed 2 never started
    assert seed_walls([0.0, 40.0, None], 55.0) == [40.0, 15.0, 0.0]
    assert seed_walls([5.0], 9.0) == [4.0]


def test_user_overrides_may_not_set_what_the_comparison_fixes():
    check_user_overrides(["trainer.test_freq=5", "+actor_rollout_ref.model.foo=1", "~trainer.logger"])
    with pytest.raises(ValueError, match="trainer.total_training_steps: .* use --steps"):
        check_user_overrides(["trainer.total_training_steps=9"])
    with pytest.raises(ValueError, match="method: .* use --methods"):
        check_user_overrides(["method=grpo"])
    with pytest.raises(ValueError, match="data.seed: .* use --seed"):
        check_user_overrides(["++data.seed=1"])
    with pytest.raises(ValueError, match="unknown option '--stpes'"):
        check_user_overrides(["--stpes"])
    with pytest.raises(ValueError, match="not a hydra override"):
        check_user_overrides(["grpo"])


def _config(variant: str, micro: int | None, dynamic: bool = False):
    return OmegaConf.create(
        {
            "chord": {"variant": variant, "expert": {"files": ["e.parquet"], "rows_per_step": 32}},
            "data": {"train_batch_size": 16},
            "trainer": {"n_gpus_per_node": 2, "nnodes": 1},
            "actor_rollout_ref": {
                "rollout": {"n": 4},
                "actor": {"ppo_mini_batch_size": 4, "ppo_micro_batch_size_per_gpu": micro,
                          "use_dynamic_bsz": dynamic},
            },
        }
    )  # fmt: skip


def test_micro_batch_override_only_when_a_rank_mini_batch_does_not_divide():
    # cpu_tiny's arithmetic: 64 rollout rows (+ 32 expert rows) over 2 ranks x 4 mini-batches.
    assert micro_batch_override(_config("chord_phi", 12)) is None  # 8 + 4 = 12 rows per rank
    assert (
        micro_batch_override(_config("grpo", 12)) == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"
    )
    assert (
        micro_batch_override(_config("grpo", 3)) == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2"
    )
    assert micro_batch_override(_config("grpo", 12, dynamic=True)) is None
    # LUFFY: one expert trace per prompt, 16 + 64 rows -> 10 per rank and mini-batch.
    assert (
        micro_batch_override(_config("luffy", 12))
        == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=10"
    )


def test_seed_values_run_order_is_seed_major_and_run_dirs_per_seed(tmp_path):
    assert seed_values(3, 2) == [3, 4]
    assert seed_values(0, 1) == [0]
    with pytest.raises(ValueError, match="--seeds"):
        seed_values(0, 0)
    assert run_order(["grpo", "sft"], [0, 1]) == [(0, "grpo"), (0, "sft"), (1, "grpo"), (1, "sft")]
    assert method_run_dir(tmp_path, "grpo", 7, 1) == tmp_path / "grpo"  # one seed: the old layout
    assert method_run_dir(tmp_path, "grpo", 7, 3) == tmp_path / "grpo" / "seed7"


def test_a_one_seed_run_refuses_to_delete_an_earlier_comparisons_seed_folders(tmp_path):
    (tmp_path / "grpo" / "seed0").mkdir(parents=True)
    (tmp_path / "grpo" / "seed1").mkdir()
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "seeds.txt").write_text("a file, not a seed folder")
    check_no_seed_runs_lost(tmp_path, ["sft"], 1)  # nothing of another comparison there
    check_no_seed_runs_lost(tmp_path, ["grpo"], 3)  # a multi-seed run writes into seed<k>/ only
    with pytest.raises(ValueError, match=r"grpo holds the per-seed runs .*\(seed0, seed1\)"):
        check_no_seed_runs_lost(tmp_path, ["sft", "grpo"], 1)


# --- hybrids (HPT, SRFT, ReLIFT) ---------------------------------------------------------------


def test_the_hybrids_are_compare_methods_with_their_row_arithmetic():
    assert {"hpt", "srft", "relift"} <= set(preset_methods())
    # HPT and SRFT: one demonstration row per prompt, as LUFFY (16 + 64 rows -> 10 per rank and
    # mini-batch); ReLIFT's step update has the rollout rows alone (8 per rank and mini-batch).
    for method in ("hpt", "srft"):
        assert (
            micro_batch_override(_config(method, 12))
            == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=10"
        )
    assert (
        micro_batch_override(_config("relift", 12))
        == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"
    )
