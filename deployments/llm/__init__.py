"""The text LLM family: one deployment class, three backends behind one interface."""

from deployments.llm.deployment import LLMDeployment, get_deployment_options, make_backend

__all__ = ["LLMDeployment", "get_deployment_options", "make_backend"]
