"""A base policy with partial competence: brief plain SFT of a small model, stopped in a band.

Used by the shifted-expert benchmark (`chord.prepare.shift_task`). Two phases on the
answer-only pre-training rows (`pretrain.parquet`: chat messages, loss on the assistant turn
and its EOS only):

1. the second skill alone (rows whose data_source is `skill_source`) until its expected
   reward reaches `skill_target` (it must be there to be forgotten later);
2. both skills, mixed, until the task's expected reward reaches `task_target`.

Expected reward of a problem = the probability that sampling at temperature 1 produces
exactly the answer followed by EOS, `exp(sum_t log p(answer_t | prompt, answer_<t))`: a
deterministic lower bound of the sampled reward (other strings ending in the same number also
score), computed by one teacher-forced forward pass over all problems. Rows with `quality` 0
(the hedged answers of `chord.prepare.shift_task`) are trained on but not measured: their
responses score 0. Each phase also stops after `max_steps` steps; the reached values are
recorded, so a band that was missed shows.

Deterministic for given data, model and arguments (CPU, one thread of torch's ops order). The
result is saved with `save_pretrained` next to `base_policy.json` (arguments and reached
rewards); an existing folder with the same arguments and pre-training data (sha256) is reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PretrainSpec:
    """What the base policy is trained to. `*_target`: expected reward where a phase stops."""

    task_source: str
    skill_source: str
    task_target: float = 0.3
    skill_target: float = 0.8
    batch_size: int = 64
    lr: float = 3e-3
    max_steps: int = 3000
    eval_every: int = 10
    seed: int = 0


@dataclass
class _Example:
    source: str
    input_ids: list[int]
    answer_start: int  # first label position (the assistant's answer)
    measured: bool = True  # counts in the expected reward (quality > 0)


def _examples(pretrain_file: Path, tokenizer: Any) -> list[_Example]:
    import pyarrow.parquet as pq

    schema = pq.read_schema(pretrain_file)
    columns = ["messages", "data_source", *(["quality"] if "quality" in schema.names else [])]
    table = pq.read_table(pretrain_file, columns=columns).to_pylist()
    out = []
    for row_index, row in enumerate(table):
        messages = row["messages"]
        if len(messages) != 2 or messages[1]["role"] != "assistant":
            raise ValueError(f"{pretrain_file}: row {row_index}: expected one user and one assistant message")
        text = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer = tokenizer(messages[1]["content"], add_special_tokens=False)["input_ids"]
        ids = list(prompt) + list(answer) + [tokenizer.eos_token_id]
        quality = row.get("quality")
        out.append(_Example(row["data_source"], ids, len(prompt), measured=quality is None or quality > 0))
    return out


def _batch(examples: list[_Example], pad_id: int):
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, e.answer_start : n] = ids[i, e.answer_start : n]
        mask[i, :n] = 1
    return ids, labels, mask


def expected_rewards(model: Any, examples: list[_Example], pad_id: int) -> list[float]:
    """P(answer + EOS | prompt) per example, by one teacher-forced forward pass (no grad)."""
    import torch

    ids, labels, mask = _batch(examples, pad_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    seq = (logp * (targets != -100)).sum(-1)
    return [math.exp(v) for v in seq.tolist()]


def _mean_by_source(model: Any, examples: list[_Example], pad_id: int, source: str) -> float:
    chosen = [e for e in examples if e.source == source and e.measured]
    if not chosen:
        raise ValueError(f"no pre-training rows with data_source {source!r} and quality > 0")
    values = expected_rewards(model, chosen, pad_id)
    return sum(values) / len(values)


def pretrain_base_policy(model_dir: str | Path, pretrain_file: str | Path, out_dir: str | Path,
                         spec: PretrainSpec) -> dict[str, Any]:  # fmt: skip
    """Train `model_dir` on `pretrain_file` (see the module docstring), save to `out_dir`.

    Returns the record written to `out_dir/base_policy.json`: the spec, steps per phase and the
    expected rewards reached (`task_reward`, `skill_reward`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    record_path = out / "base_policy.json"
    key = {
        "spec": asdict(spec),
        "model_dir": str(Path(model_dir).resolve()),
        "pretrain_file": str(Path(pretrain_file).resolve()),
        "pretrain_sha256": hashlib.sha256(Path(pretrain_file).read_bytes()).hexdigest(),
    }
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("key") == key:
            return record
    torch.manual_seed(spec.seed)
    rng = random.Random(spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    pad_id = tokenizer.pad_token_id
    examples = _examples(Path(pretrain_file), tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)

    def run_phase(pool: list[_Example], source: str, target: float) -> tuple[int, float]:
        step, reward = 0, _mean_by_source(model, examples, pad_id, source)
        while reward < target and step < spec.max_steps:
            model.train()
            for _ in range(spec.eval_every):
                ids, labels, mask = _batch([rng.choice(pool) for _ in range(spec.batch_size)], pad_id)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
            model.eval()
            reward = _mean_by_source(model, examples, pad_id, source)
        return step, reward

    model.eval()
    skill_pool = [e for e in examples if e.source == spec.skill_source]
    skill_steps, _ = run_phase(skill_pool, spec.skill_source, spec.skill_target)
    task_steps, task_reward = run_phase(examples, spec.task_source, spec.task_target)
    record = {
        "key": key,
        "skill_steps": skill_steps,
        "task_steps": task_steps,
        "task_reward": task_reward,
        "skill_reward": _mean_by_source(model, examples, pad_id, spec.skill_source),
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for extra in ("generation_config.json",):
        source = Path(model_dir) / extra
        if source.exists():
            (out / extra).write_text(source.read_text())
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record
