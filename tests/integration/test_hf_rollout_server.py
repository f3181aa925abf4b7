"""The hf rollout server on the tiny model, without Ray: batching, EOS handling, length caps,
per-row seeded sampling, weight loading. (Its registration with verl:
test_plugin_registrations.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("verl")

from recipe.eval.hf import GumbelSampler  # noqa: E402
from recipe.plugins.hf_rollout import HFGenerationServer, sampling_seed  # noqa: E402


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


async def _generate_all(server, prompts, params, request_ids=None):
    ids = request_ids or [str(i) for i in range(len(prompts))]
    return await asyncio.gather(
        *[
            server.generate(request_id=rid, prompt_ids=p, sampling_params=dict(params))
            for rid, p in zip(ids, prompts, strict=True)
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


def test_sampling_seed_depends_on_seed_step_row_and_prompt():
    base = sampling_seed(0, 3, 5, [1, 2, 3])
    assert base == sampling_seed(0, 3, 5, [1, 2, 3])  # a hash, not Python's salted hash()
    others = [
        sampling_seed(1, 3, 5, [1, 2, 3]),
        sampling_seed(0, 4, 5, [1, 2, 3]),
        sampling_seed(0, None, 5, [1, 2, 3]),
        sampling_seed(0, 3, 6, [1, 2, 3]),
        sampling_seed(0, 3, 5, [1, 2, 4]),
    ]
    assert len({base, *others}) == 6
    assert all(0 <= v < 2**63 for v in (base, *others))


def test_gumbel_max_with_a_stream_per_row_samples_the_softmax():
    """argmax(log p + Gumbel) ~ p: 6000 rows, one stream each, frequencies within 3 se of p."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 6000
    sampler = GumbelSampler([torch.Generator().manual_seed(i) for i in range(rows)])
    choice = sampler(None, p.log().expand(rows, -1).clone()).argmax(-1)
    freq = torch.bincount(choice, minlength=4).float() / rows
    se = (p * (1 - p) / rows).sqrt()
    assert torch.all((freq - p).abs() < 3 * se), (freq, p)
    # masked tokens (-inf, as top-k / top-p leave them) are never drawn
    masked = torch.tensor([[0.0, float("-inf"), 0.0]]).expand(200, -1).clone()
    sampler = GumbelSampler([torch.Generator().manual_seed(i) for i in range(200)])
    assert 1 not in sampler(None, masked).argmax(-1).tolist()
    # a row's draw is its own stream's: the same whatever the other rows
    alone = GumbelSampler([torch.Generator().manual_seed(7)])(None, p.log()[None].clone())
    two_rows = GumbelSampler([torch.Generator().manual_seed(seed) for seed in (3, 7)])
    batched = two_rows(None, p.log().expand(2, -1).clone())
    assert torch.equal(alone[0], batched[1])
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        GumbelSampler([torch.Generator(), torch.Generator()])(None, torch.zeros(3, 4))


def test_a_rows_sample_does_not_depend_on_its_batch_or_arrival(tiny_model_dir, tiny_tokenizer):
    """Under full_determinism (`det-<row>` ids) a row's sample is fixed by (seed, step, row, prompt)."""
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompts = [_prompt(tiny_tokenizer, q) for q in ("1+2=", "1+2=", "1+2=", "1+2=", "13+30=", "7+8=")]
    params = {"temperature": 1.0, "top_k": 20, "top_p": 0.95, "logprobs": True}
    ids = [f"det-{row}" for row in range(len(prompts))]
    together = asyncio.run(_generate_all(server, prompts, params, ids))
    reversed_ = asyncio.run(_generate_all(server, prompts[::-1], params, ids[::-1]))[::-1]
    pairs = zip(prompts, ids, strict=True)
    alone = [asyncio.run(_generate_all(server, [p], params, [i]))[0] for p, i in pairs]
    again = asyncio.run(_generate_all(_server(tiny_model_dir, tiny_tokenizer), prompts, params, ids))
    for runs in (reversed_, alone, again):
        assert [o.token_ids for o in runs] == [o.token_ids for o in together]
    for a, b in zip(alone, together, strict=True):
        assert a.log_probs == pytest.approx(b.log_probs, abs=1e-5)
    # the n rows of one prompt are different draws, and another seed draws other samples
    assert len({tuple(o.token_ids) for o in together[:4]}) > 1
    other_seed = _server(tiny_model_dir, tiny_tokenizer, seed=1)
    reseeded = asyncio.run(_generate_all(other_seed, prompts, params, ids))
    assert [o.token_ids for o in reseeded] != [o.token_ids for o in together]


def test_requests_without_a_row_get_distinct_samples(tiny_model_dir, tiny_tokenizer):
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompts = [_prompt(tiny_tokenizer, "1+2=")] * 6
    outs = asyncio.run(_generate_all(server, prompts, {"temperature": 1.0}, [f"req-{i}" for i in range(6)]))
    assert len({tuple(o.token_ids) for o in outs}) > 1


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


def test_ignore_eos_samples_on_to_the_length_cap_as_vllm_does(tiny_model_dir, tiny_tokenizer):
    """`rollout.ignore_eos`: every response runs to the cap, EOS stays a sampled token (vLLM's
    meaning, not a ban on EOS); up to its first EOS a row draws what it draws without the flag."""
    prompts = [_prompt(tiny_tokenizer, q) for q in ("1+2=", "3+4=", "12+30=", "7+8=") * 4]
    ids = [f"det-{row}" for row in range(len(prompts))]
    params = {"temperature": 1.0, "logprobs": True}
    eos = tiny_tokenizer.eos_token_id
    server = _server(tiny_model_dir, tiny_tokenizer, response_length=12)
    server.model.lm_head.weight.data[eos] += 2.0  # EOS likely at every position: stops come early
    plain = asyncio.run(_generate_all(server, prompts, params, ids))
    assert any(o.stop_reason == "completed" and len(o.token_ids) < 12 for o in plain)

    configured = _server(tiny_model_dir, tiny_tokenizer, response_length=12, ignore_eos=True)
    configured.model.lm_head.weight.data[eos] += 2.0  # the config's rollout.ignore_eos, as verl sets it
    for ignoring, overrides in ((server, {"ignore_eos": True}), (configured, {})):
        outs = asyncio.run(_generate_all(ignoring, prompts, {**params, **overrides}, ids))
        for a, b in zip(plain, outs, strict=True):
            assert len(b.token_ids) == 12 and b.stop_reason == "length"
            assert len(b.log_probs) == 12
            assert b.token_ids[: len(a.token_ids)] == a.token_ids  # same draws up to the stop
        assert any(eos in o.token_ids[:-1] for o in outs)  # EOS sampled mid-response, and went on
    # a request may switch it off again on a server configured with it
    back = asyncio.run(_generate_all(configured, prompts, {**params, "ignore_eos": False}, ids))
    assert [o.token_ids for o in back] == [o.token_ids for o in plain]


def _hand_log_probs(model, prompt: list[int], tokens: list[int], temperature: float, top_k: int | None):
    """log p(token) of each sampled token, from one forward of prompt + tokens: logits / T, then
    only the top_k largest kept (by hand), renormalised."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1].float()
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


def test_log_probs_are_those_of_the_distribution_sampled_from(tiny_model_dir, tiny_tokenizer):
    """As verl's vLLM rollout (`processed_logprobs`): after temperature and top-k / top-p."""
    server = _server(tiny_model_dir, tiny_tokenizer)
    prompts = [_prompt(tiny_tokenizer, q) for q in ("1+2=", "13+30=", "7+8=", "1+2=")]
    ids = [f"det-{row}" for row in range(len(prompts))]
    for temperature, top_k in ((0.7, 3), (1.3, 2), (1.0, None)):
        params = {"temperature": temperature, "top_k": top_k or -1, "logprobs": True}
        outputs = asyncio.run(_generate_all(server, prompts, params, ids))
        for prompt, out in zip(prompts, outputs, strict=True):
            expected = _hand_log_probs(server.model, prompt, out.token_ids, temperature, top_k)
            assert out.log_probs == pytest.approx(expected.tolist(), abs=1e-4), (temperature, top_k)
    # top-p renormalises over the kept tokens: every sampled token is likelier than unfiltered
    params = {"temperature": 1.0, "top_p": 0.5, "logprobs": True}
    for prompt, out in zip(prompts, asyncio.run(_generate_all(server, prompts, params, ids)), strict=True):
        unfiltered = _hand_log_probs(server.model, prompt, out.token_ids, 1.0, None)
        assert all(a >= b - 1e-5 for a, b in zip(out.log_probs, unfiltered.tolist(), strict=True))
        assert any(a > b + 1e-3 for a, b in zip(out.log_probs, unfiltered.tolist(), strict=True))
    # greedy: the model's own distribution
    greedy = asyncio.run(_generate_all(server, prompts[:1], {"temperature": 0.0, "logprobs": True}))[0]
    expected = _hand_log_probs(server.model, prompts[0], greedy.token_ids, 1.0, None)
    assert greedy.log_probs == pytest.approx(expected.tolist(), abs=1e-4)


def test_gumbel_sampler_keeps_the_sampled_tokens_log_probs():
    scores = [torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, float("-inf")]]) for _ in range(3)]
    sampler = GumbelSampler([torch.Generator().manual_seed(s) for s in (0, 1)], keep_log_probs=True)
    sequence = torch.tensor([[5], [5]])  # the prompt's last token
    for step_scores in scores:
        token = sampler(sequence, step_scores.clone()).argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, token], dim=1)
    kept = sampler.sampled_log_probs(sequence)
    expected = torch.log_softmax(scores[0], -1).gather(-1, sequence[:, 1:])
    assert torch.allclose(kept, expected)
    with pytest.raises(ValueError, match="keeps no log-probs"):
        GumbelSampler(torch.Generator()).sampled_log_probs(sequence)
