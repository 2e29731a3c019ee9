"""Switchboard's HTTP side: config, API schemas, errors, the FastAPI ingress and app builders.

Loggers across the project are named `ray.serve.switchboard.<module>`: children of Serve's own
logger, so inside a replica their records go to Serve's per-replica log files in Serve's
encoding (JSON in the shipped configs), with the request id and any `extra` fields.
"""
