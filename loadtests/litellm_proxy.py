"""LiteLLM's proxy as a peer gateway for loadtests/bench_gateway.py: installed once into its own venv
(loadtests/results/litellm-venv/, gitignored), started with one worker on a free loopback port, its
`model_list` pointing at OpenAI-compatible upstreams; telemetry and every network look-up off."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import secrets
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "loadtests" / "results" / "litellm-venv"
VERSION = "1.108.7"  # the version measured before (shared/MEASURED.md); pinned so runs compare
BASE_PYTHON = "python3.11"


def venv_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def ensure_installed(log=print) -> str:
    """Create the venv and pip-install `litellm[proxy]==VERSION` into it, on first run only."""
    installed = venv_version()
    if installed == VERSION:
        return installed
    log(f"installing litellm[proxy]=={VERSION} into {VENV} (first run only, a few minutes)")
    if VENV.exists():
        shutil.rmtree(VENV)
    base = shutil.which(BASE_PYTHON) or "python3"
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"litellm[proxy]=={VERSION}"], check=True)
    installed = venv_version()
    if installed != VERSION:
        raise RuntimeError(f"litellm {VERSION} did not install into {VENV} (found {installed})")
    return installed


# Nothing leaves the machine: no telemetry, the model cost map from the package, no update checks.
QUIET_ENV = {"LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
             "LITELLM_MODE": "PRODUCTION", "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True",
             "DO_NOT_TRACK": "1", "ANONYMIZED_TELEMETRY": "False"}


class LiteLLMProxy:
    """`litellm --config ... --num_workers 1` on 127.0.0.1; `models` maps a model name to its upstream
    base URL (with /v1) and the model name the upstream serves."""

    def __init__(self, port: int, models: dict[str, tuple[str, str]]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # LiteLLM 1.108 refuses to start without a master key; clients send it as a bearer token
        self.master_key = f"sk-bench-{secrets.token_hex(16)}"
        self._dir = Path(tempfile.mkdtemp(prefix="switchboard-litellm-"))
        config = {
            "model_list": [{"model_name": name, "litellm_params": {
                "model": f"openai/{served}", "api_base": base, "api_key": "not-needed"}}
                for name, (base, served) in models.items()],
            "litellm_settings": {"telemetry": False, "drop_params": True, "set_verbose": False,
                                 "json_logs": False, "request_timeout": 120},
            "general_settings": {"master_key": self.master_key, "disable_spend_logs": True,
                                 "disable_error_logs": True},
        }
        self.config_file = self._dir / "litellm.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> float:
        started = time.monotonic()
        env = {**os.environ, **QUIET_ENV}
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "litellm"), "--config", str(self.config_file), "--host", "127.0.0.1",
             "--port", str(self.port), "--num_workers", "1", "--telemetry", "False"],
            cwd=self._dir, env=env, stdout=subprocess.DEVNULL, stderr=open(self._dir / "litellm.log", "w"),
            start_new_session=True)
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"litellm exited with {self.proc.returncode}; see {self._dir}/litellm.log")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"litellm not ready after {timeout_s}s; see {self._dir}/litellm.log")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


if __name__ == "__main__":
    print(ensure_installed())
