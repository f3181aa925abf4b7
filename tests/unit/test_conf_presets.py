"""Every primary config of conf/ composes with every method preset (hydra only, no training).

The GPU presets also pass verl's own `validate_config` and the trainer's expert-row arithmetic
(`recipe.train.config.check_batch_arithmetic`), i.e. they would start on their 8-GPU node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recipe.train.config import load_chord_config

CONF = Path(__file__).resolve().parents[2] / "conf"
METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
# Primary configs name verl's search path; chord_base.yaml is only included by them.
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml") if "hydra" in (yaml.safe_load(p.read_text()) or {}))
GPU_PRESETS = ["math_qwen7b", "tool_llama3b"]


def _compose(config_name: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def test_primary_configs_include_the_gpu_presets():
    assert {"chord", "cpu_tiny", *GPU_PRESETS} <= set(PRIMARY)
    assert "chord_base" not in PRIMARY
    for name in GPU_PRESETS:
        raw = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert raw["hydra"] == {"searchpath": ["pkg://verl.trainer.config"]}
        assert raw["defaults"] == ["chord_base", {"override method": "chord_phi"}, "_self_"]


@pytest.mark.parametrize("config_name", PRIMARY)
def test_every_method_preset_composes_with_every_primary_config(config_name):
    for method in METHODS:
        cfg = _compose(config_name, f"method={method}")
        preset = yaml.safe_load((CONF / "method" / f"{method}.yaml").read_text())
        assert cfg.chord.variant == preset["variant"], (config_name, method)
        assert cfg.actor_rollout_ref.actor.use_kl_loss is False
        assert cfg.algorithm.adv_estimator == "grpo"
        if cfg.chord.expert.files:  # chord.yaml leaves the expert files to the user
            chord = load_chord_config(OmegaConf.to_container(cfg.chord))
            assert chord.variant == preset["variant"]


def test_math_qwen7b_is_the_reference_math_setting(monkeypatch):
    monkeypatch.setenv("CHORD_DATA_DIR", "/data")
    cfg = _compose("math_qwen7b")
    assert cfg.chord.variant == "chord_phi" and cfg.chord.mu.value == pytest.approx(0.1)
    assert cfg.chord.expert.rows_per_step == 64
    assert cfg.chord.expert.files == ["/data/openr1/expert.parquet"]
    assert cfg.data.train_files == ["/data/openr1/train.parquet"]
    assert cfg.data.train_batch_size == 32
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-7B-Instruct"
    rollout = cfg.actor_rollout_ref.rollout
    assert (rollout.n, rollout.temperature, rollout.name) == (8, 1.0, "vllm")
    assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-6)
    assert cfg.actor_rollout_ref.actor.use_kl_loss is False
    assert cfg.algorithm.use_kl_in_reward is False
    assert (cfg.trainer.n_gpus_per_node, cfg.trainer.nnodes, cfg.trainer.device) == (8, 1, "cuda")


def test_tool_llama3b_is_the_reference_tool_setting(monkeypatch):
    monkeypatch.setenv("CHORD_DATA_DIR", "/data")
    cfg = _compose("tool_llama3b", "method=grpo")
    assert cfg.chord.variant == "grpo"
    assert cfg.chord.expert.files == ["/data/toolace/expert.parquet"]
    assert cfg.data.train_files == ["/data/toolace/train.parquet"]
    assert cfg.data.val_files == ["/data/toolace/eval.parquet"]
    assert cfg.actor_rollout_ref.model.path == "meta-llama/Llama-3.2-3B-Instruct"
    assert (cfg.actor_rollout_ref.rollout.n, cfg.actor_rollout_ref.rollout.temperature) == (8, 1.0)
    assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-6)
    assert cfg.trainer.n_gpus_per_node == 8


@pytest.mark.parametrize("config_name", GPU_PRESETS)
@pytest.mark.parametrize("method", ["grpo", "chord_phi", "chord_mu", "iw_sft", "iw_token", "luffy"])
def test_gpu_presets_pass_verl_validation_and_expert_row_arithmetic(config_name, method):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from recipe.train.config import expert_rows_per_step
    from recipe.train.main import prepare_config

    cfg = _compose(config_name, f"method={method}")
    chord = prepare_config(cfg)  # what chord-train does before Ray starts; raises if indivisible
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    rollout_rows = cfg.data.train_batch_size * cfg.actor_rollout_ref.rollout.n
    expert_rows = expert_rows_per_step(cfg, chord)
    assert rollout_rows == 256
    assert expert_rows == {"grpo": 0, "luffy": 32}.get(method, 64 if config_name == "math_qwen7b" else 32)
    assert need_reference_policy(cfg) is method.startswith("iw_")  # iw-SFT's reference = initial policy


def test_a_verl_setting_the_loss_cannot_honour_stops_start_up_by_key(monkeypatch, tmp_path):
    from recipe.train.main import CONFIG_ERROR_PREFIXES, prepare_config

    monkeypatch.setenv("CHORD_WORKDIR", str(tmp_path))
    monkeypatch.setenv("CHORD_DATA_DIR", str(tmp_path))
    prepare_config(_compose("cpu_tiny"))  # the preset itself passes
    cfg = _compose("cpu_tiny", "actor_rollout_ref.actor.policy_loss.loss_mode=gspo")
    with pytest.raises(ValueError) as err:
        prepare_config(cfg)  # what chord-train runs on the driver, before Ray starts
    message = str(err.value)
    assert message.startswith("actor_rollout_ref.actor.policy_loss.loss_mode: 'gspo' is not supported")
    assert message.startswith(CONFIG_ERROR_PREFIXES)  # printed as one line, exit status 2


# --- hybrids (HPT, SRFT, ReLIFT) GPU presets ---------------------------------------------------


@pytest.mark.parametrize("method", ["hpt", "srft", "relift"])
def test_hybrid_gpu_presets_select_their_method_and_pass_the_start_up_checks(method, monkeypatch):
    from recipe.train.config import check_batch_arithmetic, check_verl_settings
    from recipe.train.hybrid_config import apply_hybrid_settings

    monkeypatch.setenv("CHORD_DATA_DIR", "/data")
    cfg = _compose(f"{method}_math_qwen7b")
    chord = load_chord_config(OmegaConf.to_container(cfg.chord))
    assert chord.variant == method
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-Math-7B"
    assert cfg.data.train_files == ["/data/openr1_paired/train.parquet"]
    apply_hybrid_settings(cfg, chord)
    check_verl_settings(cfg, chord)
    check_batch_arithmetic(cfg, chord)
    if method == "hpt":
        assert (cfg.data.train_batch_size, cfg.actor_rollout_ref.rollout.n) == (128, 8)
        assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(5e-6)
        assert cfg.trainer.total_training_steps == 500 and chord.hpt.gate == 0
        assert cfg.algorithm.norm_adv_by_std_in_grpo is False
    if method == "srft":
        assert cfg.actor_rollout_ref.actor.calculate_entropy is True
        assert (chord.srft.demo_coef, chord.srft.positive_coef) == (0.5, 0.1)
    if method == "relift":
        assert chord.relift.buffer_size == 128
