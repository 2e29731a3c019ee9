"""The shared vocabulary every package may import: config models, errors, the calls that cross a
handle, intents and route maps, and a few small primitives (model sources, engine threads, the
OpenAI-compatible HTTP client). It imports nothing from serve_app, deployments or graphs."""
