"""recipe/launch/slurm.py: Slurm node lists, head address, container wrapping, the Slurm plan."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from recipe.launch.slurm import (
    Container,
    LaunchError,
    RaySettings,
    build_slurm_plan,
    gpus_per_node,
    head_first,
    interface_ipv4,
    merge_overrides,
    parse_counts_per_node,
    parse_nodelist,
    pick_head_ip,
    ray_start_argv,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("nodelist", "expected"),
    [
        ("node[01-03,07],gpu-a[1-2]", ["node01", "node02", "node03", "node07", "gpu-a1", "gpu-a2"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("n[08-10]", ["n08", "n09", "n10"]),  # padding follows the first number
        ("n[99-101]", ["n99", "n100", "n101"]),
        ("r[1-2]-n[08-09]", ["r1-n08", "r1-n09", "r2-n08", "r2-n09"]),  # first group outermost
        ("solo", ["solo"]),
        ("a1, b2", ["a1", "b2"]),
    ],
)
def test_parse_nodelist_expands_slurm_hostlists(nodelist, expected):
    assert parse_nodelist(nodelist) == expected


@pytest.mark.parametrize("bad", ["n[1-3", "n1-3]", "n[3-1]", "n[a-b]", "n[[1]]", "a,,b", ""])
def test_parse_nodelist_rejects_malformed_lists_naming_them(bad):
    with pytest.raises(LaunchError, match="node list"):
        parse_nodelist(bad)


def test_counts_per_node_expand_slurm_repeats_and_must_cover_every_node():
    assert parse_counts_per_node("8(x2),4", 3) == [8, 8, 4]
    assert parse_counts_per_node("2", 1) == [2]
    with pytest.raises(LaunchError, match="describes 2 nodes, the job has 3"):
        parse_counts_per_node("8(x2)", 3)
    with pytest.raises(LaunchError, match="cannot read"):
        parse_counts_per_node("8x2", 1)


def test_head_is_the_node_the_batch_script_runs_on():
    nodes = ["n1", "n2", "n3"]
    assert head_first(nodes, {"SLURMD_NODENAME": "n2"}) == ["n2", "n1", "n3"]
    assert head_first(nodes, {}) == nodes


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 0),
        ({"SLURM_GPUS_ON_NODE": "4"}, 4),
        ({"SLURM_GPUS_PER_NODE": "a100:8"}, 8),
        ({"SLURM_GPUS_PER_NODE": "a100:2,v100:2"}, 4),
        ({"SLURM_GPUS_PER_NODE": "3"}, 3),
        ({"CHORD_GPUS_PER_NODE": "2", "SLURM_GPUS_ON_NODE": "8"}, 2),  # the override wins
    ],
)
def test_gpus_per_node_from_slurm_or_override(env, expected):
    assert gpus_per_node(env) == expected


def test_gpus_per_node_rejects_a_non_number():
    with pytest.raises(LaunchError, match="CHORD_GPUS_PER_NODE"):
        gpus_per_node({"CHORD_GPUS_PER_NODE": "eight"})


def test_head_ip_skips_loopback_link_local_and_ipv6_candidates():
    resolve = lambda host: ["127.0.1.1", "169.254.3.4", "fe80::1", "10.1.2.3"]  # noqa: E731
    assert pick_head_ip({}, "h", resolve=resolve, route=lambda: ["10.9.9.9"]) == "10.1.2.3"


def test_head_ip_falls_back_to_the_default_route_then_fails_with_advice():
    assert pick_head_ip({}, "h", resolve=lambda h: ["127.0.0.1"], route=lambda: ["10.9.9.9"]) == "10.9.9.9"
    with pytest.raises(LaunchError, match="CHORD_SOCKET_IFNAME"):
        pick_head_ip({}, "h", resolve=lambda h: [], route=lambda: ["169.254.0.7"])


def test_head_ip_prefers_explicit_address_then_the_named_interface():
    never = lambda *a: pytest.fail("should not be consulted")  # noqa: E731
    assert pick_head_ip({"CHORD_HEAD_IP": "10.0.0.5"}, "h", resolve=never, route=never) == "10.0.0.5"
    env = {"CHORD_SOCKET_IFNAME": "ib0"}
    assert pick_head_ip(env, "h", resolve=never, route=never, interface=lambda n: "10.7.0.1") == "10.7.0.1"
    with pytest.raises(ValueError):
        pick_head_ip({"CHORD_HEAD_IP": "10.0.0"}, "h")


@pytest.mark.skipif("lo" not in {name for _, name in socket.if_nameindex()}, reason="no 'lo' interface")
def test_interface_ipv4_reads_a_real_interface_and_names_the_missing_one():
    assert interface_ipv4("lo") == "127.0.0.1"
    with pytest.raises(LaunchError, match="no-such-if0.*interfaces on"):
        interface_ipv4("no-such-if0")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ([], ["d.a=1", "d.b=2"]),
        (["x=1"], ["d.a=1", "d.b=2", "x=1"]),
        (["--config-name", "p", "x=1"], ["--config-name", "p", "d.a=1", "d.b=2", "x=1"]),
        (["--config-name", "p"], ["--config-name", "p", "d.a=1", "d.b=2"]),
        (["x=1", "d.a=5"], ["d.b=2", "x=1", "d.a=5"]),  # the user's value wins, no duplicate key
        (["+d.b=7"], ["d.a=1", "+d.b=7"]),
    ],
)
def test_merge_overrides_keeps_one_run_of_overrides_and_the_users_values(user, expected):
    assert merge_overrides(["d.a=1", "d.b=2"], user) == expected


def test_apptainer_wrap_binds_the_repo_and_passes_gpus_and_env():
    c = Container("apptainer", "/img/c.sif", "/repo", binds=("/data",), gpus=True)
    assert c.wrap(["ray", "stop"], env={"RAY_ADDRESS": "h:1"}) == [
        "apptainer", "exec", "--nv", "--bind", "/repo,/data", "--pwd", "/repo",
        "--env", "PYTHONPATH=/repo", "--env", "RAY_ADDRESS=h:1", "/img/c.sif", "ray", "stop",
    ]  # fmt: skip


def test_docker_wrap_shares_host_network_and_tmp_names_env_and_overrides_the_entrypoint():
    env = {
        "CHORD_CONTAINER_IMAGE": "chord:gpu",
        "CHORD_CONTAINER_RUNTIME": "docker",
        "CHORD_CONTAINER_BINDS": "/ckpt,/d:/data",
        "CHORD_CONTAINER_USER": "1000:1000",
        "NCCL_SOCKET_IFNAME": "ib0",
        "HOME": "/h",
    }
    c = Container.from_env(env, "/repo", gpus=True)
    argv = c.wrap(["ray", "start", "--block"], name="chord-ray-7-n1")
    assert argv[:3] == ["docker", "run", "--rm"]
    for arg in ("--network=host", "--ipc=host", "--gpus=all", "--name=chord-ray-7-n1", "--user=1000:1000",
                "--volume=/tmp:/tmp", "--volume=/repo:/repo", "--volume=/ckpt:/ckpt", "--volume=/d:/data",
                "--env=NCCL_SOCKET_IFNAME", "--env=PYTHONPATH=/repo", "--workdir=/repo"):  # fmt: skip
        assert arg in argv
    assert "--env=HOME" not in argv  # only the launch-related prefixes travel
    assert argv[-4:] == ["--entrypoint=ray", "chord:gpu", "start", "--block"]


def test_container_runtime_typo_is_named():
    with pytest.raises(LaunchError, match="CHORD_CONTAINER_RUNTIME='podmn'"):
        Container.from_env({"CHORD_CONTAINER_IMAGE": "x", "CHORD_CONTAINER_RUNTIME": "podmn"}, "/r", False)


def test_ray_start_commands_for_head_and_worker():
    ray = RaySettings(port=7000, dashboard=False, num_gpus=4, head_args=("--temp-dir=/t",))
    assert ray_start_argv("head", "10.0.0.1", ray, num_cpus=16) == [
        "ray", "start", "--head", "--node-ip-address=10.0.0.1", "--port=7000", "--include-dashboard=false",
        "--num-cpus=16", "--num-gpus=4", "--disable-usage-stats", "--block", "--temp-dir=/t",
    ]  # fmt: skip
    assert ray_start_argv("worker", "10.0.0.1", RaySettings(), num_cpus=None) == [
        "ray", "start", "--address=10.0.0.1:6379", "--disable-usage-stats", "--block",
    ]  # fmt: skip


SLURM_ENV = {
    "SLURM_JOB_ID": "42",
    "SLURM_JOB_NODELIST": "gpu[07-09]",
    "SLURMD_NODENAME": "gpu08",
    "SLURM_JOB_CPUS_PER_NODE": "32(x2),16",
    "SLURM_GPUS_ON_NODE": "8",
    "CHORD_RAY_PORT": "6400",
    "CHORD_PYTHON": "/venv/bin/python",
}


def _plan(env, tmp_path, args=()):
    plan = build_slurm_plan(
        env, repo="/repo", helper="/repo/recipe/launch/slurm.py", train_args=list(args),
        log_dir=str(tmp_path), head_ip="10.0.0.8", use_scontrol=False,
    )  # fmt: skip
    plan.write(tmp_path / "plan")
    return plan


def test_slurm_plan_one_step_per_node_head_first_with_each_nodes_cpus(tmp_path):
    plan = _plan(SLURM_ENV, tmp_path, ["--config-name", "p", "trainer.total_epochs=2"])
    assert plan.nodes == ["gpu08", "gpu07", "gpu09"]
    head = plan.commands["ray-head"]
    assert head[:6] == [
        "srun",
        "--nodes=1",
        "--ntasks=1",
        "--nodelist=gpu08",
        "--overlap",
        "--job-name=ray-head",
    ]
    assert "--cpus-per-task=32" in head and "--node-ip-address=10.0.0.8" in head and "--num-gpus=8" in head
    worker = plan.commands["ray-worker-gpu09"]
    assert "--nodelist=gpu09" in worker and "--cpus-per-task=16" in worker and "--num-cpus=16" in worker
    assert "--address=10.0.0.8:6400" in worker
    assert plan.commands["stop-gpu07"][-2:] == ["ray", "stop"]
    assert plan.commands["wait-all"] == [
        "/venv/bin/python", "/repo/recipe/launch/slurm.py", "wait-nodes", "--address=10.0.0.8:6400",
        "--timeout=300", "--expected=3", "--expected-gpus=24",
    ]  # fmt: skip
    assert plan.commands["train"] == [
        "chord-train", "--config-name", "p", "trainer.nnodes=3", "trainer.n_gpus_per_node=8",
        "trainer.total_epochs=2",
    ]  # fmt: skip


def test_slurm_plan_files_read_back_in_bash_exactly(tmp_path):
    env = {**SLURM_ENV, "CHORD_TRAIN_CMD": "python -m probe --flag 'a b'"}
    _plan(env, tmp_path, ["x=it's"])
    plan = tmp_path / "plan"
    script = f"""
        source {plan}/env.sh
        mapfile -d '' -t CMD < {plan}/train.argv
        printf '%s|' "$HEAD_NODE" "$NNODES" "$RAY_ADDRESS" "${{WORKER_NODES[@]}}"; echo
        printf '<%s>' "${{CMD[@]}}"
    """
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first == "gpu08|3|10.0.0.8:6400|gpu07|gpu09|"
    assert second == ("<python><-m><probe><--flag><a b><trainer.nnodes=3><trainer.n_gpus_per_node=8><x=it's>")
    assert "ray-head: srun" in (plan / "plan.txt").read_text()


def test_slurm_plan_in_docker_names_containers_and_stops_them_by_name(tmp_path):
    env = {**SLURM_ENV, "CHORD_CONTAINER_IMAGE": "chord:gpu", "CHORD_CONTAINER_RUNTIME": "docker"}
    plan = _plan(env, tmp_path)
    assert "--name=chord-ray-42-gpu07" in plan.commands["ray-worker-gpu07"]
    assert plan.commands["stop-gpu07"][-4:] == ["docker", "stop", "--time=30", "chord-ray-42-gpu07"]
    assert "--env=RAY_ADDRESS=10.0.0.8:6400" in plan.commands["train"]
    assert "--entrypoint=python3" in plan.commands["wait-head"]  # the image's Python, not the host's


def test_slurm_plan_leaves_out_ray_stop_on_shared_nodes_and_checks_the_flag(tmp_path):
    plan = _plan({**SLURM_ENV, "CHORD_RAY_STOP": "0", "CHORD_STOP_GRACE": "15"}, tmp_path)
    assert not [name for name in plan.commands if name.startswith("stop-")]
    assert not list((tmp_path / "plan").glob("stop-*.argv"))
    assert "STOP_GRACE=15" in (tmp_path / "plan" / "env.sh").read_text()
    with pytest.raises(LaunchError, match="CHORD_RAY_STOP='maybe'"):
        _plan({**SLURM_ENV, "CHORD_RAY_STOP": "maybe"}, tmp_path)


def test_slurm_plan_refuses_arguments_with_newlines(tmp_path):
    with pytest.raises(LaunchError, match="newline"):
        _plan(SLURM_ENV, tmp_path, ["x=a\nb"])


def test_slurm_plan_outside_slurm_says_so(tmp_path):
    with pytest.raises(LaunchError, match="inside a Slurm job"):
        _plan({}, tmp_path)


def test_helper_runs_as_a_plain_file_with_the_standard_library_only(tmp_path):
    # The batch script runs it with the host's python3 before any environment is active.
    script = REPO / "recipe" / "launch" / "slurm.py"
    out = subprocess.run(
        ["python3", "-S", "-I", str(script), "nodes", "node[1-2],x"],
        capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["node1", "node2", "x"]
