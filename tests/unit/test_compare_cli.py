"""chord-compare end to end with a stand-in trainer: a small script that logs metrics like verl.

The real trainer runs in tests/integration/test_compare_cpu.py; here the orchestration (stages,
sft_then_rl hand-off, progress lines, failures, report files) is checked in seconds.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from omegaconf import OmegaConf

import recipe.compare.cli as compare
from recipe.compare.cli import MetricsFollower, Progress, main
from recipe.compare.plan import PER_SEED_KEYS, plan_method

FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, sys, time
    args = dict(a.lstrip("+").split("=", 1) for a in sys.argv[1:] if "=" in a)
    steps = int(args["trainer.total_training_steps"])
    if "sweep.seeds" in args:  # one launch of every seed, in recipe/train/sweep.py's layout
        top = args["sweep.dir"]
        runs = [(s, os.path.join(top, f"seed{s}", "metrics.jsonl")) for s in json.loads(args["sweep.seeds"])]
    else:
        metrics = args["ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH"]
        top = os.path.dirname(metrics)
        runs = [(int(args["data.seed"]), metrics)]
    os.makedirs(top, exist_ok=True)
    with open(os.path.join(top, "argv.json"), "w") as f:
        json.dump(sys.argv[1:], f)
    time.sleep(float(os.environ.get("FAKE_START_S", "0")))  # Ray and the workers starting
    mu = {"sft": 1.0, "grpo": 0.0}.get(args["method"], 0.5)
    for seed, metrics in runs:
        os.makedirs(os.path.dirname(metrics), exist_ok=True)
        started = time.time()
        with open(metrics, "w") as f:
            for step in range(1, steps + 1):
                reward = step / 10 + seed / 100
                data = {"critic/score/mean": reward, "chord/mu": mu, "actor/entropy": 1.0 / step,
                        "response_length/mean": 3.0, "timing_s/step": 0.01}
                f.write(json.dumps({"step": step, "data": data}) + "\\n")
                f.flush()
                fail_seed = os.environ.get("FAKE_FAIL_SEED", str(seed))  # default: the first seed run
                if args["method"] == os.environ.get("FAKE_FAIL_METHOD") and str(seed) == fail_seed:
                    sys.exit(3)
                time.sleep(float(os.environ.get("FAKE_STEP_S", "0")))
        with open(os.path.join(os.path.dirname(metrics), "span.json"), "w") as f:
            json.dump([started, time.time()], f)
    """
)


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("CHORD_WORKDIR", str(tmp_path / "assets"))  # main() exports it; restored after
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(
        compare, "trainer_command", lambda python, name, overrides: [python, str(script), *overrides]
    )
    cfg = OmegaConf.create(
        {
            "chord": {"variant": "chord_phi", "expert": {"files": ["e.parquet"], "rows_per_step": 32}},
            "data": {"train_batch_size": 16, "val_files": ["val.parquet"], "max_response_length": 8},
            "trainer": {"n_gpus_per_node": 2, "nnodes": 1, "resume_mode": "disable"},
            "actor_rollout_ref": {
                "model": {"path": "assets/base_model"},
                "rollout": {"n": 4, "name": "hf"},
                "actor": {
                    "ppo_mini_batch_size": 4,
                    "ppo_micro_batch_size_per_gpu": 12,
                    "use_dynamic_bsz": False,
                },
            },
        }
    )

    def fake_compose(name, overrides):
        values = dict(o.split("=", 1) for o in overrides if "=" in o)
        rollout = {"rollout": {"name": values.get("actor_rollout_ref.rollout.name", "hf")}}
        return OmegaConf.merge(
            cfg, {"chord": {"variant": values.get("method", "chord_mu")}, "actor_rollout_ref": rollout}
        )

    monkeypatch.setattr(compare, "compose_config", fake_compose)
    handoffs = []

    def fake_hf_dir(checkpoint_root, merge_dir):
        handoffs.append(checkpoint_root)
        return merge_dir

    monkeypatch.setattr(compare, "checkpoint_hf_dir", fake_hf_dir)
    return handoffs


def _args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--workdir", str(out / "assets"), "--config-name", "fake", "--no-eval", *extra]


def test_compare_runs_each_method_prints_progress_and_writes_the_report(fake_trainer, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(_args(out, "--methods", "grpo,chord_phi,sft_then_rl", "--steps", "4", "--last-k", "2",
                    "trainer.logger=[console]"))  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert "[1/3 grpo] step 1/4  reward 0.100  mu 0.000" in printed
    assert "all 12/12 (100%)" in printed
    assert "[3/3 sft_then_rl:rl] step 4/4  reward 0.200  mu 0.000" in printed  # stage-2 step 2 at step 4
    assert "ppo_micro_batch_size_per_gpu=8" in printed  # grpo's micro-batch note

    report = json.loads((out / "compare.json").read_text())
    by_method = {m["method"]: m for m in report["methods"]}
    assert list(by_method) == ["grpo", "chord_phi", "sft_then_rl"]
    assert by_method["grpo"]["final_reward"] == pytest.approx(0.35)  # (0.3 + 0.4) / 2
    assert by_method["sft_then_rl"]["curves"]["mu"] == [[1, 1.0], [2, 1.0], [3, 0.0], [4, 0.0]]
    assert by_method["sft_then_rl"]["switch_steps"] == [2]
    assert report["config"]["overrides"] == ["trainer.logger=[console]"]

    stage2_argv = json.loads((out / "runs" / "sft_then_rl" / "rl" / "argv.json").read_text())
    assert f"actor_rollout_ref.model.path={out / 'runs' / 'sft_then_rl' / 'sft' / 'hf'}" in stage2_argv
    assert "trainer.logger=[console]" in stage2_argv
    assert fake_trainer == [out / "runs" / "sft_then_rl" / "sft" / "checkpoints"]
    grpo_argv = json.loads((out / "runs" / "grpo" / "argv.json").read_text())
    assert grpo_argv[-1] == "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"

    table = (out / "compare.md").read_text()
    assert "| `chord_phi` | 4 | 0.350 | 0.400 (4) |" in table
    assert mpimg.imread(out / "compare.png").shape[:2] == (800, 1200)

    # --report-only rebuilds the same table from the runs' result.json files, training nothing.
    (out / "compare.md").unlink()
    assert main(_args(out, "--methods", "grpo,chord_phi,sft_then_rl", "--steps", "4", "--report-only")) == 0
    assert "| `chord_phi` | 4 | 0.350 | 0.400 (4) |" in (out / "compare.md").read_text()


def test_a_failed_method_is_reported_and_the_others_still_run(fake_trainer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_FAIL_METHOD", "chord_mu")
    out = tmp_path / "cmp"
    rc = main(_args(out, "--methods", "chord_mu,grpo", "--steps", "3"))
    printed = capsys.readouterr().out
    assert rc == 1
    assert "[1/2 chord_mu] FAILED (exit 3)" in printed
    table = (out / "compare.md").read_text()
    assert "| `chord_mu` | failed after 1 |" in table
    assert "| `grpo` | 3 |" in table

    rc = main(_args(tmp_path / "ff", "--methods", "chord_mu,grpo", "--steps", "3", "--fail-fast"))
    assert rc == 1
    methods = [m["method"] for m in json.loads((tmp_path / "ff" / "compare.json").read_text())["methods"]]
    assert methods == ["chord_mu"]


def test_seeds_run_seed_major_in_per_seed_dirs_and_report_mean_std(fake_trainer, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = _args(out, "--methods", "grpo,chord_phi", "--steps", "4", "--last-k", "2", "--seed", "3",
                 "--no-sweep", "--seeds", "2", "--smooth", "2")  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 methods x 4 steps x 2 seeds (16 steps)" in printed
    assert "--no-sweep: one launch per (method, seed)" in printed
    order = [printed.index(f"[{i}/4 {m} seed {s}] step 1/4") for i, (s, m) in
             enumerate([(3, "grpo"), (3, "chord_phi"), (4, "grpo"), (4, "chord_phi")], 1)]  # fmt: skip
    assert order == sorted(order)  # seed-major
    assert "all 16/16 (100%)" in printed
    for method in ("grpo", "chord_phi"):
        for seed in (3, 4):
            argv_run = json.loads((out / "runs" / method / f"seed{seed}" / "argv.json").read_text())
            assert f"data.seed={seed}" in argv_run and f"actor_rollout_ref.rollout.seed={seed}" in argv_run
            assert (out / "runs" / method / f"seed{seed}" / "result.json").is_file()

    report = json.loads((out / "compare.json").read_text())
    assert report["config"]["seeds"] == [3, 4] and report["config"]["sweep"] is False
    assert [(m["method"], m["seed"]) for m in report["methods"]] == [
        ("grpo", 3), ("chord_phi", 3), ("grpo", 4), ("chord_phi", 4),
    ]  # fmt: skip
    # fake reward: step / 10 + seed / 100; final over the last 2 steps: 0.38 (seed 3), 0.39 (seed 4)
    final = report["summary"]["grpo"]["final_reward"]
    assert final["per_seed"] == {"3": pytest.approx(0.38), "4": pytest.approx(0.39)}
    assert final["std"] == pytest.approx(0.01 / 2**0.5)
    reach = report["time_to_reward"]["chord_phi"]
    assert {s: v["step"] for s, v in reach["per_seed"].items()} == {"3": 4, "4": 4}  # average of 2 ends there
    walls = report["methods"][0]["step_wall_s"]
    assert [w[0] for w in walls] == [1, 2, 3, 4] and 0 < walls[0][1] <= walls[-1][1]

    table = (out / "compare.md").read_text()
    assert "| `grpo` | 2 | 0.385 ± 0.007 |" in table
    assert "| `chord_phi` | 4 | 4 | 0.390 | 0.440 (4) |" in table  # per run, with the seed column
    assert "4.0 ± 0.0 (2/2 reached)" in table
    assert "Mean ± std over 2 seeds:" in printed

    (out / "compare.md").unlink()
    assert main([*argv, "--report-only"]) == 0
    assert "| `grpo` | 2 | 0.385 ± 0.007 |" in (out / "compare.md").read_text()
    assert main([*argv[:-4], "--seeds", "3", "--report-only"]) == 2
    assert "runs/grpo/seed5/result.json is missing" in capsys.readouterr().err

    # a one-seed run into the same --out would wipe runs/grpo/ with its seed folders: refused first
    i = argv.index("--seeds")
    assert main([*argv[:i], "--seeds", "1", *argv[i + 2 :]]) == 2
    assert "runs/grpo holds the per-seed runs of an earlier --seeds comparison (seed3, seed4)" in (
        capsys.readouterr().err
    )
    assert (out / "runs" / "grpo" / "seed3" / "result.json").is_file()


def test_seeds_of_a_one_stage_method_run_as_one_sweep_launch(fake_trainer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_START_S", "1.0")  # every launch's start-up, before its first step
    out = tmp_path / "cmp"
    argv = _args(out, "--methods", "grpo,sft_then_rl,chord_phi", "--steps", "4", "--last-k", "2",
                 "--seed", "3", "--seeds", "2", "trainer.logger=[console]")  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "sft_then_rl: a launch per seed, not one for all seeds: 2 stages (sft -> rl)" in printed
    # one launch per swept method at its place among the first seed's runs, then the second seed's
    starts = [
        "[1/4 grpo seeds 3..4] start: one launch of 2 seeds x 4 steps of method=grpo",
        "[2/4 sft_then_rl:sft seed 3] start",
        "[3/4 chord_phi seeds 3..4] start",
        "[4/4 sft_then_rl:sft seed 4] start",
    ]
    assert [printed.index(line) for line in starts] == sorted(printed.index(line) for line in starts)
    assert "[1/4 grpo seed 4] step 4/4  reward 0.440" in printed  # every seed's file is followed
    assert "all 24/24 (100%)" in printed

    grpo = out / "runs" / "grpo"
    launch_argv = json.loads((grpo / "argv.json").read_text())
    assert "sweep.seeds=[3,4]" in launch_argv and f"sweep.dir={grpo}" in launch_argv
    assert f"hydra.run.dir={grpo / 'hydra'}" in launch_argv and "trainer.logger=[console]" in launch_argv
    assert not any(a.split("=")[0].lstrip("+") in PER_SEED_KEYS for a in launch_argv)
    assert (grpo / "train.log").read_text().startswith("+ ") and not (grpo / "seed3" / "train.log").exists()
    assert "data.seed=4" in json.loads(
        (out / "runs" / "sft_then_rl" / "seed4" / "rl" / "argv.json").read_text()
    )

    report = json.loads((out / "compare.json").read_text())
    assert report["config"]["sweep"] is True
    methods = ["grpo", "sft_then_rl", "chord_phi"]  # the report stays seed-major
    assert [(m["method"], m["seed"]) for m in report["methods"]] == [(m, s) for s in (3, 4) for m in methods]
    results = {(m["method"], m["seed"]): m for m in report["methods"]}
    assert all(m["status"] == "ok" for m in results.values())
    assert report["summary"]["grpo"]["final_reward"]["per_seed"] == {
        "3": pytest.approx(0.38),
        "4": pytest.approx(0.39),
    }
    for seed in (3, 4):
        assert results[("grpo", seed)]["run_dirs"] == [str(grpo / f"seed{seed}")]
        assert (grpo / f"seed{seed}" / "result.json").is_file()
    # seed 3's clock starts with the launch (start-up included), seed 4's at seed 3's last step
    first, second = results[("grpo", 3)], results[("grpo", 4)]
    assert first["step_wall_s"][0][1] >= 1.0 > second["step_wall_s"][0][1]
    assert [w[0] for w in second["step_wall_s"]] == [1, 2, 3, 4]
    assert first["wall_s"] >= 1.0 > second["wall_s"]

    (out / "compare.md").unlink()
    assert main([*argv, "--report-only"]) == 0  # reads the per-seed result.json files as before
    assert "| `grpo` | 2 | 0.385 ± 0.007 |" in (out / "compare.md").read_text()


def test_which_methods_are_swept(fake_trainer, tmp_path, capsys):
    def swept(*argv: str) -> list[str]:
        args, overrides = compare.build_parser().parse_known_args(_args(tmp_path, *argv))
        comparison = compare.Comparison(args, overrides, "chord-compare")
        comparison.plans = [plan_method(m, args.steps) for m in args.methods.split(",")]
        return sorted(comparison.plan_sweeps())

    methods = ("--methods", "grpo,sft_then_rl,uft,chord_phi", "--seeds")
    assert swept(*methods, "2") == ["chord_phi", "grpo"]
    assert "sft_then_rl: a launch per seed, not one for all seeds: 2 stages" in capsys.readouterr().out
    assert swept(*methods, "1") == []
    assert swept(*methods, "2", "--no-sweep") == []
    assert swept(*methods, "2", "actor_rollout_ref.rollout.name=vllm") == []
    assert (
        "grpo: a launch per seed, not one for all seeds: sweep.seeds: actor_rollout_ref.rollout.name='vllm'"
        in (capsys.readouterr().out)
    )
    assert main(_args(tmp_path / "bad", "sweep.seeds=[0,1]")) == 2
    assert "sweep.seeds: set by chord-compare for every method; use --seeds" in capsys.readouterr().err


def test_a_failed_sweep_keeps_the_seeds_it_finished(fake_trainer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_FAIL_METHOD", "grpo")
    monkeypatch.setenv("FAKE_FAIL_SEED", "1")  # the launch exits during seed 1's first step
    out = tmp_path / "cmp"
    assert main(_args(out, "--methods", "grpo,chord_phi", "--steps", "3", "--seeds", "3")) == 1
    printed = capsys.readouterr().out
    assert "[1/2 grpo seeds 0..2] FAILED (exit 3)" in printed
    log = out / "runs" / "grpo" / "train.log"
    results = {(m["method"], m["seed"]): m for m in json.loads((out / "compare.json").read_text())["methods"]}
    assert results[("grpo", 0)]["status"] == "ok" and results[("grpo", 0)]["error"] is None
    assert results[("grpo", 1)]["status"] == "failed" and results[("grpo", 1)]["steps"] == 1
    assert results[("grpo", 1)]["error"] == (
        f"the sweep launch of seeds [0, 1, 2] exited with 3 after 1 of 3 steps of this seed; see {log}"
    )
    never = results[("grpo", 2)]
    assert never["status"] == "failed" and f"after 0 of 3 steps of this seed; see {log}" in never["error"]
    assert never["wall_s"] == 0.0 and never["step_wall_s"] == []
    assert (out / "runs" / "grpo" / "seed2" / "result.json").is_file()
    assert all(results[("chord_phi", s)]["status"] == "ok" for s in (0, 1, 2))  # the next launch ran
    assert "| `grpo` | 1/3 ok | 0.200 ± - |" in (out / "compare.md").read_text()  # seed 0 alone


def test_eval_scores_the_starting_policy_as_the_base_row(fake_trainer, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_eval(model, data, out_dir, args, max_new_tokens, seed=None):
        calls.append((str(model), list(data), max_new_tokens, seed))
        out_dir.mkdir(parents=True, exist_ok=True)
        if str(model) == "assets/base_model":
            return {"val": 50.0, "retention": 40.0}
        return {"val": 40.0 + seed, "retention": 30.0}

    monkeypatch.setattr(compare, "evaluate_checkpoint", fake_eval)
    out = tmp_path / "cmp"
    argv = [a for a in _args(out, "--methods", "grpo", "--steps", "2", "--seeds", "2") if a != "--no-eval"]
    assert main(argv) == 0
    assert "base (the starting policy), seed 0: val 50.0%, retention 40.0%" in capsys.readouterr().out
    # the composed model path, on the methods' eval data and length, once per seed, before any run
    assert calls[:2] == [
        ("assets/base_model", ["val.parquet"], 8, 0),
        ("assets/base_model", ["val.parquet"], 8, 1),
    ]
    assert [c[0] for c in calls[2:]] == [
        str(out / "runs" / "grpo" / f"seed{s}" / "checkpoints") for s in (0, 1)
    ]

    report = json.loads((out / "compare.json").read_text())
    assert [(m["method"], m["seed"]) for m in report["methods"]] == [
        ("base", 0), ("base", 1), ("grpo", 0), ("grpo", 1),
    ]  # fmt: skip
    base = report["summary"]["base"]
    assert base["eval/val"]["mean"] == 50.0 and base["eval/val"]["std"] == 0.0
    assert base["final_reward"]["mean"] is None and base["wall_s"]["mean"] is None  # nothing trained
    assert "base" not in report["time_to_reward"]  # no reward curve to reach GRPO's reward with
    table = (out / "compare.md").read_text()
    assert "| `base` | 2 | - | 40.0 ± 0.0 | 50.0 ± 0.0 | - | - | - |" in table
    assert "| `grpo` | 2 | 0.155 ± 0.007 | 30.0 ± 0.0 | 40.5 ± 0.7 |" in table
    assert "`base`: the policy every method starts from" in table
    assert (out / "runs" / "base" / "seed1" / "result.json").is_file()

    (out / "compare.md").unlink()
    assert main([*argv, "--report-only"]) == 0
    assert "| `base` | 2 | - | 40.0 ± 0.0 | 50.0 ± 0.0 |" in (out / "compare.md").read_text()
    # a one-seed rerun into the same --out would wipe runs/base/ with its seed folders: refused
    one_seed = [a for a in _args(out, "--methods", "chord_phi", "--steps", "2") if a != "--no-eval"]
    assert main(one_seed) == 2
    assert "runs/base holds the per-seed runs of an earlier --seeds comparison (seed0, seed1)" in (
        capsys.readouterr().err
    )


def test_jobs_overlap_runs_and_keep_the_report_in_run_order(fake_trainer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_STEP_S", "0.2")  # long enough for two runs to overlap
    reports = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        argv = _args(out, "--methods", "grpo,chord_phi", "--steps", "4", "--seeds", "2", "--jobs", jobs)
        assert main(argv) == 0
        reports[jobs] = json.loads((out / "compare.json").read_text())
        runs = [(m["method"], m["seed"], m["final_reward"]) for m in reports[jobs]["methods"]]
        assert runs == [
            ("grpo", 0, pytest.approx(0.25)), ("chord_phi", 0, pytest.approx(0.25)),
            ("grpo", 1, pytest.approx(0.26)), ("chord_phi", 1, pytest.approx(0.26)),
        ]  # fmt: skip
        assert reports[jobs]["config"]["jobs"] == int(jobs)
        assert "all 16/16 (100%)" in capsys.readouterr().out
    finals = {jobs: {m: s["final_reward"] for m, s in r["summary"].items()} for jobs, r in reports.items()}
    assert finals["1"] == finals["2"]

    def span(jobs: str, method: str, seed: int) -> list[float]:
        run = tmp_path / f"jobs{jobs}" / "runs" / method / f"seed{seed}"
        return json.loads((run / "span.json").read_text())

    (a0, a1), (b0, b1) = span("2", "grpo", 0), span("2", "chord_phi", 0)
    assert b0 < a1 and a0 < b1  # the first two runs ran at the same time with --jobs 2
    (a0, a1), (b0, b1) = span("1", "grpo", 0), span("1", "chord_phi", 0)
    assert a1 <= b0  # and one after the other without
    assert main(_args(tmp_path / "bad", "--jobs", "0")) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err


def test_bad_arguments_exit_2_before_any_run(tmp_path, capsys):
    assert main(_args(tmp_path, "--methods", "grpo,ppo")) == 2
    assert "unknown method(s) ['ppo']" in capsys.readouterr().err
    assert main(_args(tmp_path, "--methods", "sft_then_rl", "--steps", "1")) == 2
    assert main(_args(tmp_path, "trainer.total_training_steps=3")) == 2
    assert "use --steps" in capsys.readouterr().err
    assert main(_args(tmp_path, "--seeds", "0")) == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_metrics_follower_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower(path)
    assert follower.poll() == []  # not written yet
    path.write_bytes(b'{"step": 1, "data": {"a": 1}}\n{"step": 2, "da')
    assert follower.poll() == [{"step": 1, "data": {"a": 1}}]
    with open(path, "ab") as f:
        f.write(b'ta": {"a": 2}}\n')
    assert follower.poll() == [{"step": 2, "data": {"a": 2}}]
    assert follower.poll() == []


def test_metrics_follower_rereads_a_record_trimmed_by_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "data": {}}\n{"step": 2, "data": {}}\n{"step": 3, "data": {}}\n')
    follower = MetricsFollower(path)
    assert [r["step"] for r in follower.poll()] == [1, 2, 3]
    path.write_bytes(b'{"step": 1, "data": {}}\n')  # resumed from the step-1 checkpoint
    assert [r["step"] for r in follower.poll()] == [1]
    with open(path, "ab") as f:
        f.write(b'{"step": 2, "data": {"again": 1}}\n')
    assert follower.poll() == [{"step": 2, "data": {"again": 1}}]


def test_progress_line_counts_steps_over_all_methods():
    progress = Progress(total_steps=4, num_methods=2)
    line = progress.step_line("[1/2 grpo]", 1, 2, {"critic/score/mean": 0.25, "chord/mu": 0.0})
    assert line.startswith("[1/2 grpo] step 1/2  reward 0.250  mu 0.000 | all 1/4 (25%), 0:00:00 elapsed")
    assert progress.done == 1


def test_run_stage_returns_the_exit_code_and_logs_output(tmp_path, capsys):
    cmd = [sys.executable, "-c", "print('hello from the trainer'); raise SystemExit(5)"]
    rc, wall = compare.run_stage(cmd, tmp_path / "run", {}, Progress(1, 1), "[1/1 x]", 0, 1)
    assert rc == 5
    assert wall >= 0.0
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.startswith("+ ") and "hello from the trainer" in log


def test_run_stage_stops_the_trainer_when_cancelled(tmp_path):
    """An interrupt reaches runs in worker threads (--jobs) through the cancel event."""
    import threading

    pid_file = tmp_path / "pid"
    cmd = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        compare.run_stage(cmd, tmp_path / "run", {}, Progress(1, 1), "[1/1 x]", 0, 1, cancel=cancel)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(pid, 0)
