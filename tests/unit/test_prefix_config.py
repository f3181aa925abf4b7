"""`chord.prefix` (uft, trapo): defaults, start-up checks naming the key, chord-compare seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from chord.prefix import TrapoStage
from recipe.train.config import load_chord_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cpu_tiny(tmp_path, monkeypatch, *overrides: str):
    monkeypatch.setenv("CHORD_WORKDIR", str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="cpu_tiny", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def test_defaults_are_the_authors():
    chord = load_chord_config({"variant": "trapo"})
    sched = chord.prefix.trapo_schedule()
    assert sched.plain == 4 and sched.rows == 8
    assert sched.stages == (TrapoStage(2, 0.25, 2), TrapoStage(1, 0.5, 4), TrapoStage(1, 1.0, 7))
    assert chord.prefix.trapo.alpha == 0.1 and chord.prefix.uft.beta == 0.001
    uft = chord.prefix.uft_schedule()
    assert (uft.total_steps, uft.low, uft.amp, uft.max_parts) == (300, 0.05, 0.45, 5)
    assert chord.prefix.step_separator == "\n\n" and chord.prefix.response_key == "expert_response"
    assert not chord.spec.uses_expert and chord.spec.loss == "prefix"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"trapo": {"alpha": 0.0}}, r"chord\.prefix\.trapo\.alpha"),
        ({"uft": {"beta": -1.0}}, r"chord\.prefix\.uft\.beta"),
        ({"uft": {"low": 0.5, "amp": 0.45}}, r"chord\.prefix\.uft\.low / amp"),
        ({"step_separator": ""}, r"chord\.prefix\.step_separator"),
    ],
)
def test_bad_values_are_named(section, key):
    with pytest.raises(ValueError, match=key):
        load_chord_config({"variant": "uft", "prefix": section})


def test_cpu_tiny_presets_start(tmp_path, monkeypatch):
    from recipe.train.main import prepare_config

    for method in ("uft", "trapo"):
        chord = prepare_config(_cpu_tiny(tmp_path, monkeypatch, f"method={method}"))
        assert chord.variant == method
    assert chord.prefix.trapo_schedule().rows == 4  # cpu_tiny halves the scheme for n = 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["actor_rollout_ref.rollout.n=8"], r"trapo: plain \+ stage rows = 4 .*rollout\.n = 8"),
        (["actor_rollout_ref.rollout.agent.num_workers=3"], r"agent\.num_workers: 3 agent-loop workers"),
        (["algorithm.adv_estimator=gae"], r"algorithm\.adv_estimator: 'gae' is not supported"),
    ],
)
def test_trapo_start_up_refuses_by_key(tmp_path, monkeypatch, overrides, message):
    from recipe.train.main import prepare_config

    cfg = _cpu_tiny(tmp_path, monkeypatch, "method=trapo", *overrides)
    with pytest.raises(ValueError, match=message):
        prepare_config(cfg)


def test_chord_compare_sets_the_prefix_seed():
    from recipe.compare.plan import RESERVED_KEYS, Stage, preset_methods, stage_overrides

    assert {"uft", "trapo"} <= set(preset_methods())
    out = stage_overrides(
        Stage("train", "uft", 5), seed=4, run_dir=Path("/r"), save_checkpoint=False, user_overrides=[]
    )
    assert "++chord.prefix.seed=4" in out and "method=uft" in out
    assert RESERVED_KEYS["chord.prefix.seed"] == "--seed"
