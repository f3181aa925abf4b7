"""Seed sweeps: one `chord-train` launch trains the same config once per seed.

`sweep.seeds=[s0, s1, ...] sweep.dir=D` runs the config once per seed, in order, in one Ray
cluster: Ray, the FSDP workers, the rollout servers and the agent-loop and reward workers start
once, and before each later seed the policy, its optimizer, LR schedule and RNG state go back to
what they were before the first step (a step-0 checkpoint under `D/initial_state`). Seed `s`
then runs as a fresh launch with that seed would:

- `data.seed`, `chord.expert.seed`, `chord.prefix.seed`, `actor_rollout_ref.rollout.seed` = s;
- checkpoints in `D/seed<s>/checkpoints` (`trainer.default_local_dir`), the metrics record in
  `D/seed<s>/metrics.jsonl` (`VERL_FILE_LOGGER_PATH`).

On the 2-core CPU preset a launch spends more time starting than a 40-step run spends training
(benchmarks/RESULTS.md), so a sweep of N seeds saves N - 1 start-ups. What a sweep cannot reset
is refused at start-up, by key (`sweep_refusal`).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

# The rollout engines whose sampling seed a sweep can reset between seeds (HFGenerationServer.set_seed).
SWEEP_ROLLOUTS = ("hf",)
# What the step-0 checkpoint must hold to put the policy back as it started.
RESTORED_CONTENTS = ("model", "optimizer", "extra")
INITIAL_STATE = "initial_state"


@dataclass(frozen=True)
class SeedRun:
    seed: int
    dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"


def sweep_runs(config: Any) -> list[SeedRun]:
    """The runs of `sweep:`, in order; [] without `sweep.seeds`. Refuses a malformed section by key."""
    sweep = OmegaConf.select(config, "sweep", default=None)
    seeds = None if sweep is None else sweep.get("seeds")
    if seeds is None:
        return []
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"sweep.seeds: a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"sweep.seeds: {seeds} repeats a seed")
    folder = sweep.get("dir")
    if not folder:
        raise ValueError("sweep.dir: required with sweep.seeds (seed s writes <dir>/seed<s>/)")
    root = Path(str(folder)).resolve()
    return [SeedRun(int(s), root / f"seed{s}") for s in seeds]


def sweep_refusal(config: Any) -> str | None:
    """Why this config cannot run as a sweep (`sweep.seeds: ...`, naming the key), or None."""
    resume = OmegaConf.select(config, "trainer.resume_mode", default="auto")
    if resume != "disable":
        return f"sweep.seeds: needs trainer.resume_mode=disable (got {resume!r}): every seed starts fresh"
    rollout = OmegaConf.select(config, "actor_rollout_ref.rollout.name", default=None)
    if rollout not in SWEEP_ROLLOUTS:
        return (
            f"sweep.seeds: actor_rollout_ref.rollout.name={rollout!r} is not supported (only "
            f"{', '.join(SWEEP_ROLLOUTS)}: its servers' sampling seed is reset between seeds)"
        )
    variant = OmegaConf.select(config, "chord.variant", default=None)
    if variant in ("uft", "trapo"):
        return f"sweep.seeds: chord.variant={variant!r} (prefix-guided rollouts) is not supported"
    if OmegaConf.select(config, "critic.enable", default=False):
        return "sweep.seeds: critic.enable=true is not supported (only the actor is reset)"
    contents = OmegaConf.select(config, "actor_rollout_ref.actor.checkpoint.load_contents", default=None)
    missing = [c for c in RESTORED_CONTENTS if contents is not None and c not in list(contents)]
    if missing:
        return (
            f"sweep.seeds: actor_rollout_ref.actor.checkpoint.load_contents lacks {missing}: "
            "each seed restores the policy, optimizer and RNG state of step 0"
        )
    return None


def check_sweep(config: Any) -> list[SeedRun]:
    """`sweep_runs`, after refusing what a sweep cannot reset (ValueError naming the key)."""
    runs = sweep_runs(config)
    if runs:
        reason = sweep_refusal(config)
        if reason is not None:
            raise ValueError(reason)
    return runs


def seed_config(config: DictConfig, run: SeedRun) -> DictConfig:
    """A copy of `config` for one seed: its seeds and output paths (the module docstring)."""
    cfg = copy.deepcopy(config)
    with open_dict(cfg):
        cfg.data.seed = run.seed
        cfg.actor_rollout_ref.rollout.seed = run.seed
        cfg.trainer.default_local_dir = str(run.checkpoints)
        for key in ("expert", "prefix"):
            if cfg.chord.get(key) is None:
                cfg.chord[key] = {}
            cfg.chord[key].seed = run.seed
    return cfg


def use_metrics_path(run: SeedRun) -> None:
    """verl's file logger (and our record) write this seed's metrics to `run.metrics`."""
    run.dir.mkdir(parents=True, exist_ok=True)
    os.environ["VERL_FILE_LOGGER_PATH"] = str(run.metrics)


# ---------------------------------------------------------------------------- in the task runner
def save_initial_state(trainer: Any, folder: Path) -> None:
    """The actor's step-0 state (policy, optimizer, LR schedule, RNG), once its workers exist."""
    trainer.actor_rollout_wg.save_checkpoint(str(folder / "actor"), None, 0, None)


def restore_initial_state(trainer: Any, folder: Path, seed: int) -> None:
    """Put the actor back to `save_initial_state`'s state and reseed the rollout servers; fit()
    pushes the restored weights to the servers before its first step, as in any run."""
    import ray

    trainer.actor_rollout_wg.load_checkpoint(str(folder / "actor"), None, False)
    servers = [s for replica in trainer.llm_server_manager.get_replicas() for s in replica.servers]
    ray.get([server.set_seed.remote(seed) for server in servers])


def run_sweep(config: DictConfig, runs: list[SeedRun], build_trainer: Any) -> None:
    """Train `config` once per run of `runs`, in order. `build_trainer(cfg)` makes a trainer with
    its own data, expert buffer and logger; the first creates the workers, later ones adopt them
    (every attribute `init_workers` set) after the policy is restored."""
    initial = runs[0].dir.parent / INITIAL_STATE
    workers: dict[str, Any] | None = None
    for index, run in enumerate(runs):
        trainer = build_trainer(seed_config(config, run))
        if workers is None:
            before = dict(vars(trainer))
            trainer.init_workers()
            workers = {k: v for k, v in vars(trainer).items() if k not in before or before[k] is not v}
            save_initial_state(trainer, initial)
        else:
            vars(trainer).update(workers)
            restore_initial_state(trainer, initial, run.seed)
        use_metrics_path(run)
        print(f"chord-train: sweep seed {run.seed} ({index + 1} of {len(runs)}) -> {run.dir}", flush=True)
        trainer.fit()
