"""`chord_prefix`: verl agent loop for prefix-guided rollouts (UFT, TRAPO).

verl's agent-loop worker runs one agent loop per rollout row, chosen by the row's `agent_name`
from verl's registry (`@register`). `ChordRayTrainer._get_gen_batch` names this loop for the
training rows of a prefix variant and gives each row the training step (`STEP_KEY`), so the
schedule is a function of the global step (resume-exact); validation rows keep verl's default
single-turn loop (plain rollouts).

Per row, with the expert solution `extra_info[chord.prefix.response_key]` tokenised once
(offset mapping: steps and cuts are token positions of that one tokenisation):
- the prompt sent to the server is ``prompt ids + prefix ids`` (``server_manager.generate(
  prompt_ids=..., sampling_params=...)``, token ids in and out: the interface every rollout
  backend serves, `hf` and `vllm` alike), with ``max_tokens = response_length - len(prefix)``;
- the row's prompt is the plain prompt and its response ``prefix + continuation``;
  `response_mask` is 0 on prefix tokens and 1 on generated ones, so verl's advantages, the
  policy-gradient term, entropy and KL see only the policy's tokens (as tool observations in
  a multi-turn loop). The prefix length returns in `extra_fields` (`PREFIX_LEN`, becoming a
  per-row column), from which the trainer builds the prefix-token mask of the SFT term;
- the reward (verl's reward loop, on the response) scores prefix + continuation.

UFT: one hint per prompt and step (`chord.prefix.uft_hint_steps` of the step and the prompt's
key, `extra_info["index"]`, else the prompt text), the same for its n rows.
TRAPO: the n rows of a prompt (same `uid`, slot = `priority` mod n: verl numbers the rows of
the interleaved batch in order) share a `_TrapoGroup` in this worker. Plain slots generate at
once; a stage's slots wait for the scores of all earlier slots, which the loop computes with
the run's reward function (`reward.custom_reward_function`) on what verl's reward manager will
score; a stage not triggered generates plain rollouts.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from chord.prefix import step_ends, step_token_ends, trapo_cut, uft_hint_steps
from recipe.train.config import ChordConfig, load_chord_config

AGENT_NAME = "chord_prefix"
STEP_KEY = "chord_prefix_step"  # per-row column: the training step the rollout belongs to
PREFIX_LEN = "chord_prefix_len"  # extra field -> per-row column: expert tokens at the response's start
PREFIX_FRACTION = "chord_prefix_fraction"  # prefix tokens / solution tokens


class _TrapoGroup:
    """The n rows of one prompt at one step: each slot's score, once known."""

    def __init__(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        self.scores: list[asyncio.Future] = [loop.create_future() for _ in range(n)]
        self.claimed: set[int] = set()
        self.finished = 0


_TRAPO_GROUPS: dict[tuple[int, str], _TrapoGroup] = {}


def _score_value(result: Any) -> float:
    return float(result["score"]) if isinstance(result, dict) else float(result)


@register(AGENT_NAME)
class PrefixAgentLoop(AgentLoopBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chord: ChordConfig = load_chord_config(self.config.get("chord"))
        if self.chord.spec.loss != "prefix":
            raise ValueError(
                f"agent_name={AGENT_NAME!r}: chord.variant={self.chord.variant!r} is not a prefix variant"
            )
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> AgentLoopOutput:
        prompt_ids = await self.ct_build_initial_tokens(list(kwargs["raw_prompt"]))
        solution_ids, cuts = self._solution(kwargs)
        step = int(kwargs[STEP_KEY])
        if self.chord.variant == "uft":
            schedule = self.chord.prefix.uft_schedule()
            n_steps = uft_hint_steps(schedule, step, self._prompt_key(kwargs), len(cuts))
            prefix = solution_ids[: cuts[n_steps - 1]] if n_steps else []
            return await self._generate(prompt_ids, prefix, len(solution_ids), sampling_params, int(priority))
        return await self._run_trapo(
            prompt_ids, solution_ids, cuts, step, int(priority), sampling_params, kwargs
        )

    # ------------------------------------------------------------------ pieces
    def _solution(self, kwargs: dict) -> tuple[list[int], list[int]]:
        """The expert solution's token ids and the token counts ending each of its steps."""
        cfg = self.chord.prefix
        info = kwargs.get("extra_info")
        text = info.get(cfg.response_key) if isinstance(info, dict) else None
        if not isinstance(text, str):
            where = info.get("index", "?") if isinstance(info, dict) else "?"
            raise ValueError(
                f"chord.prefix.response_key: RL row {where} has no string extra_info[{cfg.response_key!r}] "
                f"(chord.variant={self.chord.variant!r} needs each prompt's expert solution)"
            )
        separator = info.get(cfg.separator_key) or cfg.step_separator
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
        return ids, step_token_ends(offsets, step_ends(text, separator))

    @staticmethod
    def _prompt_key(kwargs: dict) -> str:
        info = kwargs.get("extra_info")
        if isinstance(info, dict) and info.get("index") is not None:
            return f"index:{info['index']}"
        return f"crc:{zlib.crc32(repr(list(kwargs['raw_prompt'])).encode())}"

    async def _generate(
        self,
        prompt_ids: list[int],
        prefix: list[int],
        solution_tokens: int,
        sampling_params: dict[str, Any],
        priority: int,
    ) -> AgentLoopOutput:
        prefix = list(prefix[: max(self.response_length - 1, 0)])  # at least one generated token
        params = dict(sampling_params, max_tokens=self.response_length - len(prefix))
        metrics: dict[str, Any] = {}
        with simple_timer("generate_sequences", metrics):
            # As verl's own loops: under full_determinism the request is named after its batch row
            # (the hf rollout seeds the row's sample from it); priority goes to vLLM's scheduler.
            deterministic = getattr(self.rollout_config, "full_determinism", False)
            out = await self.server_manager.generate(
                request_id=f"det-{priority}" if deterministic else uuid4().hex,
                prompt_ids=prompt_ids + prefix,
                sampling_params=params,
                priority=priority,
            )
        metrics["num_preempted"] = out.num_preempted if out.num_preempted is not None else -1
        continuation = list(out.token_ids)[: self.response_length - len(prefix)]
        logprobs = None
        if out.log_probs:  # no rollout log-prob for expert tokens: 0 there (masked out by response_mask)
            logprobs = ([0.0] * len(prefix) + list(out.log_probs))[: self.response_length]
        extra = dict(out.extra_fields)
        extra.update(
            {
                PREFIX_LEN: len(prefix),
                PREFIX_FRACTION: len(prefix) / solution_tokens if solution_tokens else 0.0,
                "turn_scores": [],
                "tool_rewards": [],
            }
        )
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=prefix + continuation,
            response_mask=[0] * len(prefix) + [1] * len(continuation),
            response_logprobs=logprobs,
            num_turns=2,
            metrics=metrics,
            extra_fields=extra,
        )

    # ------------------------------------------------------------------ TRAPO
    async def _run_trapo(
        self,
        prompt_ids: list[int],
        solution_ids: list[int],
        cuts: list[int],
        step: int,
        priority: int,
        sampling_params: dict[str, Any],
        kwargs: dict,
    ) -> AgentLoopOutput:
        schedule = self.chord.prefix.trapo_schedule()
        n = int(self.rollout_config.n)
        slot_index = priority % n
        key = (step, str(kwargs["uid"]))
        group = _TRAPO_GROUPS.get(key)
        if group is None:
            group = _TRAPO_GROUPS[key] = _TrapoGroup(n)
        if slot_index in group.claimed:
            raise RuntimeError(f"TRAPO: slot {slot_index} of prompt {key[1]} at step {step} claimed twice")
        group.claimed.add(slot_index)
        slot = schedule.slots()[slot_index]
        try:
            prefix: list[int] = []
            if slot.stage is not None:
                earlier = await asyncio.gather(*group.scores[: slot.first_slot_of_stage])
                correct = [score >= self.chord.prefix.correct_score for score in earlier]
                if schedule.guided(slot, correct):
                    prefix = solution_ids[: trapo_cut(cuts, slot.fraction)]
            output = await self._generate(prompt_ids, prefix, len(solution_ids), sampling_params, priority)
            group.scores[slot_index].set_result(await self._score(output, kwargs))
            return output
        except BaseException as exc:
            if not group.scores[slot_index].done():
                group.scores[slot_index].set_exception(exc)
            raise
        finally:
            group.finished += 1
            if group.finished == n:
                _TRAPO_GROUPS.pop(key, None)

    async def _score(self, output: AgentLoopOutput, kwargs: dict) -> float:
        """The score verl's reward manager will give this row (same function, same decoded text)."""
        from verl.trainer.ppo.reward import get_custom_reward_fn

        fn = get_custom_reward_fn(self.config)
        if fn is None:
            raise ValueError(
                "reward.custom_reward_function.path: TRAPO scores its plain rollouts with the run's "
                "reward function; none is configured"
            )
        text = self.tokenizer.decode(output.response_ids, skip_special_tokens=True)
        info = dict(kwargs.get("extra_info") or {})
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        ids = output.response_ids
        info["truncated"] = len(ids) >= self.response_length and (not ids or ids[-1] not in eos_ids)
        ground_truth = (kwargs.get("reward_model") or {}).get("ground_truth")
        source = kwargs.get("data_source")
        result = fn(data_source=source, solution_str=text, ground_truth=ground_truth, extra_info=info)
        if asyncio.iscoroutine(result):
            result = await result
        return _score_value(result)
