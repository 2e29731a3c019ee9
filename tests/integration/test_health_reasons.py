"""A deployment that fails to start shows Serve's own reason in /api/admin/health, not only
`DeploymentUnavailableError`; the public /api/health gives its status and a reason class, never the
model's path."""

import httpx
import pytest

from tests.integration.conftest import ADMIN_TOKEN, wait_until

pytestmark = pytest.mark.integration

MISSING = "/nonexistent/models/ghost.gguf"


def test_health_names_the_reason_a_deployment_failed_to_start(ray_serve):
    from ray import serve

    from serve_app.builder import build_app

    config = {"models": [{"name": "ghost", "family": "llm", "resources": {"num_cpus": 0.1},
                          "backend": {"kind": "llama_cpp", "source": {"path": MISSING}}},
                         {"name": "espeak", "family": "tts", "resources": {"num_cpus": 0.1},
                          "backend": {"kind": "espeak", "voices": {"espeak": "en-us"}}}],
              "ingress": {"resources": {"num_cpus": 0.1}},
              "health": {"cache_s": 0, "probe_timeout_s": 5}}
    try:
        with pytest.raises(RuntimeError, match="Deploying application ghosts failed"):
            serve.run(build_app(config), name="ghosts", route_prefix="/ghosts")

        def health(path="/api/health", headers=None):
            r = httpx.get(f"{ray_serve}/ghosts{path}", timeout=30, headers=headers)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            return body if body and "models" in body else None  # not an error body from a replica still starting

        public = wait_until(health, 60, "the failed application's ingress answers /api/health")
        seen = public["models"]["ghost"]
        assert (seen["route"], seen["status"], seen["reason"]) == ("llm", "error", "deployment_failed")
        assert not {"error", "probe_error", "deployment"} & set(seen)
        assert MISSING not in str(public) and "ghost.gguf" not in str(public)
        assert public["models"]["espeak"]["status"] == "ok" and public["models"]["espeak"]["reason"] is None
        assert httpx.get(f"{ray_serve}/ghosts/api/admin/health", timeout=30).status_code == 401
        report = health("/api/admin/health", {"authorization": f"Bearer {ADMIN_TOKEN}"})
        ghost = report["models"]["ghost"]
        assert ghost["status"] == "error"
        assert ghost["deployment"]["status"] == "DEPLOY_FAILED"
        assert ghost["error"].startswith("deployment DEPLOY_FAILED: ")
        assert f"model path does not exist: {MISSING}" in ghost["error"]
        assert "failed to start" in ghost["deployment"]["message"]
        assert ghost["probe_error"]  # what the probe itself saw is kept
        assert report["models"]["espeak"]["status"] == "ok"
        assert "deployment" not in report["models"]["espeak"]
    finally:
        serve.delete("ghosts")
