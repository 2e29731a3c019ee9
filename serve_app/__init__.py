"""Switchboard's HTTP side: config, API schemas, errors, the FastAPI ingress and app builders."""
