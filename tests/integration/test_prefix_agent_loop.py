"""The `chord_prefix` agent loop on the real hf rollout server (tiny model), without Ray.

The loop is built the way verl's agent-loop worker builds it (its registry entry, hydra
instantiate); the server is our `hf` backend's generation server, which answers the same
`generate(request_id, prompt_ids=..., sampling_params=...)` call as verl's server manager,
wrapped only to record what was sent.
"""

from __future__ import annotations

import asyncio

import hydra
import pytest
from omegaconf import OmegaConf

pytest.importorskip("verl")

from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    DictConfigWrap,
    ToolListWrap,
    _agent_loop_registry,
)
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402

from chord.prefix import step_ends, uft_hint_steps  # noqa: E402
from recipe.plugins.hf_rollout import HFGenerationServer  # noqa: E402
from recipe.train.config import load_chord_config  # noqa: E402
from recipe.train.prefix_loop import AGENT_NAME, PREFIX_FRACTION, PREFIX_LEN, STEP_KEY  # noqa: E402

RESPONSE_LENGTH = 16
SOLUTION = "4+3\n\n=7\n\n7"  # three steps, ten byte tokens
PROMPT = [{"role": "user", "content": "4+3="}]


class RecordingServer:
    """The hf generation server, recording each request's prompt ids and sampling params."""

    def __init__(self, server: HFGenerationServer) -> None:
        self.server = server
        self.calls: list[tuple[list[int], dict]] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.calls.append((list(prompt_ids), dict(sampling_params)))
        return await self.server.generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params)


def _config(chord: dict, n: int = 4):
    return OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {"prompt_length": 40, "response_length": RESPONSE_LENGTH, "n": n}
            },
            "data": {},
            "chord": chord,
            "reward": {"custom_reward_function": {"path": "pkg://chord.rewards", "name": "compute_score"}},
        }
    )


def _server(tiny_model_dir, tiny_tokenizer) -> RecordingServer:
    from types import SimpleNamespace

    config = SimpleNamespace(prompt_length=40, response_length=RESPONSE_LENGTH, seed=0)
    model_config = SimpleNamespace(
        local_path=str(tiny_model_dir), trust_remote_code=False, tokenizer=tiny_tokenizer
    )
    return RecordingServer(HFGenerationServer(config, model_config, replica_rank=0))


def _loop(config, server, tokenizer):
    """As verl's `AgentLoopWorker._run_agent_loop` builds a loop from the registry."""
    return hydra.utils.instantiate(
        config=_agent_loop_registry[AGENT_NAME],
        trainer_config=DictConfigWrap(config=config),
        server_manager=server,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type="qwen2",
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )


def _row(step: int, uid: str = "u0", index: int = 5) -> dict:
    return {
        "raw_prompt": PROMPT,
        "extra_info": {"index": index, "expert_response": SOLUTION},
        "reward_model": {"ground_truth": "7"},
        "data_source": "chord/tiny_arith",
        "uid": uid,
        STEP_KEY: step,
        "agent_name": AGENT_NAME,
    }


def _params() -> dict:
    return {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}


def test_uft_row_sends_prompt_plus_hint_and_masks_the_hint(tiny_model_dir, tiny_tokenizer):
    chord = {"variant": "uft", "prefix": {"uft": {"low": 0.3, "amp": 0.1, "total_steps": 10}}}
    server = _server(tiny_model_dir, tiny_tokenizer)
    solution_ids = tiny_tokenizer.encode(SOLUTION, add_special_tokens=False)
    schedule = load_chord_config(chord).prefix.uft_schedule()

    async def run_all():
        loop = _loop(_config(chord), server, tiny_tokenizer)
        outs = []
        for step in range(12):  # steps with 0..3 hint steps, and 11 > T (no hint)
            outs.append(await loop.run(_params(), priority=0, **_row(step)))
        return outs

    outputs = asyncio.run(run_all())
    ends = step_ends(SOLUTION)
    seen = set()
    for step, (out, (sent, params)) in enumerate(zip(outputs, server.calls, strict=True)):
        steps = uft_hint_steps(schedule, step, "index:5", 3)
        seen.add(steps)
        p = out.extra_fields[PREFIX_LEN]
        # the hint is whole steps of the expert solution, as its own tokens
        assert tiny_tokenizer.decode(out.response_ids[:p]) == (SOLUTION[: ends[steps - 1]] if steps else "")
        assert out.response_ids[:p] == solution_ids[:p]
        assert sent == out.prompt_ids + solution_ids[:p]  # prompt + prefix sent to the server
        assert params["max_tokens"] == RESPONSE_LENGTH - p
        assert out.response_mask == [0] * p + [1] * (len(out.response_ids) - p)
        assert len(out.response_ids) > p and len(out.response_ids) <= RESPONSE_LENGTH
        assert out.extra_fields[PREFIX_FRACTION] == pytest.approx(p / len(solution_ids))
    assert outputs[11].extra_fields[PREFIX_LEN] == 0  # after T: no hint
    assert len(seen) >= 3  # the draws gave several hint lengths over these steps


def _run_trapo(tiny_model_dir, tiny_tokenizer, correct_score: float):
    chord = {"variant": "trapo", "prefix": {"correct_score": correct_score, "trapo": {
        "plain": 2, "stages": [{"rows": 1, "fraction": 0.5, "if_correct_below": 1},
                               {"rows": 1, "fraction": 1.0, "if_correct_below": 3}]}}}  # fmt: skip
    server = _server(tiny_model_dir, tiny_tokenizer)

    async def run_group():
        loops = [_loop(_config(chord), server, tiny_tokenizer) for _ in range(4)]
        # verl numbers the interleaved rows in order: slot = priority mod n (here rows 4..7)
        return await asyncio.gather(
            *[loop.run(_params(), priority=4 + i, **_row(3, uid="g")) for i, loop in enumerate(loops)]
        )

    return asyncio.run(run_group()), server


def test_trapo_guides_only_after_the_plain_rollouts_failed(tiny_model_dir, tiny_tokenizer):
    # correct_score 2: no score of the tiny task (0 or 1) counts as correct -> every stage fires
    outputs, server = _run_trapo(tiny_model_dir, tiny_tokenizer, correct_score=2.0)
    solution_ids = tiny_tokenizer.encode(SOLUTION, add_special_tokens=False)
    lengths = [o.extra_fields[PREFIX_LEN] for o in outputs]
    # 50% of 10 tokens: step ends 3 ("4+3") and 7 ("4+3\n\n=7") are both 2 away: the shorter
    assert lengths == [0, 0, 3, 10]
    for out, p in zip(outputs, lengths, strict=True):
        assert out.response_ids[:p] == solution_ids[:p]
        assert out.response_mask[:p] == [0] * p and all(out.response_mask[p:])
    # the plain rows were sent first, the 50% row before the full-solution row
    sent_prefix = [len(sent) - len(outputs[0].prompt_ids) for sent, _ in server.calls]
    assert sent_prefix == [0, 0, 3, 10]


def test_trapo_stages_stay_plain_when_the_plain_rollouts_succeed(tiny_model_dir, tiny_tokenizer):
    outputs, _ = _run_trapo(tiny_model_dir, tiny_tokenizer, correct_score=-1.0)  # every score counts
    assert [o.extra_fields[PREFIX_LEN] for o in outputs] == [0, 0, 0, 0]
    assert all(all(o.response_mask) for o in outputs)


def test_a_row_without_an_expert_solution_is_named(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer)
    row = _row(0)
    row["extra_info"] = {"index": 9}

    async def run():
        return await _loop(_config({"variant": "uft"}), server, tiny_tokenizer).run(_params(), **row)

    with pytest.raises(ValueError, match=r"RL row 9 has no string extra_info\['expert_response'\]"):
        asyncio.run(run())
