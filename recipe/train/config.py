"""The `chord:` config section: one dataclass tree holding every key and its default.

Hydra yaml (`conf/`) only overrides these. `load_chord_config(cfg)` validates the section
once at start-up: an unknown key, a wrong type or an inconsistent combination fails with a
message naming the key (e.g. `chord.expert.rows_per_step`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from chord.schedules import build_mu_schedule
from recipe.train.hybrid_config import (
    PAIRED_LOSSES,
    HptConfig,
    ReliftConfig,
    SrftConfig,
    check_hybrid_settings,
    validate_hybrid_config,
)


@dataclass(frozen=True)
class VariantSpec:
    """What a loss variant means for the trainer."""

    sft_weighting: str | None  # None: the variant has no SFT term (plain GRPO)
    uses_expert: bool
    needs_ref_logp: bool = False
    needs_quality: bool = False
    loss: str = "chord"  # "chord" (mixed objective), "luffy" or "prefix" (prefix-guided rollouts)


VARIANTS: dict[str, VariantSpec] = {
    "grpo": VariantSpec(sft_weighting=None, uses_expert=False),
    "sft": VariantSpec(sft_weighting="nll", uses_expert=True),
    "mix": VariantSpec(sft_weighting="nll", uses_expert=True),
    "chord_mu": VariantSpec(sft_weighting="nll", uses_expert=True),
    "chord_phi": VariantSpec(sft_weighting="phi", uses_expert=True),
    "dft": VariantSpec(sft_weighting="dft", uses_expert=True),
    "iw_sft": VariantSpec(sft_weighting="iw", uses_expert=True, needs_ref_logp=True),
    "iw_sft_q": VariantSpec(sft_weighting="iw_q", uses_expert=True, needs_ref_logp=True, needs_quality=True),
    "iw_token": VariantSpec(sft_weighting="iw_token", uses_expert=True, needs_ref_logp=True),
    # LUFFY: each prompt's expert response (from the RL data) joins its GRPO group; no mu.
    "luffy": VariantSpec(sft_weighting=None, uses_expert=False, loss="luffy"),
    # The newer hybrids (recipe.train.hybrids): demonstrations paired with the RL prompts.
    "hpt": VariantSpec(sft_weighting=None, uses_expert=False, loss="hpt"),
    "srft": VariantSpec(sft_weighting=None, uses_expert=False, loss="srft"),
    "relift": VariantSpec(sft_weighting=None, uses_expert=False, loss="relift"),
    # Prefix-guided rollouts (`chord.prefix`): an expert prefix starts some rollouts
    # (recipe.train.prefix_loop); GRPO on generated tokens, an SFT term on prefix tokens.
    "uft": VariantSpec(sft_weighting=None, uses_expert=False, loss="prefix"),
    "trapo": VariantSpec(sft_weighting=None, uses_expert=False, loss="prefix"),
}


@dataclass
class MuConfig:
    """The global coefficient mu: `schedule` picks a `chord.schedules` entry, the rest are its parameters."""

    schedule: str = "constant"  # constant | linear | cosine | adaptive
    value: float = 0.1  # constant
    start: float = 1.0  # linear
    end: float = 0.0
    steps: int = 100
    warmup_steps: int = 0  # cosine
    decay_steps: int = 200
    peak: float = 0.9
    valley: float = 0.05
    tau: float = 0.5  # adaptive: mu = clip(tau - mean on-policy reward, 0, 1)

    def schedule_params(self) -> dict[str, Any]:
        by_name = {
            "constant": {"value": self.value},
            "linear": {"start": self.start, "end": self.end, "steps": self.steps},
            "cosine": {
                "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps,
                "peak": self.peak,
                "valley": self.valley,
            },
            "adaptive": {"tau": self.tau},
        }
        if self.schedule not in by_name:
            raise ValueError(
                f"chord.mu.schedule: unknown schedule {self.schedule!r}; known: {sorted(by_name)}"
            )
        return by_name[self.schedule]


@dataclass
class ExpertConfig:
    """The expert (demonstration) parquet buffer merged into every training step."""

    files: list[str] = field(default_factory=list)
    rows_per_step: int | None = None  # explicit count, or
    # the expert share of the whole step, expert / (rollout + expert) rows, in (0, 1):
    # expert rows = round(ratio * rollout / (1 - ratio)), e.g. 0.2 with 256 rollout rows -> 64
    ratio: float | None = None
    schema: str = "auto"  # auto | messages | prompt_response
    overflow: str = "truncate"  # truncate | drop (rows over the rollout's prompt/response lengths)
    shuffle: bool = True
    seed: int = 0
    shuffle_window_row_groups: int = 8
    prefetch: bool = True  # read and tokenise the next step's rows in the background
    # At resume the files must be those the checkpoint recorded (path, size, rows, schema);
    # true accepts changed files (the expert stream then restarts on the new data).
    accept_changed_files: bool = False


@dataclass
class SFTConfig:
    cutoff_prob: float = 1.0  # phi / nll: tokens with p > cutoff give no gradient (1.0 = off)


@dataclass
class IWConfig:
    """iw-SFT: w_b = clip(exp(temp * mean_t(sg(logp) - ref_logp)), 0, w_max); reference = initial policy.

    `iw_token`: w_t = clip(exp(temp * (sg(logp_t) - ref_logp_t)), 0.2, 1.8). `normalize`:
    w <- w * n / sum(w) over the expert rows (tokens for `iw_token`) of each whole mini-batch,
    all micro-batches and ranks (one extra no-grad forward per mini-batch, in the worker).
    """

    temp: float = 1.0
    w_max: float = 16.0
    normalize: bool = False


@dataclass
class LuffyConfig:
    """LUFFY: off-policy tokens use f(p) = p / (p + gamma); expert rows come from the RL rows'
    `extra_info[response_key]` (one per prompt) and score `expert_reward` (curated: correct)."""

    gamma: float = 0.1
    expert_reward: float = 1.0
    response_key: str = "expert_response"


@dataclass
class UftConfig:
    """UFT (chord.prefix): p_s = low + amp * (1 + cos(pi * s / total_steps)) up to total_steps, then 0;
    the hint is the first c_K of min(max_parts, steps) parts, K ~ Binomial; beta * token-mean NLL."""

    total_steps: int = 300
    low: float = 0.05
    amp: float = 0.45
    max_parts: int = 5
    beta: float = 0.001


@dataclass
class TrapoStageConfig:
    rows: int = 1
    fraction: float = 1.0
    if_correct_below: int = 1


@dataclass
class TrapoConfig:
    """TRAPO (chord.prefix): `plain` rollouts, then each stage's `rows` guided with a `fraction`
    prefix if fewer than `if_correct_below` earlier rollouts of the prompt were correct;
    trust-region SFT `-p / max(sg(p), alpha)` on prefix tokens, weighted `coef`."""

    plain: int = 4
    stages: list[TrapoStageConfig] = field(
        default_factory=lambda: [
            TrapoStageConfig(2, 0.25, 2),
            TrapoStageConfig(1, 0.5, 4),
            TrapoStageConfig(1, 1.0, 7),
        ]
    )
    alpha: float = 0.1
    coef: float = 1.0


@dataclass
class PrefixConfig:
    """Prefix-guided rollouts (variants uft, trapo; chord.prefix, recipe.train.prefix_loop).

    The expert solution of an RL row is `extra_info[response_key]`; its steps are split on
    `extra_info[separator_key]` when the row has one, else on `step_separator`. TRAPO counts a
    rollout correct when its score (the reward function of `reward.custom_reward_function`) is
    at least `correct_score`. `seed` seeds UFT's hint draws.
    """

    response_key: str = "expert_response"
    separator_key: str = "step_separator"
    step_separator: str = "\n\n"
    correct_score: float = 1.0
    seed: int = 0
    uft: UftConfig = field(default_factory=UftConfig)
    trapo: TrapoConfig = field(default_factory=TrapoConfig)

    def uft_schedule(self):
        from chord.prefix import UftSchedule

        u = self.uft
        return UftSchedule(u.total_steps, u.low, u.amp, u.max_parts, self.seed)

    def trapo_schedule(self):
        from chord.prefix import TrapoSchedule, TrapoStage

        stages = tuple(TrapoStage(s.rows, s.fraction, s.if_correct_below) for s in self.trapo.stages)
        return TrapoSchedule(self.trapo.plain, stages)


@dataclass
class ChordConfig:
    variant: str = "chord_phi"
    mu: MuConfig = field(default_factory=MuConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    iw: IWConfig = field(default_factory=IWConfig)
    luffy: LuffyConfig = field(default_factory=LuffyConfig)
    hpt: HptConfig = field(default_factory=HptConfig)
    srft: SrftConfig = field(default_factory=SrftConfig)
    relift: ReliftConfig = field(default_factory=ReliftConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    # A non-finite loss or gradient: "stop" the run naming term, step and rows (the last
    # checkpoint stays the resume point), or "skip" that optimizer step (chord/nonfinite_skipped).
    on_nonfinite: str = "stop"

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    def expert_rows(self, rollout_rows: int) -> int:
        """Expert rows per step: an explicit count, or the `ratio` share of the whole step.

        ``E = round(ratio * R / (1 - ratio))`` for ``R`` rollout rows, so that
        ``E / (R + E) = ratio`` (CHORD's reference: 0.2 of 320 rows = 64 expert + 256 rollout).
        """
        if not self.spec.uses_expert:
            return 0
        if self.expert.rows_per_step is not None:
            return int(self.expert.rows_per_step)
        ratio = float(self.expert.ratio)
        rows = round(ratio * rollout_rows / (1.0 - ratio))
        if rows < 1:
            raise ValueError(
                f"chord.expert.ratio: {ratio} of a step with {rollout_rows} rollout rows is no expert row"
            )
        return rows


def expert_rows_per_step(config: Any, chord: ChordConfig) -> int:
    """Expert rows merged into each step, for the whole verl `config` (LUFFY, HPT, SRFT: one per prompt)."""
    if chord.spec.loss in PAIRED_LOSSES:
        return int(config.data.train_batch_size)
    return chord.expert_rows(int(config.data.train_batch_size) * int(config.actor_rollout_ref.rollout.n))


def check_batch_arithmetic(config: Any, chord: ChordConfig) -> None:
    """Fail naming the keys when expert rows cannot be split like the rollout rows.

    The trainer spreads both kinds evenly over data-parallel ranks x mini-batches; with fixed
    micro-batches each rank's share of a mini-batch must also divide into micro-batches.
    """
    actor = config.actor_rollout_ref.actor
    rollout_rows = int(config.data.train_batch_size) * int(config.actor_rollout_ref.rollout.n)
    expert_rows = expert_rows_per_step(config, chord)
    n = int(config.actor_rollout_ref.rollout.n)
    num_mini_batch = rollout_rows // (int(actor.ppo_mini_batch_size) * n)
    world = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
    dp = world // int(actor.get("ulysses_sequence_parallel_size", 1) or 1)
    blocks = dp * max(num_mini_batch, 1)
    if expert_rows % blocks:
        raise ValueError(
            f"{_expert_key(chord)}: {expert_rows} expert rows per step must divide evenly "
            f"over {dp} data-parallel ranks x {num_mini_batch} mini-batches"
            f"{_nearby(chord, expert_rows, blocks, rollout_rows)}"
        )
    per_rank = (rollout_rows + expert_rows) // blocks
    micro = actor.get("ppo_micro_batch_size_per_gpu")
    if not actor.use_dynamic_bsz and micro and per_rank % micro:
        raise ValueError(
            f"chord.expert.rows_per_step / actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu: each "
            f"rank's mini-batch holds {per_rank} rows (rollout + expert), not a multiple of {micro}"
        )


def _expert_key(chord: ChordConfig) -> str:
    if chord.spec.loss in PAIRED_LOSSES:
        return f"data.train_batch_size ({chord.variant}: one expert row per prompt)"
    return "chord.expert.ratio" if chord.expert.rows_per_step is None else "chord.expert.rows_per_step"


def _nearby(chord: ChordConfig, rows: int, blocks: int, rollout_rows: int) -> str:
    """``"; X or Y would"``: the settings next to `rows` giving a multiple of `blocks` expert rows."""
    if chord.spec.loss in PAIRED_LOSSES:
        return ""
    below = rows // blocks * blocks
    counts = [c for c in (below, below + blocks) if c > 0]
    if chord.expert.rows_per_step is None:
        options = [f"chord.expert.ratio={c / (rollout_rows + c):.6g} ({c} rows)" for c in counts]
    else:
        options = [f"chord.expert.rows_per_step={c}" for c in counts]
    return f"; {' or '.join(options)} would"


# verl settings and the values the CHORD actor loss supports (recipe.train.actor_loss); any
# other value is refused at start-up, by key. Honoured as verl does (any value):
# actor.clip_ratio / clip_ratio_low / clip_ratio_high / clip_ratio_c, actor.loss_scale_factor,
# actor.entropy_coeff, actor.use_kl_loss / kl_loss_coef / kl_loss_type, and
# algorithm.rollout_correction (rollout_is: the weights multiply the GRPO surrogate;
# rollout_rs: the rejection mask reaches the loss through `response_mask`).
# None: the key is absent and verl's default (the first value) applies.
SUPPORTED_VERL_SETTINGS: dict[str, tuple[Any, ...]] = {
    "actor_rollout_ref.actor.policy_loss.loss_mode": ("vanilla", None),
    "actor_rollout_ref.actor.loss_agg_mode": (
        "token-mean",
        "seq-mean-token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
        None,
    ),
    "algorithm.rollout_correction.bypass_mode": (False, None),
    "distillation.enabled": (False, None),
}
# LUFFY recomputes GRPO advantages with the expert trace in each group.
SUPPORTED_LUFFY_SETTINGS: dict[str, tuple[Any, ...]] = {"algorithm.adv_estimator": ("grpo",)}
# Prefix-guided variants: one GRPO group per prompt (guided and plain rows together).
SUPPORTED_PREFIX_SETTINGS: dict[str, tuple[Any, ...]] = {"algorithm.adv_estimator": ("grpo",)}


def check_verl_settings(config: Any, chord: ChordConfig) -> None:
    """Refuse, naming the key, a verl setting the CHORD loss would otherwise ignore."""
    supported = dict(SUPPORTED_VERL_SETTINGS)
    if chord.spec.loss == "luffy":
        supported.update(SUPPORTED_LUFFY_SETTINGS)
    if chord.spec.loss == "prefix":
        supported.update(SUPPORTED_PREFIX_SETTINGS)
    for key, allowed in supported.items():
        value = OmegaConf.select(config, key, default=None)
        if value not in allowed:
            options = ", ".join(repr(a) for a in allowed if a is not None)
            raise ValueError(
                f"{key}: {value!r} is not supported by chord-train's actor loss "
                f"(variant {chord.variant!r}); supported: {options}"
            )
    check_hybrid_settings(config, chord)


def load_chord_config(cfg: DictConfig | dict | None) -> ChordConfig:
    """Merge `cfg` (the `chord:` section) over the defaults and validate it."""
    schema = OmegaConf.structured(ChordConfig)
    try:
        merged = OmegaConf.merge(schema, cfg if cfg is not None else {})
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        reason = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ValueError(f"chord.{key}: {reason}") from None
    chord: ChordConfig = OmegaConf.to_object(merged)
    _validate(chord)
    return chord


def _validate(chord: ChordConfig) -> None:
    if chord.variant not in VARIANTS:
        raise ValueError(f"chord.variant: unknown variant {chord.variant!r}; known: {sorted(VARIANTS)}")
    try:
        build_mu_schedule(chord.mu.schedule, **chord.mu.schedule_params())
    except ValueError as exc:
        raise ValueError(f"chord.mu: {exc}") from None
    exp = chord.expert
    if exp.schema not in ("auto", "messages", "prompt_response"):
        raise ValueError(
            f"chord.expert.schema: expected auto, messages or prompt_response, got {exp.schema!r}"
        )
    if exp.overflow not in ("truncate", "drop"):
        raise ValueError(f"chord.expert.overflow: expected truncate or drop, got {exp.overflow!r}")
    if chord.spec.uses_expert:
        if not exp.files:
            raise ValueError(f"chord.expert.files: variant {chord.variant!r} needs expert parquet files")
        if (exp.rows_per_step is None) == (exp.ratio is None):
            raise ValueError("chord.expert.rows_per_step / chord.expert.ratio: set exactly one of them")
        if exp.rows_per_step is not None and exp.rows_per_step < 1:
            raise ValueError(f"chord.expert.rows_per_step: must be >= 1, got {exp.rows_per_step}")
        if exp.ratio is not None and not 0 < exp.ratio < 1:
            raise ValueError(
                f"chord.expert.ratio: the expert share of a step, expert / (rollout + expert) rows, "
                f"must be in (0, 1), got {exp.ratio}"
            )
    if not 0.0 < chord.sft.cutoff_prob <= 1.0:
        raise ValueError(f"chord.sft.cutoff_prob: must be in (0, 1], got {chord.sft.cutoff_prob}")
    if chord.iw.temp <= 0 or chord.iw.w_max <= 0:
        raise ValueError("chord.iw.temp / chord.iw.w_max: must be > 0")
    if chord.on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"chord.on_nonfinite: expected stop or skip, got {chord.on_nonfinite!r}")
    if chord.luffy.gamma <= 0:
        raise ValueError(f"chord.luffy.gamma: must be > 0, got {chord.luffy.gamma}")
    validate_hybrid_config(chord)
    _validate_prefix(chord.prefix)


def _validate_prefix(prefix: PrefixConfig) -> None:
    if not prefix.step_separator:
        raise ValueError("chord.prefix.step_separator: must be a non-empty string")
    prefix.uft_schedule()  # raises naming the key
    if prefix.uft.beta < 0:
        raise ValueError(f"chord.prefix.uft.beta: must be >= 0, got {prefix.uft.beta}")
    if not 0 < prefix.trapo.alpha <= 1:
        raise ValueError(f"chord.prefix.trapo.alpha: must be in (0, 1], got {prefix.trapo.alpha}")
    if prefix.trapo.coef < 0:
        raise ValueError(f"chord.prefix.trapo.coef: must be >= 0, got {prefix.trapo.coef}")


def check_prefix_settings(config: Any, chord: ChordConfig) -> None:
    """Prefix variants: the rollout runs verl's agent loops, TRAPO's schedule fills rollout.n, and
    every prompt's n rows reach one agent-loop worker (TRAPO's stages wait on earlier rows)."""
    if chord.spec.loss != "prefix":
        return
    rollout = config.actor_rollout_ref.rollout
    if rollout.get("mode", "async") != "async":
        raise ValueError(
            f"actor_rollout_ref.rollout.mode: {rollout.mode!r}; chord.variant={chord.variant!r} "
            "needs verl's agent loops (async)"
        )
    if chord.variant == "trapo":
        chord.prefix.trapo_schedule().check(int(rollout.n))
        workers = int(OmegaConf.select(config, "actor_rollout_ref.rollout.agent.num_workers", default=1) or 1)
        prompts = int(config.data.train_batch_size)
        if prompts % workers:
            raise ValueError(
                f"actor_rollout_ref.rollout.agent.num_workers: {workers} agent-loop workers do not divide "
                f"data.train_batch_size={prompts}; TRAPO needs all rollouts of a prompt in one worker"
            )
