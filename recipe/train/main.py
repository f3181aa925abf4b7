"""`chord-train` / `python -m recipe.train.main`: verl's PPO entry with the CHORD trainer.

Configs come from `conf/` (hydra), layered on verl's own `ppo_trainer` through
`pkg://verl.trainer.config`, so every verl option keeps working. Our keys live under `chord:`
and are validated here, before Ray starts.

verl's task runner is reused: `BaseTaskRunner` wires roles and resource pools, our runner only
swaps in `ChordActorRolloutRefWorker` and `ChordRayTrainer`, and with `sweep.seeds` trains one
trainer per seed on the same workers (`recipe.train.sweep`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import ray
from omegaconf import DictConfig, OmegaConf, open_dict

from recipe.train.checkpoints import check_expert_files, choose_resume_point, read_state
from recipe.train.config import (
    ChordConfig,
    check_batch_arithmetic,
    check_prefix_settings,
    check_verl_settings,
    expert_rows_per_step,
    load_chord_config,
)
from recipe.train.hybrid_config import apply_hybrid_settings
from recipe.train.stops import EXIT_CODE, ChordStop, find_cause
from recipe.train.sweep import check_sweep, run_sweep, sweep_runs

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
# Config errors (messages start with the key) are printed in one line, not as a traceback.
CONFIG_ERROR_PREFIXES = (
    "chord.",
    "trainer.use_v1",
    "actor_rollout_ref.",
    "algorithm.",
    "distillation.",
    "data.",
    "sweep.",
)


def prepare_config(config: DictConfig) -> ChordConfig:
    """Validate the `chord:` section and derive the verl settings it implies."""
    chord = load_chord_config(config.get("chord"))
    actor = config.actor_rollout_ref.actor
    if config.trainer.get("use_v1", False):
        raise ValueError("trainer.use_v1: chord-train runs verl's RayPPOTrainer; set trainer.use_v1=false")
    if chord.spec.needs_ref_logp and not actor.use_kl_loss:
        # iw-SFT's reference is the initial policy: verl builds the reference worker only when a
        # KL term is on, so switch the KL loss on with coefficient 0 (it adds nothing).
        with open_dict(config):
            actor.use_kl_loss = True
            actor.kl_loss_coef = 0.0
    apply_hybrid_settings(config, chord)
    check_verl_settings(config, chord)
    checkpoint = actor.get("checkpoint") or {}
    if checkpoint.get("async_save", False):
        raise ValueError(
            "actor_rollout_ref.actor.checkpoint.async_save: true is not supported: chord-train "
            "writes chord_state.json, the checkpoint's commit marker, after verl's files are on disk"
        )
    check_batch_arithmetic(config, chord)
    check_prefix_settings(config, chord)
    return chord


def check_resume(config: DictConfig, chord: ChordConfig) -> None:
    """Before Ray starts: the checkpoint to resume from is complete and its expert files unchanged
    (`recipe.train.checkpoints`); the trainer checks again when it loads it."""
    point = choose_resume_point(config)
    if point.folder is not None and chord.spec.uses_expert and expert_rows_per_step(config, chord) > 0:
        expert = chord.expert
        state = read_state(point.folder)
        check_expert_files(
            point.folder, state, list(expert.files), expert.schema, expert.accept_changed_files
        )


def build_task_runner():
    from verl.trainer.main_ppo_v0 import BaseTaskRunner

    class ChordTaskRunner(BaseTaskRunner):
        def add_actor_rollout_worker(self, config):
            from verl.trainer.ppo.ray_trainer import Role

            from recipe.train.workers import ChordActorRolloutRefWorker

            _, group_cls = super().add_actor_rollout_worker(config)
            worker_cls = ChordActorRolloutRefWorker.with_chord_config(
                OmegaConf.to_container(config.chord, resolve=True)
            )
            for role in (Role.ActorRolloutRef, Role.ActorRollout):  # whichever verl chose
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(worker_cls)
            return worker_cls, group_cls

        def run(self, config):
            from verl.trainer.ppo.utils import (
                create_rl_dataset,
                create_rl_sampler,
                need_critic,
                need_reference_policy,
            )
            from verl.utils.config import omega_conf_to_dataclass, validate_config
            from verl.utils.dataset.rl_dataset import collate_fn
            from verl.workers.config import HFModelConfig

            from recipe.train.trainer import ChordRayTrainer

            OmegaConf.resolve(config)
            worker_cls, group_cls = self.add_actor_rollout_worker(config)
            self.add_critic_worker(config)
            self.add_reward_model_resource_pool(config)
            self.add_teacher_model_resource_pool(config)
            self.add_ref_policy_worker(config, worker_cls)
            validate_config(
                config=config,
                use_reference_policy=need_reference_policy(config),
                use_critic=need_critic(config),
            )
            model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
            tokenizer, processor = model_config.tokenizer, model_config.processor
            resource_pool_manager = self.init_resource_pool_mgr(config)

            def build_trainer(cfg: DictConfig) -> ChordRayTrainer:
                data = cfg.data
                train_dataset = create_rl_dataset(
                    data.train_files, data, tokenizer, processor, is_train=True,
                    max_samples=data.get("train_max_samples", -1),
                )  # fmt: skip
                val_dataset = create_rl_dataset(
                    data.val_files, data, tokenizer, processor, is_train=False,
                    max_samples=data.get("val_max_samples", -1),
                )  # fmt: skip
                return ChordRayTrainer(
                    config=cfg,
                    tokenizer=tokenizer,
                    processor=processor,
                    role_worker_mapping=self.role_worker_mapping,
                    resource_pool_manager=resource_pool_manager,
                    ray_worker_group_cls=group_cls,
                    train_dataset=train_dataset,
                    val_dataset=val_dataset,
                    collate_fn=collate_fn,
                    train_sampler=create_rl_sampler(data, train_dataset),
                    chord=load_chord_config(cfg.get("chord")),
                )

            runs = sweep_runs(config)
            if runs:
                run_sweep(config, runs, build_trainer)
                return
            trainer = build_trainer(config)
            trainer.init_workers()
            trainer.fit()

    return ray.remote(num_cpus=1)(ChordTaskRunner)


def run(config: DictConfig) -> None:
    """Validate, then run training on the Ray cluster (local, or `RAY_ADDRESS`)."""
    from verl.trainer.main_ppo import run_ppo
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    OmegaConf.resolve(config)  # once, on the driver: `chord:` may interpolate other sections
    chord = prepare_config(config)
    check_resume(config, chord)
    check_sweep(config)
    run_ppo(config, task_runner_class=build_task_runner())


@hydra.main(config_path=CONF_DIR, config_name="chord", version_base=None)
def _hydra_main(config: DictConfig) -> None:
    try:
        run(config)
    except ValueError as exc:
        if not str(exc).startswith(CONFIG_ERROR_PREFIXES):
            raise
        print(f"chord-train: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        stop = find_cause(exc, ChordStop)
        if stop is None:
            raise
        print(f"chord-train: stopped: {stop}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)


def main() -> None:
    # Ray workers import our plugins through verl's entry-point group; this also covers a
    # source checkout that is on PYTHONPATH without being pip-installed.
    os.environ.setdefault("VERL_USE_EXTERNAL_MODULES", "recipe.plugins")
    _hydra_main()


if __name__ == "__main__":
    main()
