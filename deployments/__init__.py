"""One module (or small package) per model family. Each holds a plain deployment class whose
resources come from config (deployments/options.py); backends are injected."""
