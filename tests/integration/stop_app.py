"""Two tiny Serve applications for tests/integration/test_clean_stop.py: one that answers, one whose
deployment cannot start (Serve marks it DEPLOY_FAILED with the constructor's error)."""

from ray import serve

BROKEN_REASON = "cannot load the model: /nonexistent/model.gguf"


@serve.deployment(ray_actor_options={"num_cpus": 0.05})
class Hello:
    async def __call__(self, request) -> str:
        return "hello"


@serve.deployment(name="llm-broken", ray_actor_options={"num_cpus": 0.05})
class Broken:
    def __init__(self) -> None:
        raise RuntimeError(BROKEN_REASON)

    async def __call__(self, request) -> str:
        return "never"


hello = Hello.bind()
broken = Broken.bind()
