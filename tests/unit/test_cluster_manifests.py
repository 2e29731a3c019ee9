"""The cluster manifests: cluster/ray-up.yaml (Ray's cluster launcher) and cluster/kuberay-rayservice.yaml
(KubeRay). No cluster starts: they are checked against Ray's own schemas, the app's config (through the path
the app loads its args by), cluster/serve.env, and the resources the GPU roster asks for."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.llm.vllm_server import llm_config_kwargs
from serve_app.config_file import load_serve_config
from serve_app.local_env import local_env
from vocabulary.config import ModelSpec, SwitchboardConfig

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAY_UP = CLUSTER / "ray-up.yaml"
RAYSERVICE = CLUSTER / "kuberay-rayservice.yaml"
GPU_ROSTER = CLUSTER / "gpu.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"

# Variables of cluster/serve.env that a cluster sets otherwise: token auth stays on (serve.env turns it off for a
# local single-user cluster), and Ray's session files stay where Ray puts them (RAY_TMPDIR serves `make stop`).
NOT_ON_A_CLUSTER = {"RAY_AUTH_MODE", "RAY_TMPDIR"}
# local_env() adds this one as a path in this machine's .venv; on a node it names the node's own wrapper.
HAPROXY_WRAPPER = "RAY_SERVE_HAPROXY_BINARY_PATH"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def node_env() -> dict[str, str]:
    """What every node of a cluster needs from cluster/serve.env."""
    env = {key: value for key, value in local_env().items() if key not in NOT_ON_A_CLUSTER}
    del env[HAPROXY_WRAPPER]
    return env


def check_node_env(env: dict[str, str], where: str) -> None:
    expected = node_env()
    assert "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH" in expected
    missing = sorted(set(expected) - set(env))
    assert not missing, f"{where} lacks {missing} (cluster/serve.env)"
    differ = {key: (env[key], value) for key, value in expected.items() if env[key] != value}
    assert not differ, f"{where} differs from cluster/serve.env: {differ}"
    assert env.get(HAPROXY_WRAPPER, "").endswith("/switchboard-haproxy"), where
    assert env.get("RAY_AUTH_MODE") in (None, "token"), f"{where} turns Ray's token auth off"


# --- what a deployment asks for, and what a node has -------------------------------------------------------

def actor_needs(options: dict) -> dict[str, float]:
    # Memory is left out: Ray measures a node's memory itself, and the manifests do not declare it.
    needs = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0), **options.get("resources", {})}
    return {key: value for key, value in needs.items() if value}


def model_needs(spec: ModelSpec) -> dict[str, float]:
    if spec.family == "llm" and spec.backend.kind == "vllm":
        # What the app hands Ray Serve LLM: its replica's options, and one GPU bundle per tensor-parallel rank
        # in the replica's placement group (the first bundle holds the replica too).
        kwargs = llm_config_kwargs(spec)
        return {**actor_needs(kwargs["deployment_config"]["ray_actor_options"]),
                "GPU": kwargs["engine_kwargs"]["tensor_parallel_size"]}
    return actor_needs(spec.resources.ray_actor_options())


Replica = tuple[str, dict[str, float], "int | None"]  # deployment, needs, max_replicas_per_node


def replicas(config: SwitchboardConfig, which: str) -> list[Replica]:
    """One entry per replica, at each deployment's min_replicas or max_replicas."""
    deployments = [("ingress", config.ingress.autoscaling, actor_needs(config.ingress.resources.ray_actor_options()))]
    if config.router.placement == "deployment":
        deployments.append(("router", config.router.autoscaling,
                            actor_needs(config.router.resources.ray_actor_options())))
    deployments += [(spec.deployment_name(), spec.autoscaling, model_needs(spec)) for spec in config.models
                    if not spec.in_ingress()]  # a model placed in the ingress has no replicas of its own
    return [(name, needs, getattr(scaling, "max_replicas_per_node", None))
            for name, scaling, needs in deployments for _ in range(getattr(scaling, which))]


class Node:
    """A node's free resources; its GPUs one by one, since a fractional GPU is a share of one device."""

    def __init__(self, group: str, resources: dict[str, float]):
        self.group = group
        self.replicas: dict[str, int] = {}
        self.free = {key: value for key, value in resources.items() if key != "GPU"}
        self.gpus = [1.0] * int(resources.get("GPU", 0))

    def take(self, needs: dict[str, float]) -> bool:
        if any(self.free.get(key, 0) + 1e-9 < value for key, value in needs.items() if key != "GPU"):
            return False
        gpu = needs.get("GPU", 0)
        if 0 < gpu < 1:
            shares = [i for i, free in enumerate(self.gpus) if free + 1e-9 >= gpu]
            if not shares:
                return False
            self.gpus[min(shares, key=lambda i: self.gpus[i])] -= gpu
        elif gpu:
            whole = [i for i, free in enumerate(self.gpus) if free == 1.0]
            if len(whole) < gpu:
                return False
            for i in whole[:int(gpu)]:
                self.gpus[i] = 0.0
        for key, value in needs.items():
            if key != "GPU":
                self.free[key] -= value
        return True


def fits(needs: dict[str, float], resources: dict[str, float]) -> bool:
    return Node("", resources).take(needs)


def place(config: SwitchboardConfig, groups: dict[str, tuple[dict[str, float], int]], which: str) -> list[str]:
    """Pack every replica into the worker groups (first fit, largest first; a new node only when none has room,
    from the group with the fewest GPUs that fits, as Ray's autoscaler avoids GPU nodes for CPU work). Returns
    the replicas that found no room."""
    nodes: list[Node] = []
    left = []
    for name, needs, per_node in sorted(replicas(config, which),
                                        key=lambda r: (r[1].get("GPU", 0), r[1].get("CPU", 0)), reverse=True):
        room = [node for node in nodes if per_node is None or node.replicas.get(name, 0) < per_node]
        node = next((node for node in room if node.take(needs)), None)
        if node is None:
            candidates = [group for group, (resources, count) in groups.items()
                          if fits(needs, resources) and sum(n.group == group for n in nodes) < count]
            if not candidates:
                left.append(name)
                continue
            group = min(candidates, key=lambda g: (groups[g][0].get("GPU", 0), groups[g][0].get("CPU", 0)))
            node = Node(group, groups[group][0])
            nodes.append(node)
            assert node.take(needs)
        node.replicas[name] = node.replicas.get(name, 0) + 1
    return left


# --- ray up ------------------------------------------------------------------------------------------------

def ray_up_start_env(command: str) -> dict[str, str]:
    words = shlex.split(command.replace(";", " ; "))
    start = next(i for i in range(len(words) - 1) if words[i:i + 2] == ["ray", "start"])
    return dict(word.split("=", 1) for word in words[:start] if "=" in word and word.split("=", 1)[0].isupper())


def ray_up_groups(which: str) -> dict[str, tuple[dict[str, float], int]]:
    config = load(RAY_UP)
    return {name: (node_type["resources"], node_type.get(which, 0))
            for name, node_type in config["available_node_types"].items() if name != config["head_node_type"]}


def test_every_cluster_file_parses():
    for path in sorted(CLUSTER.glob("*.yaml")):
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path.name


def test_ray_up_validates_against_rays_cluster_launcher_schema():
    raw = load(RAY_UP)
    schema = json.loads(RAY_SCHEMA.read_text())
    jsonschema.validate(raw, schema)
    assert set(schema["required"]) <= set(raw)
    assert {"head_node_type", "available_node_types", "setup_commands", "head_start_ray_commands",
            "worker_start_ray_commands"} <= set(raw)
    # and as `ray up` reads it: its provider's defaults filled in, then Ray's own checks (head type among the
    # node types, the sum of min_workers within max_workers, ...)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(raw)))


def test_ray_up_has_a_cpu_head_and_gpu_workers():
    config = load(RAY_UP)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["resources"]
    assert "CPU" in head and head.get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) >= 1 and t.get("max_workers", 0) >= 1 for t in workers)
    assert all(t.get("min_workers", 0) <= t.get("max_workers", 0) for t in workers)


def test_ray_up_starts_every_node_with_serve_env_and_token_auth():
    config = load(RAY_UP)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        env = ray_up_start_env(start)
        check_node_env(env, key)
        assert env["RAY_AUTH_MODE"] == "token", key
        assert ("--head" in start) == (key == "head_start_ray_commands"), key
    # the token every node reads (Ray's default path), from the machine that runs `ray up`
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_ray_up_installs_the_project_with_the_gpu_extra():
    config = load(RAY_UP)
    setup = " && ".join(config["setup_commands"])
    assert "make install" in setup and "'.[gpu]'" in setup
    pyproject = (CLUSTER.parent / "pyproject.toml").read_text()
    assert "\ngpu = [" in pyproject
    assert "\ninstall:" in (CLUSTER.parent / "Makefile").read_text()
    # the project itself reaches every node, without this machine's venv
    assert "." in config["file_mounts"].values() and ".gitignore" in config.get("rsync_filter", [])


@pytest.mark.parametrize("roster", ["gpu.yaml", "gpu-upstream.yaml"])
def test_ray_up_can_place_every_deployment_of_the_gpu_roster(roster):
    (config,) = load_serve_config(CLUSTER / roster).values()
    groups = ray_up_groups("max_workers")
    for name, needs, _ in replicas(config, "max_replicas"):
        assert any(fits(needs, resources) for resources, _ in groups.values()), f"no worker type fits {name}: {needs}"
    assert place(config, groups, "max_replicas") == [], "max_workers cannot hold every deployment's max_replicas"
    assert place(config, ray_up_groups("min_workers"), "min_replicas") == [], \
        "the workers that start with the cluster cannot hold every deployment's min_replicas"


# --- KubeRay -----------------------------------------------------------------------------------------------

def rayservice() -> dict:
    return load(RAYSERVICE)


def serve_config_of(service: dict) -> dict:
    text = service["spec"]["serveConfigV2"]
    assert isinstance(text, str), "serveConfigV2 is a string holding a Serve config"
    return yaml.safe_load(text)


def node_groups(service: dict) -> dict[str, dict]:
    spec = service["spec"]["rayClusterConfig"]
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec["workerGroupSpecs"]}}


def ray_container(group: dict) -> dict:
    (container,) = [c for c in group["template"]["spec"]["containers"] if c["name"].startswith("ray-")]
    return container


def group_resources(group: dict) -> dict[str, float]:
    """The resources `ray start` gets in a pod: rayStartParams, else the container's limits (as KubeRay does)."""
    params = group.get("rayStartParams") or {}
    limits = ray_container(group).get("resources", {}).get("limits", {})
    resources = {"CPU": float(params.get("num-cpus", limits.get("cpu", 0))),
                 "GPU": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
    if "resources" in params:  # KubeRay's form: a JSON object inside quotes, '"{\"name\": 1}"'
        resources.update(json.loads(params["resources"].strip().strip('"').replace('\\"', '"')))
    return resources


def test_rayservice_is_a_kuberay_rayservice():
    service = rayservice()
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    assert service["metadata"]["name"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster.get("authOptions", {}).get("mode") == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    names = [g["groupName"] for g in cluster["workerGroupSpecs"]]
    assert len(names) == len(set(names)) >= 1
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    for name, group in node_groups(service).items():
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values()), name
        assert ray_container(group)["image"], name


def test_rayservice_serve_config_validates_against_serves_schema():
    ServeDeploySchema.model_validate(serve_config_of(rayservice()))


def test_rayservice_app_args_validate_as_switchboard_config(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text(rayservice()["spec"]["serveConfigV2"])
    configs = load_serve_config(path)  # the app's own loader: serve_app.builder.load_config
    assert set(configs) == {"switchboard"}
    assert any(m.backend.kind == "vllm" for m in configs["switchboard"].models)


def test_rayservice_serves_exactly_the_gpu_roster():
    assert serve_config_of(rayservice()) == load(GPU_ROSTER), \
        "serveConfigV2 has drifted from cluster/gpu.yaml: change both"


def test_rayservice_head_has_no_gpu_and_a_worker_group_has_gpus():
    groups = node_groups(rayservice())
    head = groups.pop("head")
    assert not any("gpu" in key for part in ray_container(head)["resources"].values() for key in part)
    assert group_resources(head) == {"CPU": 0, "GPU": 0}
    gpu_groups = [g for g in groups.values() if group_resources(g)["GPU"] >= 1]
    assert gpu_groups
    for group in gpu_groups:
        resources = ray_container(group)["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"]
        assert any(m["mountPath"] == "/models" for m in ray_container(group).get("volumeMounts", []))


def test_rayservice_every_node_group_has_serve_env():
    for name, group in node_groups(rayservice()).items():
        env = {item["name"]: item.get("value") for item in ray_container(group).get("env", [])}
        check_node_env(env, f"node group {name}")


def test_rayservice_can_place_every_deployment(tmp_path):
    service = rayservice()
    (tmp_path / "serve.yaml").write_text(service["spec"]["serveConfigV2"])
    (config,) = load_serve_config(tmp_path / "serve.yaml").values()
    workers = {name: g for name, g in node_groups(service).items() if name != "head"}
    for name, needs, _ in replicas(config, "max_replicas"):
        assert any(fits(needs, group_resources(g)) for g in workers.values()), f"no worker group fits {name}: {needs}"
    assert place(config, {n: (group_resources(g), g["maxReplicas"]) for n, g in workers.items()},
                 "max_replicas") == [], "maxReplicas cannot hold every deployment's max_replicas"
    assert place(config, {n: (group_resources(g), g["minReplicas"]) for n, g in workers.items()},
                 "min_replicas") == [], "minReplicas cannot hold every deployment's min_replicas"

