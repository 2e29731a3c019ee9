"""The text LLM family: one deployment class, three backends behind one interface."""

from deployments.llm.deployment import LLMDeployment, make_backend

__all__ = ["LLMDeployment", "make_backend"]
