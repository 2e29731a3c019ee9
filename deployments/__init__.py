"""One module (or small package) per model family. Each holds a plain deployment class whose
resources come from config through `get_deployment_options(spec)`; backends are injected."""
