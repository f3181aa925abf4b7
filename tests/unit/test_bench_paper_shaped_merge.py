"""`bench_paper_shaped.py --merge`: a study run in parts is reported as one (nothing trained)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench():
    path = REPO / "benchmarks" / "bench_paper_shaped.py"
    spec = importlib.util.spec_from_file_location("bench_paper_shaped", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _part(folder: Path, methods: list[str], wall_s: float, *, steps: int = 4, base: bool = False) -> None:
    """A finished part of the study: per-seed result.json files, compare.json's config, benchmark.json."""
    for method in [*methods, "base"] if base else methods:
        for seed in (0, 1):
            run = folder / "runs" / method / f"seed{seed}"
            run.mkdir(parents=True)
            trained = method != "base"
            result = {
                "method": method,
                "seed": seed,
                "steps": steps if trained else 0,
                "last_k": 2 if trained else 0,
                "final_reward": (0.1 * len(method) + 0.05 * seed) if trained else None,
                "eval_acc": {"val": 10.0 * seed + len(method)},
                "wall_s": 30.0 if trained else 0.0,
                "run_dirs": [str(run.resolve())] if trained else [],
                "curves": {"reward": [[s, 0.1 * s] for s in range(1, steps + 1)]} if trained else {},
                "step_wall_s": [[s, 5.0 * s] for s in range(1, steps + 1)] if trained else [],
            }
            (run / "result.json").write_text(json.dumps(result))
    config = {
        "config_name": "shift_tiny", "methods": methods, "steps": steps, "seed": 0, "seeds": [0, 1],
        "jobs": 2, "overrides": [], "eval": True, "eval_k": 8, "eval_temperature": 1.0,
        "workdir": str(folder / "assets"),
    }  # fmt: skip
    (folder / "compare.json").write_text(json.dumps({"config": config, "methods": [], "summary": {}}))
    (folder / "benchmark.json").write_text(json.dumps({"command": f"part {folder.name}", "wall_s": wall_s}))


def test_merge_reports_every_method_of_both_parts(tmp_path):
    out, rest = tmp_path / "v2", tmp_path / "v2_rest"
    _part(out, ["grpo", "chord_phi"], 100.0, base=True)
    _part(rest, ["luffy"], 40.0)
    assert _bench().main(["--out", str(out), "--merge", str(rest)]) == 0

    report = json.loads((out / "compare.json").read_text())
    assert report["config"]["methods"] == ["grpo", "chord_phi", "luffy"]
    assert [(m["method"], m["seed"]) for m in report["methods"]] == [
        ("base", 0), ("base", 1), ("grpo", 0), ("chord_phi", 0), ("luffy", 0),
        ("grpo", 1), ("chord_phi", 1), ("luffy", 1),
    ]  # fmt: skip
    luffy = report["summary"]["luffy"]["final_reward"]
    assert luffy["per_seed"] == {"0": pytest.approx(0.5), "1": pytest.approx(0.55)}
    # the copied runs say where they live now; the part they came from is left as it was
    moved = json.loads((out / "runs" / "luffy" / "seed1" / "result.json").read_text())
    assert moved["run_dirs"] == [str((out / "runs" / "luffy" / "seed1").resolve())]
    assert (rest / "runs" / "luffy" / "seed1" / "result.json").exists()
    info = json.loads((out / "benchmark.json").read_text())
    assert [p["command"] for p in info["parts"]] == ["part v2", "part v2_rest"]
    assert info["wall_s"] == pytest.approx(140.0) and info["exit_code"] == 0
    assert "`luffy`" in (out / "compare.md").read_text()
    assert (out / "claims.md").exists()


@pytest.mark.parametrize(
    ("rest_methods", "rest_steps", "message"),
    [
        (["grpo"], 4, "method 'grpo' is already in"),
        (["luffy"], 8, "config.steps is 8"),
    ],
)
def test_merge_refuses_parts_of_another_study(tmp_path, capsys, rest_methods, rest_steps, message):
    out, rest = tmp_path / "v2", tmp_path / "v2_rest"
    _part(out, ["grpo"], 100.0)
    _part(rest, rest_methods, 40.0, steps=rest_steps)
    before = (out / "compare.json").read_text()
    assert _bench().main(["--out", str(out), "--merge", str(rest)]) == 2
    assert message in capsys.readouterr().err
    assert (out / "compare.json").read_text() == before  # nothing copied, nothing re-reported
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["grpo"]


def test_merge_names_a_folder_that_is_not_a_part(tmp_path, capsys):
    out = tmp_path / "v2"
    _part(out, ["grpo"], 100.0)
    assert _bench().main(["--out", str(out), "--merge", str(tmp_path / "nothing")]) == 2
    assert f"{tmp_path / 'nothing' / 'compare.json'} is missing" in capsys.readouterr().err


def test_merge_refuses_to_overwrite_runs_it_does_not_report(tmp_path, capsys):
    out, rest = tmp_path / "v2", tmp_path / "v2_rest"
    _part(out, ["grpo"], 100.0)
    _part(rest, ["luffy"], 40.0)
    (out / "runs" / "luffy").mkdir()  # e.g. left by an interrupted run
    assert _bench().main(["--out", str(out), "--merge", str(rest)]) == 2
    assert f"{out / 'runs' / 'luffy'} exists" in capsys.readouterr().err
