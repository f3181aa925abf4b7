"""The assets a `chord-compare` config needs before its first run, built once under `chord_workdir`.

- `cpu_tiny`: the demo's tiny model and bundled task (`recipe.demo.prepare_assets`);
- `shift_tiny`: the shifted-expert task (`chord.prepare.shift_task`) and its base policy, the
  demo's tiny model pre-trained to partial competence (`chord.prepare.base_policy`), with the
  arguments of the config's `shift_task` section.

Other configs bring their own data and model; nothing is built for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def prepare_shift_assets(workdir: Path, section: dict[str, Any]) -> dict[str, Any]:
    """Model, data and base policy of `shift_tiny` under `workdir`; returns the base policy's record.

    The data are made again when the section's `data` arguments differ from those recorded next
    to them (`data/shift_task.json`); the base policy when its spec, model or data path differ.
    """
    from chord.prepare.base_policy import PretrainSpec, pretrain_base_policy
    from chord.prepare.shift_task import SKILL_SOURCE, TASK_SOURCE, generate_shift_task
    from chord.tiny_model import build_tiny_model
    from recipe.demo import DEMO_MODEL

    if not (workdir / "model" / "config.json").exists():
        build_tiny_model(workdir / "model", **DEMO_MODEL)
    data = workdir / "data"
    args_file = data / "shift_task.json"  # the arguments the files were made with
    if not args_file.exists() or json.loads(args_file.read_text()) != section["data"]:
        generate_shift_task(data, **section["data"])
        args_file.write_text(json.dumps(section["data"], indent=1) + "\n")
    spec = PretrainSpec(task_source=TASK_SOURCE, skill_source=SKILL_SOURCE, **section["base_policy"])
    return pretrain_base_policy(workdir / "model", data / "pretrain.parquet", workdir / "base_model", spec)


ASSET_CONFIGS = ("cpu_tiny", "shift_tiny")  # the configs whose assets chord-compare builds


def prepare_assets(config_name: str, workdir: Path, compose: Callable[[], Any]) -> str | None:
    """Build what `config_name` needs under `workdir`; a line saying what was built, or None.

    `compose()` returns the composed config (called only for configs that read their section).
    """
    from omegaconf import OmegaConf

    if config_name == "cpu_tiny":
        from recipe.demo import prepare_assets as prepare_demo_assets

        prepare_demo_assets(workdir)
        return None
    if config_name == "shift_tiny":
        section = OmegaConf.to_container(compose().shift_task, resolve=True)
        record = prepare_shift_assets(workdir, section)
        return (
            f"shift_tiny base policy: expected reward {record['task_reward']:.3f} on the task "
            f"(after {record['task_steps']} steps), {record['skill_reward']:.3f} on the second skill"
        )
    return None
