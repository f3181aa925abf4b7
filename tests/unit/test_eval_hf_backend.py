"""HF generate backend of chord-eval: seeded Gumbel-max sampling, left padding, stop handling."""

from __future__ import annotations

import pytest
import torch

from recipe.eval.generate import SamplingConfig, render_prompts, stop_token_ids
from recipe.eval.hf import GumbelSampler, HFGenerator


def test_gumbel_max_samples_follow_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, float("-inf")]]).repeat(20000, 1)
    sampler = GumbelSampler(torch.Generator().manual_seed(0))
    picks = sampler(None, logits).argmax(dim=-1)
    freq = torch.bincount(picks, minlength=4).float() / picks.numel()
    expected = torch.softmax(logits[0], dim=-1)
    assert torch.allclose(freq, expected, atol=0.015)
    assert freq[3].item() == 0.0  # a filtered (-inf) token is never drawn


@pytest.fixture(scope="module")
def hf_generator(tiny_model_dir):
    return HFGenerator(tiny_model_dir, batch_size=3)


@pytest.fixture(scope="module")
def prompts(hf_generator):
    conversations = [[{"role": "user", "content": "3+4="}], [{"role": "user", "content": "12+30= please"}]]
    return render_prompts(hf_generator.tokenizer, conversations)


def test_render_prompts_uses_chat_template_without_extra_specials(prompts, tiny_tokenizer):
    text = tiny_tokenizer.decode(prompts[0])
    assert text == "<|im_start|>user\n3+4=<|im_end|>\n<|im_start|>assistant\n"


def test_stop_ids_merge_tokenizer_and_generation_config(tiny_tokenizer):
    class Config:
        eos_token_id = [tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id]

    ids = stop_token_ids(tiny_tokenizer, Config())
    assert ids == [tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id]


def test_sampling_is_deterministic_given_the_seed(hf_generator, prompts):
    sampling = SamplingConfig(max_new_tokens=6, seed=7)
    first = hf_generator.generate(prompts, 3, sampling)
    again = hf_generator.generate(prompts, 3, sampling)
    other = hf_generator.generate(prompts, 3, SamplingConfig(max_new_tokens=6, seed=8))
    assert first == again
    assert first != other
    assert [len(samples) for samples in first] == [3, 3]
    # a random model rarely stops within 6 tokens; every length is within the budget
    assert all(1 <= c.num_tokens <= 6 for samples in first for c in samples)
    assert len({c.text for c in first[0]}) > 1  # the samples of one prompt differ


def test_left_padding_does_not_change_next_token_distributions(hf_generator, tiny_tokenizer, monkeypatch):
    # Row 0 is the same prompt in both batches, left-padded by different amounts; with a correct
    # attention mask and positions the model gives it the same distribution at every step.
    recorded: list[torch.Tensor] = []

    class RecordingSampler(GumbelSampler):
        def __call__(self, input_ids, scores):
            recorded.append(torch.log_softmax(scores.float(), dim=-1))
            return super().__call__(input_ids, scores)

    monkeypatch.setattr("recipe.eval.hf.GumbelSampler", RecordingSampler)

    def prompt(text):
        return render_prompts(tiny_tokenizer, [[{"role": "user", "content": text}]])[0]

    short, longer, longest = prompt("3+4="), prompt("12+30= please"), prompt("12+30= please, and show work")
    sampling = SamplingConfig(max_new_tokens=4, seed=11)
    a = hf_generator.generate([short, longer], 1, sampling)
    steps_a, recorded[:] = list(recorded), []
    b = hf_generator.generate([short, longest], 1, sampling)
    steps_b = list(recorded)
    assert a[0] == b[0]
    assert len(steps_a) == len(steps_b) == 4
    for step_a, step_b in zip(steps_a, steps_b, strict=True):
        assert torch.allclose(step_a[0], step_b[0], atol=1e-5)
    assert not torch.allclose(steps_a[0][1], steps_b[0][1], atol=1e-5)  # a different prompt differs


def test_top_p_near_zero_is_greedy(hf_generator, prompts):
    greedy = hf_generator.generate(prompts, 1, SamplingConfig(temperature=0.0, max_new_tokens=5))
    nucleus = hf_generator.generate(prompts, 2, SamplingConfig(top_p=1e-6, max_new_tokens=5, seed=3))
    assert all(s == g[0] for g, samples in zip(greedy, nucleus, strict=True) for s in samples)


def test_completion_cuts_at_stop_token_and_flags_truncation(hf_generator, tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    pad = tiny_tokenizer.pad_token_id
    body = tiny_tokenizer.encode("42", add_special_tokens=False)
    done = hf_generator._completion([*body, eos, pad, pad], max_new_tokens=5)
    assert (done.text, done.num_tokens, done.truncated) == ("42", len(body) + 1, False)
    cut = hf_generator._completion(body * 3, max_new_tokens=len(body) * 3)
    assert (cut.text, cut.num_tokens, cut.truncated) == ("424242", len(body) * 3, True)
