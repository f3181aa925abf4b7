"""Stand-in for `chord-train` in the launcher tests: joins the Ray cluster and reports on it.

Run by the Slurm batch script (CHORD_TRAIN_CMD) or as a `chord-submit` entrypoint; it receives
the same arguments chord-train would and writes a JSON report:

- CHORD_PROBE_OUT (required): where to write the report.
- CHORD_PROBE_EXPECT_NODES: exit 1 unless that many Ray nodes are alive and each ran a task.
- CHORD_PROBE_PATHS: comma-separated paths, relative to the working directory, whose existence
  is reported (e.g. files that a job's working_dir upload must have left out).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys


def main() -> int:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # Look at the working directory first: Ray deletes a job's unpacked working_dir once the
    # driver disconnects (ray.shutdown), while this process still runs in it.
    cwd = os.getcwd()
    paths = [p for p in os.environ.get("CHORD_PROBE_PATHS", "").split(",") if p]
    exists = {path: os.path.exists(path) for path in paths}
    # Which copy of our code this process imports (a job's working_dir, or the installed one).
    # Not `recipe.__file__`: TransferQueue installs a `recipe/` namespace folder too.
    spec = importlib.util.find_spec("recipe.launch.slurm")
    slurm_helper_file = spec.origin if spec else None
    # Inside a Ray job or the Slurm script RAY_ADDRESS names the cluster; never start a new one.
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    try:
        alive = [node for node in ray.nodes() if node["Alive"]]

        @ray.remote(num_cpus=0)
        def node_id() -> str:
            return ray.get_runtime_context().get_node_id()

        # One task pinned to every node: the workers take work, not only register.
        ran_on = ray.get(
            [
                node_id.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote()
                for node in alive
            ],
            timeout=120,
        )
        resources = ray.cluster_resources()
    finally:
        ray.shutdown()

    report = {
        "argv": sys.argv[1:],
        "cwd": cwd,
        "host": socket.gethostname(),
        "ray_address": os.environ["RAY_ADDRESS"],
        "alive_nodes": len(alive),
        "node_ids": sorted(node["NodeID"] for node in alive),
        "task_node_ids": sorted(ran_on),
        "resources": resources,
        "exists": exists,
        "slurm_helper_file": slurm_helper_file,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("CHORD_", "NCCL_", "GLOO_"))},
    }
    with open(os.environ["CHORD_PROBE_OUT"], "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: report[k] for k in ("argv", "alive_nodes", "task_node_ids")}))

    expected = int(os.environ.get("CHORD_PROBE_EXPECT_NODES", "0"))
    if expected and (len(alive) != expected or sorted(set(ran_on)) != report["node_ids"]):
        print(f"expected {expected} alive nodes that each run a task, got {report}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
