"""The hf rollout server on the tiny model, without Ray: batching, EOS handling, length caps,
weight loading, and the CPU platform / engine registration of our verl plugins."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("verl")

from recipe.plugins.hf_rollout import HFGenerationServer  # noqa: E402


def _server(tiny_model_dir, tiny_tokenizer, **overrides) -> HFGenerationServer:
    config = SimpleNamespace(prompt_length=32, response_length=6, seed=0)
    for key, value in overrides.items():
        setattr(config, key, value)
    model_config = SimpleNamespace(
        local_path=str(tiny_model_dir), trust_remote_code=False, tokenizer=tiny_tokenizer
    )
    return HFGenerationServer(config, model_config, replica_rank=0)


def _prompt(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer.encode(rendered, add_special_tokens=False)


async def _generate_all(server, prompts, params):
    return await asyncio.gather(
        *[
            server.generate(request_id=str(i), prompt_ids=p, sampling_params=dict(params))
            for i, p in enumerate(prompts)
        ]
    )


def test_concurrent_requests_are_answered_within_the_response_length(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompts = [_prompt(tiny_tokenizer, q) for q in ("1+2=", "3+4=", "12+30=")]  # different lengths
    outputs = asyncio.run(
        _generate_all(server, prompts, {"temperature": 1.0, "top_p": 1.0, "logprobs": True})
    )
    assert len(outputs) == 3
    for out in outputs:
        assert 1 <= len(out.token_ids) <= 6
        assert len(out.log_probs) == len(out.token_ids)
        assert all(lp <= 0.0 for lp in out.log_probs)
        if out.stop_reason == "completed":
            assert out.token_ids[-1] == tiny_tokenizer.eos_token_id
        else:
            assert out.stop_reason == "length" and len(out.token_ids) == 6


def test_greedy_generation_is_deterministic_and_respects_max_tokens(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompt = _prompt(tiny_tokenizer, "5+5=")
    params = {"temperature": 0.0, "max_tokens": 3}
    first = asyncio.run(_generate_all(server, [prompt], params))[0]
    second = asyncio.run(_generate_all(server, [prompt], params))[0]
    assert first.token_ids == second.token_ids
    assert len(first.token_ids) <= 3


def test_loaded_weights_are_used_and_a_mismatch_is_an_error(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompt = _prompt(tiny_tokenizer, "2+2=")
    state = {k: v.clone() for k, v in server.model.state_dict().items() if k != "lm_head.weight"}
    # A zero final norm makes every logit 0: greedy decoding then picks token id 0 every time.
    state["model.norm.weight"] = torch.zeros_like(state["model.norm.weight"])
    assert asyncio.run(server.load_weights(state, global_steps=7)) == len(state)
    out = asyncio.run(_generate_all(server, [prompt], {"temperature": 0.0}))[0]
    assert out.token_ids == [0] * 6
    assert out.extra_fields["global_steps"] == 7
    with pytest.raises(ValueError, match="weight sync mismatch"):
        asyncio.run(server.load_weights({"not.a.weight": torch.zeros(1)}))


def test_prompt_longer_than_the_context_is_rejected(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer, prompt_length=4, response_length=2)
    with pytest.raises(ValueError, match="leaves no room"):
        asyncio.run(_generate_all(server, [list(range(10))], {"temperature": 1.0}))


def test_plugins_register_cpu_platform_engine_and_hf_rollout():
    import verl  # noqa: F401  (loads the plugins through the `verl.plugins` entry points)
    from verl.plugin.platform.platform_manager import PlatformRegistry, get_platform
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from recipe.plugins.hf_rollout import HFReplica, HFServerAdapter

    assert "cpu" in PlatformRegistry.registered_names()
    platform = get_platform()
    assert platform.device_name == "cpu" and platform.communication_backend_name() == "gloo"
    assert platform.ray_resource_name() == "GPU"
    assert "cpu" in EngineRegistry._engines["language_model"]["fsdp2"]
    assert RolloutReplicaRegistry.get("hf") is HFReplica
    assert get_rollout_class("hf", "async") is HFServerAdapter
