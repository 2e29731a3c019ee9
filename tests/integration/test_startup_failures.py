"""A roster entry whose model cannot load makes start-up fail loudly, naming the problem."""

import pytest

pytestmark = pytest.mark.integration


def test_missing_model_file_fails_startup(ray_serve):
    from ray import serve

    from serve_app.builder import build_app

    missing = "/nonexistent/models/smollm2.gguf"
    config = {"models": [{"name": "ghost", "family": "llm", "resources": {"num_cpus": 0.1},
                          "backend": {"kind": "llama_cpp", "source": {"path": missing}}}],
              "ingress": {"resources": {"num_cpus": 0.1}}}
    try:
        with pytest.raises(RuntimeError, match="Deploying application broken failed"):
            serve.run(build_app(config), name="broken", route_prefix="/broken")
        status = serve.status().applications["broken"].deployments["llm-ghost"]
        assert status.status == "DEPLOY_FAILED"
        assert f"model path does not exist: {missing}" in status.message
    finally:
        serve.delete("broken")
