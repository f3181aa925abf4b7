"""`rollout.name=hf`: a transformers `generate` rollout replica for verl, for machines without vLLM.

verl's agent loop talks to a rollout *server* (a Ray actor with `generate(request_id,
prompt_ids, sampling_params, ...) -> TokenOutput`), and the trainer pushes new weights into
the rollout through an in-worker *adapter* (`resume`, `update_weights`, `release`). This module
provides both for Hugging Face models:

- `HFGenerationServer` holds one copy of the policy and batches concurrent requests: requests
  that arrive together (one rollout step sends a whole batch) and share sampling settings run as
  one left-padded `model.generate` call. With `rollout.full_determinism=true` (the CPU preset sets
  it) verl names each request after its row in the step's batch (`det-<row>`), and each request
  samples from its own random stream seeded by (`rollout.seed`, training step, row, prompt): a
  row's sample does not depend on which requests share its batch, which server answers it, or
  when it arrives, so a rerun or a resumed run draws the same rollouts (up to floating-point
  ties). Without it, requests get distinct seeds from the server's own seeded stream.
  `rollout.ignore_eos` (or a request's `ignore_eos`) works as in verl's vLLM server: EOS is
  sampled like any token and generation goes on to the length cap. Log-probs (`logprobs` in
  the request, e.g. `rollout.calculate_log_probs`) are those of the distribution each token was
  drawn from, after penalties, temperature, top-k and top-p, as verl's vLLM server returns them
  (`rollout.logprobs_mode: processed_logprobs`).
- `HFServerAdapter` runs inside every FSDP rank; all ranks drain the weight generator (gathering
  a full tensor is a collective) and rank 0 of the replica ships the state dict to the server.
- `HFReplica` starts the server; it is registered under "hf" in `RolloutReplicaRegistry`.

It is meant for the CPU preset and tests (real generation, small models). On GPUs use vLLM.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import struct
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from recipe.eval.hf import GumbelSampler

logger = logging.getLogger(__name__)

SERVER_NAME_PREFIX = "chord_hf_rollout_"
# verl's request id for batch row N under `rollout.full_determinism` (its agent loops set it).
_ROW_REQUEST_ID = re.compile(r"det-(\d+)")


def server_actor_name(replica_rank: int) -> str:
    return f"{SERVER_NAME_PREFIX}{replica_rank}"


def sampling_seed(seed: int, global_steps: int | None, row: int, prompt_ids: list[int]) -> int:
    """The seed of one request's random stream: a hash of (seed, step, batch row, prompt tokens)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(struct.pack("<qqq", seed, -1 if global_steps is None else global_steps, row))
    digest.update(struct.pack(f"<{len(prompt_ids)}q", *prompt_ids))
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    params: tuple
    seed: int
    future: asyncio.Future = field(repr=False)


class HFGenerationServer:
    """A Ray actor serving `generate` with a transformers causal LM on the host CPU."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0):
        from transformers import AutoModelForCausalLM

        self.config = config
        self.replica_rank = replica_rank
        self.global_steps: int | None = None
        path = model_config.local_path
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=model_config.trust_remote_code
        ).eval()
        tokenizer = model_config.tokenizer
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_token_ids = sorted(eos_ids)
        pad = tokenizer.pad_token_id if tokenizer is not None else None
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]
        self.max_model_len = config.prompt_length + config.response_length
        self.ignore_eos = bool(getattr(config, "ignore_eos", False))  # a request may override it
        self._seed_streams(int(config.seed))
        self._pending: list[_Request] = []
        self._drain_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def _seed_streams(self, seed: int) -> None:
        self.seed = seed
        # Only for requests that come without their batch row: distinct, not reproducible.
        self._fallback_seeds = torch.Generator().manual_seed(seed + self.replica_rank)

    async def set_seed(self, seed: int) -> None:
        """Sample as a server started with `rollout.seed=seed` would (a seed sweep's next seed,
        recipe/train/sweep.py); waits for the batch being generated."""
        async with self._lock:
            self._seed_streams(int(seed))

    # ------------------------------------------------------------------ generation
    def _max_tokens(self, prompt_len: int, sampling_params: dict) -> int:
        """As verl's vLLM server does: cap by response_length and the remaining context."""
        budget = self.max_model_len - prompt_len
        if budget < 1:
            raise ValueError(
                f"prompt of {prompt_len} tokens leaves no room in the context of {self.max_model_len} tokens"
            )
        if "max_tokens" in sampling_params:
            wanted = int(sampling_params["max_tokens"])
        elif "max_new_tokens" in sampling_params:
            wanted = int(sampling_params["max_new_tokens"])
        else:
            wanted = self.config.response_length
        return max(1, min(wanted, budget, self.config.response_length))

    async def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> TokenOutput:
        """One response. A `det-<row>` request id (verl's, under full_determinism) seeds its sample
        from its batch row; `priority` is accepted as verl's servers take it, and not used (verl
        passes it to vLLM only)."""
        if image_data is not None or video_data is not None or audio_data is not None:
            raise ValueError("the hf rollout serves text-only models")
        params = (
            float(sampling_params.get("temperature", 1.0)),
            float(sampling_params.get("top_p", 1.0)),
            int(sampling_params.get("top_k", -1)),
            float(sampling_params.get("repetition_penalty", 1.0)),
            bool(sampling_params.get("logprobs", False)),
            bool(sampling_params.get("ignore_eos", self.ignore_eos)),
        )
        prompt_ids = [int(t) for t in prompt_ids]
        if match := _ROW_REQUEST_ID.fullmatch(str(request_id)):
            seed = sampling_seed(self.seed, self.global_steps, int(match.group(1)), prompt_ids)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._fallback_seeds))
        future = asyncio.get_running_loop().create_future()
        max_tokens = self._max_tokens(len(prompt_ids), sampling_params)
        self._pending.append(_Request(prompt_ids, max_tokens, params, seed, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # Let the rest of a rollout batch arrive, then serve everything pending.
        await asyncio.sleep(0.01)
        while self._pending:
            batch, self._pending = self._pending, []
            groups: dict[tuple, list[_Request]] = {}
            for req in batch:
                groups.setdefault((req.params, req.max_tokens), []).append(req)
            async with self._lock:
                for (params, max_tokens), reqs in groups.items():
                    try:
                        outputs = await asyncio.to_thread(self._generate_batch, reqs, params, max_tokens)
                    except Exception as exc:  # hand the error to every waiting request
                        for req in reqs:
                            if not req.future.done():
                                req.future.set_exception(exc)
                        continue
                    for req, out in zip(reqs, outputs, strict=True):
                        if not req.future.done():
                            req.future.set_result(out)

    @torch.no_grad()
    def _generate_batch(self, reqs: list[_Request], params: tuple, max_tokens: int) -> list[TokenOutput]:
        temperature, top_p, top_k, repetition_penalty, want_logprobs, ignore_eos = params
        width = max(len(r.prompt_ids) for r in reqs)
        input_ids = torch.full((len(reqs), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):  # left padding, as decoder-only generation needs
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention_mask[i, width - len(r.prompt_ids) :] = 1
        do_sample = temperature > 0
        processors = LogitsProcessorList()
        sampler = None
        if do_sample:  # transformers' own warpers, then the noise
            processors.append(TemperatureLogitsWarper(temperature))
            if top_k > 0:
                processors.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p))
            # Gumbel-max with one stream per row (recipe/eval/hf.py): greedy decoding then samples;
            # it keeps the sampled tokens' log-probs under the processed distribution
            sampler = GumbelSampler(
                [torch.Generator().manual_seed(r.seed) for r in reqs], keep_log_probs=want_logprobs
            )
            processors.append(sampler)
        # What the request asks for, explicitly (a checkpoint's defaults, e.g. a repetition penalty,
        # would otherwise apply); transformers runs its penalty before the processors above.
        generation_config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,
            repetition_penalty=repetition_penalty,
            # ignore_eos: no stop token at all (None would take the checkpoint's), EOS logits untouched
            eos_token_id=[] if ignore_eos else self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            return_dict_in_generate=True,
            output_scores=want_logprobs and not do_sample,  # greedy: the penalised logits
        )
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            logits_processor=processors,
        )
        new_tokens = out.sequences[:, width:]
        # Log-probs as verl's vLLM rollout returns them (`logprobs_mode: processed_logprobs`): of
        # the distribution each token was drawn from, after penalties, temperature, top-k, top-p.
        logprobs = None
        if want_logprobs and sampler is not None:
            logprobs = sampler.sampled_log_probs(out.sequences)
        elif want_logprobs:
            scores = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
            logprobs = scores.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        results = []
        eos = set() if ignore_eos else set(self.eos_token_ids)
        for i in range(len(reqs)):
            tokens = new_tokens[i].tolist()
            stop = "length"
            for j, tok in enumerate(tokens):
                if tok in eos:  # keep the EOS token, as vLLM returns it
                    tokens = tokens[: j + 1]
                    stop = "completed"
                    break
            results.append(
                TokenOutput(
                    token_ids=tokens,
                    log_probs=logprobs[i, : len(tokens)].tolist() if logprobs is not None else None,
                    stop_reason=stop,
                    extra_fields={"global_steps": self.global_steps},
                )
            )
        return results

    # ------------------------------------------------------------------ weights and control
    async def load_weights(self, state_dict: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the trainer's weights (HF parameter names); returns the number of tensors loaded."""
        async with self._lock:
            missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
            # Tied embeddings legitimately miss `lm_head.weight`; anything else is a real mismatch.
            missing = [
                k for k in missing if not (k == "lm_head.weight" and self.model.config.tie_word_embeddings)
            ]
            if missing or unexpected:
                raise ValueError(f"weight sync mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
            self.model.tie_weights()
            self.global_steps = global_steps
        return len(state_dict)

    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


class HFReplica(RolloutReplica):
    """One `HFGenerationServer` per replica (hybrid mode: the FSDP workers keep the trainable copy)."""

    async def launch_servers(self) -> None:
        from omegaconf import DictConfig
        from verl.utils.config import omega_conf_to_dataclass

        model_config = self.model_config
        if isinstance(model_config, DictConfig):  # verl hands the raw `actor_rollout_ref.model` section
            model_config = omega_conf_to_dataclass(model_config)
        name = server_actor_name(self.replica_rank) + self.name_suffix
        server_cls = ray.remote(HFGenerationServer)
        server = server_cls.options(name=name, num_cpus=0, max_concurrency=self.max_concurrency).remote(
            self.config, model_config, self.replica_rank
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name


class HFServerAdapter(BaseRollout):
    """In-worker side of the hf rollout: forwards weight updates to the replica's server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.rollout_rank = rank % world
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise ValueError(f"the hf rollout accepts wire_format='named_tensors', got {wire_format!r}")
        state: dict[str, torch.Tensor] = {}
        for name, tensor in weights:  # every rank drains: producing a full tensor is a collective
            if self.rollout_rank == 0:
                if hasattr(tensor, "full_tensor"):
                    tensor = tensor.full_tensor()
                state[name] = tensor.detach().to("cpu", copy=True)
        if self.rollout_rank == 0:
            await self._server_handle().load_weights.remote(state, kwargs.get("global_steps"))
