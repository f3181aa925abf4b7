"""recipe/train/sweep.py without Ray: the `sweep:` section, what it refuses, each seed's config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recipe.train.sweep import SeedRun, check_sweep, seed_config, sweep_refusal, sweep_runs, use_metrics_path


def config(**sweep) -> OmegaConf:
    return OmegaConf.create(
        {
            "sweep": {"seeds": None, "dir": None, **sweep},
            "data": {"seed": 7},
            "chord": {"variant": "chord_phi", "expert": {"seed": 7}},
            "trainer": {"resume_mode": "disable", "default_local_dir": "ckpt"},
            "critic": {"enable": False},
            "actor_rollout_ref": {
                "rollout": {"name": "hf", "seed": 7},
                "actor": {"checkpoint": {"load_contents": ["model", "optimizer", "extra"]}},
            },
        }
    )


def test_no_seeds_is_no_sweep():
    assert sweep_runs(config()) == [] and check_sweep(config()) == []
    assert sweep_runs(OmegaConf.create({})) == []


def test_runs_in_the_given_order_each_in_its_folder(tmp_path):
    runs = sweep_runs(config(seeds=[2, 0, 1], dir=str(tmp_path)))
    assert [r.seed for r in runs] == [2, 0, 1]
    assert runs[0].dir == tmp_path.resolve() / "seed2"
    assert runs[0].checkpoints == runs[0].dir / "checkpoints"
    assert runs[0].metrics == runs[0].dir / "metrics.jsonl"


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"seeds": []}, "sweep.seeds: a non-empty list"),
        ({"seeds": [0, "1"]}, "sweep.seeds: a non-empty list"),
        ({"seeds": [0, True]}, "sweep.seeds: a non-empty list"),
        ({"seeds": [0, 1, 0]}, "repeats a seed"),
        ({"seeds": [0, 1]}, "sweep.dir: required"),
    ],
)
def test_malformed_sections_are_refused_by_key(sweep, message):
    with pytest.raises(ValueError, match=message):
        sweep_runs(config(**sweep))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("trainer.resume_mode", "auto", "needs trainer.resume_mode=disable"),
        ("actor_rollout_ref.rollout.name", "vllm", "rollout.name='vllm' is not supported"),
        ("chord.variant", "trapo", "prefix-guided"),
        ("chord.variant", "uft", "prefix-guided"),
        ("critic.enable", True, "critic.enable=true"),
        ("actor_rollout_ref.actor.checkpoint.load_contents", ["model"], r"lacks \['optimizer', 'extra'\]"),
    ],
)
def test_what_a_sweep_cannot_reset_is_refused_at_start_up(tmp_path, key, value, message):
    cfg = config(seeds=[0, 1], dir=str(tmp_path))
    assert sweep_refusal(cfg) is None
    OmegaConf.update(cfg, key, value)
    assert sweep_refusal(cfg).startswith("sweep.seeds: ")
    with pytest.raises(ValueError, match=message):
        check_sweep(cfg)


def test_a_refused_config_without_seeds_trains_as_usual():
    cfg = config()
    OmegaConf.update(cfg, "actor_rollout_ref.rollout.name", "vllm")
    assert check_sweep(cfg) == []


def test_each_seed_config_sets_every_seed_and_path_and_leaves_the_original(tmp_path):
    cfg = config(seeds=[0, 3], dir=str(tmp_path))
    run = SeedRun(3, tmp_path / "seed3")
    one = seed_config(cfg, run)
    seeds = (one.data.seed, one.chord.expert.seed, one.chord.prefix.seed, one.actor_rollout_ref.rollout.seed)
    assert seeds == (3, 3, 3, 3)
    assert one.trainer.default_local_dir == str(tmp_path / "seed3" / "checkpoints")
    assert (cfg.data.seed, cfg.chord.expert.seed, cfg.trainer.default_local_dir) == (7, 7, "ckpt")


def test_metrics_path_is_the_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", "elsewhere.jsonl")
    run = SeedRun(1, tmp_path / "seed1")
    use_metrics_path(run)
    assert run.dir.is_dir()
    assert Path(os.environ["VERL_FILE_LOGGER_PATH"]) == run.metrics
