"""What `chord-compare` runs: method names -> stages -> `chord-train` commands. No subprocesses here.

A method is either a preset of `conf/method/` (one stage, `method=<name>`) or the two-stage
baseline `sft_then_rl`: `method=sft` for `round(sft_fraction * steps)` steps, its final
checkpoint turned into a Hugging Face directory, then `method=grpo` from that directory for the
remaining steps. Every stage of every method gets the same task, data, seeds and config; the
step budget of a method is the sum of its stages.

With several seeds a one-stage method runs as one *sweep launch* (`sweep.seeds`, see
recipe/train/sweep.py): one trainer process trains it once per seed, in order, and sets each
seed's keys and output paths itself; a launch of one (method, seed) run is the other kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

SFT_THEN_RL = "sft_then_rl"

# Keys chord-compare sets itself for every stage; passing them as overrides would break the
# comparison (same budget, seed and layout for every method), so they have their own flags.
RESERVED_KEYS = {
    "method": "--methods",
    "trainer.total_training_steps": "--steps",
    "trainer.default_local_dir": "--out",
    "trainer.resume_mode": "(runs always start fresh)",
    "data.seed": "--seed",
    "chord.expert.seed": "--seed",
    "chord.prefix.seed": "--seed",  # uft's hint draws
    "actor_rollout_ref.rollout.seed": "--seed",
    "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH": "--out",
    "hydra.run.dir": "--out",
    "sweep.seeds": "--seeds (and --sweep)",
    "sweep.dir": "--out",
}

# What a launch of one (method, seed) run sets and a sweep launch leaves to chord-train, which
# sets them for each of its seeds (`recipe.train.sweep.seed_config`, `use_metrics_path`).
PER_SEED_KEYS = (
    "trainer.default_local_dir",
    "data.seed",
    "chord.expert.seed",
    "chord.prefix.seed",
    "actor_rollout_ref.rollout.seed",
    "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH",
)


def preset_methods(conf_dir: Path = CONF_DIR) -> list[str]:
    """The presets `method=<name>` accepts (the yaml files of `conf/method/`), sorted."""
    return sorted(p.stem for p in (conf_dir / "method").glob("*.yaml"))


def parse_methods(spec: str, known: Iterable[str]) -> list[str]:
    """`"grpo, chord_phi"` -> `["grpo", "chord_phi"]`; unknown or repeated names raise ValueError."""
    known = list(known)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError("--methods: name at least one method")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {unknown}; known: {', '.join(known)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--methods: repeated method(s) {repeated}")
    return names


def split_steps(steps: int, sft_fraction: float) -> tuple[int, int]:
    """(SFT steps, RL steps) of `sft_then_rl`: `round(fraction * steps)`, each stage >= 1 step."""
    if not 0.0 < sft_fraction < 1.0:
        raise ValueError(f"--sft-fraction must be in (0, 1), got {sft_fraction}")
    if steps < 2:
        raise ValueError(f"{SFT_THEN_RL} needs --steps >= 2 (one SFT and one RL step), got {steps}")
    sft_steps = min(max(1, math.floor(sft_fraction * steps + 0.5)), steps - 1)
    return sft_steps, steps - sft_steps


@dataclass(frozen=True)
class Stage:
    """One `chord-train` run of a method.

    `step_offset`: added to the stage's own step numbers to place them on the method's axis.
    `init_from`: name of the earlier stage whose final checkpoint is this stage's model.
    """

    name: str
    method: str
    steps: int
    step_offset: int = 0
    init_from: str | None = None


@dataclass(frozen=True)
class MethodPlan:
    name: str
    stages: tuple[Stage, ...]

    @property
    def steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    @property
    def switch_steps(self) -> list[int]:
        """Steps after which the next stage starts (where a plot marks the switch)."""
        return [stage.step_offset + stage.steps for stage in self.stages[:-1]]


def plan_method(name: str, steps: int, sft_fraction: float = 0.5) -> MethodPlan:
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if name != SFT_THEN_RL:
        return MethodPlan(name, (Stage("train", name, steps),))
    sft_steps, rl_steps = split_steps(steps, sft_fraction)
    return MethodPlan(
        name,
        (
            Stage("sft", "sft", sft_steps),
            Stage("rl", "grpo", rl_steps, step_offset=sft_steps, init_from="sft"),
        ),
    )


def override_key(override: str) -> str:
    """The config key an override sets: `+a.b=1` -> `a.b`, `~a.b` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def check_user_overrides(overrides: list[str]) -> None:
    """Reject malformed overrides and the keys chord-compare sets itself (naming the flag to use)."""
    for override in overrides:
        if override.startswith("-"):
            raise ValueError(f"unknown option {override!r} (hydra overrides look like key=value)")
        if "=" not in override and not override.startswith("~"):
            raise ValueError(f"{override!r} is not a hydra override (key=value)")
        key = override_key(override)
        if key in RESERVED_KEYS:
            raise ValueError(f"{key}: set by chord-compare for every method; use {RESERVED_KEYS[key]}")


def stage_overrides(
    stage: Stage,
    *,
    seed: int,
    run_dir: Path,
    save_checkpoint: bool,
    user_overrides: list[str],
    model_path: str | Path | None = None,
) -> list[str]:
    """Hydra overrides of one stage, in order: defaults the user may change, the user's
    overrides, then what the comparison fixes (later values win in hydra)."""
    soft = ["trainer.val_before_train=false", "trainer.test_freq=-1", "trainer.save_freq=-1"]
    fixed = [
        f"method={stage.method}",
        f"trainer.total_training_steps={stage.steps}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        "trainer.resume_mode=disable",
        f"data.seed={seed}",
        f"++chord.expert.seed={seed}",  # a ChordConfig key the yaml does not list
        f"++chord.prefix.seed={seed}",  # uft's hint draws (prefix-guided methods)
        f"actor_rollout_ref.rollout.seed={seed}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={run_dir / 'metrics.jsonl'}",
        f"hydra.run.dir={run_dir / 'hydra'}",
    ]
    if save_checkpoint:
        # Only the last step is saved, with full HF weights next to the shards: evaluation and
        # the next stage load them as they were trained (verl's shard merger would cast to bf16).
        fixed += [
            f"trainer.save_freq={stage.steps}",
            "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
        ]
    if model_path is not None:
        fixed.append(f"actor_rollout_ref.model.path={model_path}")
    return [*soft, *user_overrides, *fixed]


def sweep_overrides(
    stage: Stage,
    *,
    seeds: list[int],
    sweep_dir: Path,
    save_checkpoint: bool,
    user_overrides: list[str],
) -> list[str]:
    """Hydra overrides of one launch that trains `stage` once per seed: `stage_overrides` without
    `PER_SEED_KEYS`, then `sweep.seeds=[...]` and `sweep.dir=<sweep_dir>` (seed s writes
    `<sweep_dir>/seed<s>/`); `hydra.run.dir` is `<sweep_dir>/hydra`."""
    per_run = stage_overrides(
        stage,
        seed=seeds[0],
        run_dir=sweep_dir,
        save_checkpoint=save_checkpoint,
        user_overrides=user_overrides,
    )
    kept = [o for o in per_run if override_key(o) not in PER_SEED_KEYS]
    return [*kept, f"sweep.seeds=[{','.join(str(s) for s in seeds)}]", f"sweep.dir={sweep_dir}"]


def trainer_command(python: str, config_name: str, overrides: list[str]) -> list[str]:
    return [python, "-m", "recipe.train.main", "--config-name", config_name, *overrides]


def compose_config(config_name: str, overrides: list[str], conf_dir: Path = CONF_DIR) -> Any:
    """The config `chord-train --config-name <config_name> <overrides>` would run (not resolved)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        # hydra.* overrides configure the app's output folders, which compose does not have
        app_overrides = [o for o in overrides if not o.startswith("hydra.")]
        return compose(config_name=config_name, overrides=app_overrides)


def rows_per_rank_mini_batch(cfg: Any) -> int:
    """Rows (rollout + expert) one data-parallel rank holds in one actor mini-batch."""
    from omegaconf import OmegaConf

    from recipe.train.config import load_chord_config
    from recipe.train.hybrid_config import PAIRED_LOSSES

    actor = cfg.actor_rollout_ref.actor
    n = cfg.actor_rollout_ref.rollout.n
    rollout_rows = cfg.data.train_batch_size * n
    chord = load_chord_config(OmegaConf.to_container(cfg.chord, resolve=True))
    expert_rows = chord.expert_rows(rollout_rows)
    if chord.spec.loss in PAIRED_LOSSES:  # as ChordRayTrainer: one expert trace per prompt (LUFFY, HPT, SRFT)
        expert_rows = cfg.data.train_batch_size
    num_mini_batch = rollout_rows // (actor.ppo_mini_batch_size * n)
    dp = cfg.trainer.n_gpus_per_node * cfg.trainer.nnodes // actor.get("ulysses_sequence_parallel_size", 1)
    return (rollout_rows + expert_rows) // (dp * num_mini_batch)


def micro_batch_override(cfg: Any) -> str | None:
    """An override that makes the actor's micro-batch size divide a rank's mini-batch, or None.

    A preset tuned for the methods with expert rows (cpu_tiny: 8 rollout + 4 expert rows per
    rank, micro-batch 12) leaves GRPO's 8 rows indivisible, which verl rejects. Micro-batching
    does not change the update (every loss term is normalised by its global token count), so
    the largest divisor not above the configured size keeps the methods comparable.
    """
    actor = cfg.actor_rollout_ref.actor
    micro = actor.get("ppo_micro_batch_size_per_gpu")
    if actor.use_dynamic_bsz or not micro:
        return None
    rows = rows_per_rank_mini_batch(cfg)
    if rows % micro == 0:
        return None
    divisor = max(d for d in range(1, min(micro, rows) + 1) if rows % d == 0)
    return f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={divisor}"


# ---------------------------------------------------------------------------- seeds (--seeds)
def seed_values(seed: int, seeds: int) -> list[int]:
    """`--seed S --seeds N` -> `[S, S + 1, ..., S + N - 1]`."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    return list(range(seed, seed + seeds))


def run_order(methods: list[str], seeds: list[int]) -> list[tuple[int, str]]:
    """(seed, method) pairs, seed-major: every method of the first seed, then of the next, so
    an interrupted comparison has the same number of seeds for every method (give or take one)."""
    return [(seed, method) for seed in seeds for method in methods]


def why_not_swept(plan: MethodPlan, num_seeds: int, sweep: bool) -> str | None:
    """Why `plan` cannot run its seeds as one launch, before its config is read (None: it may,
    if `recipe.train.sweep.sweep_refusal` accepts the config)."""
    if num_seeds < 2:
        return "one seed"
    if not sweep:
        return "--no-sweep"
    if len(plan.stages) > 1:
        names = " -> ".join(stage.name for stage in plan.stages)
        return f"{len(plan.stages)} stages ({names}), each from the previous stage's checkpoint of the seed"
    return None


@dataclass(frozen=True)
class Launch:
    """One trainer launch of the queue: `method` with `seeds` (several: one sweep launch)."""

    method: str
    seeds: tuple[int, ...]

    @property
    def is_sweep(self) -> bool:
        return len(self.seeds) > 1


def launch_order(methods: list[str], seeds: list[int], swept: set[str]) -> list[Launch]:
    """The launches in `run_order`, where a swept method's runs are one launch of all seeds, at
    its place among the first seed's runs (method-major for swept methods, seed-major otherwise)."""
    launches: list[Launch] = []
    for seed, method in run_order(methods, seeds):
        if method not in swept:
            launches.append(Launch(method, (seed,)))
        elif seed == seeds[0]:
            launches.append(Launch(method, tuple(seeds)))
    return launches


def seed_walls(origins: list[float | None], launch_end: float) -> list[float]:
    """Wall seconds of each seed of a sweep launch, from the clock starts of its seeds (in order;
    None: never started): a seed's clock runs until the next seed's starts, the last started
    seed's until the launch ended; a seed that never started gets 0."""
    walls = []
    for i, origin in enumerate(origins):
        later = [o for o in origins[i + 1 :] if o is not None]
        walls.append(0.0 if origin is None else (later[0] if later else launch_end) - origin)
    return walls


def method_run_dir(runs: Path, method: str, seed: int, num_seeds: int) -> Path:
    """Where one (method, seed) run lives: `runs/<method>/` when the comparison has one seed
    (the layout from before `--seeds`), `runs/<method>/seed<seed>/` otherwise."""
    return runs / method if num_seeds == 1 else runs / method / f"seed{seed}"


def check_no_seed_runs_lost(runs: Path, methods: list[str], num_seeds: int) -> None:
    """Refuse a one-seed comparison whose `runs/<method>/` (wiped before each run) holds the
    per-seed folders (`seed<k>/`) of an earlier `--seeds` comparison: they would be deleted."""
    if num_seeds != 1:
        return
    for method in methods:
        folder = runs / method
        seeds = sorted(p.name for p in folder.glob("seed*") if p.is_dir() and p.name[4:].isdigit())
        if seeds:
            raise ValueError(
                f"{folder} holds the per-seed runs of an earlier --seeds comparison "
                f"({', '.join(seeds)}); a one-seed run of {method} would delete them: use another "
                "--out, or remove them first"
            )
