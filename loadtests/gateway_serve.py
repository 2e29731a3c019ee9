"""One `serve run` (Serve's high-throughput mode, env from cluster/serve.env) holding the Ray Serve
gateways of loadtests/bench_gateway.py, each an application under its own route prefix:

- `sb-<upstream>` at /sb-<upstream>: Switchboard (serve_app.builder:build_app) with cluster/local.yaml's
  policies (ingress, limits, deadlines, health, flags, router, resilience) and a roster of one model,
  `<upstream>-upstream` (backend kind `upstream`), which is also the text route `auto` reaches;
- `forwarder` at /fwd: loadtests/gateway_forwarder.py, the bare FastAPI ingress + httpx.

Every gateway's processes are those of its own replicas plus the shared ones (`serve run`, GCS,
raylet, dashboard and agents, the controller, HAProxy and its manager, idle workers).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

from serve_process import BIN, ROOT, ServeRun, free_port

LOADTESTS = ROOT / "loadtests"


def switchboard_args(upstream_name: str, base_url: str, served_model: str, work: Path,
                     placement: str = "ingress", tag: str = "") -> dict:
    """cluster/local.yaml's args with a roster of one upstream LLM (and nothing that needs another model),
    its client in the ingress (the default for an upstream server) or in a deployment of its own."""
    local = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())["applications"][0]["args"]
    args = {k: v for k, v in local.items() if k not in ("models", "routes", "voice_aliases", "faults")}
    args["flags"] = {**args.get("flags", {}), "file": str(work / f"flags-{upstream_name}{tag}.json")}  # absent
    args["request_log"] = {**args.get("request_log", {}), "dir": str(work / f"log-{upstream_name}{tag}")}
    args["models"] = [{
        "name": f"{upstream_name}-upstream", "family": "llm",
        "backend": {"kind": "upstream", "base_url": base_url, "model": served_model, "timeout_s": 60,
                    "max_connections": 64},
        "resources": {"num_cpus": 0.1},
        # an HTTP server takes many requests at once: as many as the connection pool holds
        "max_ongoing_requests": 64, "max_queued_requests": 256, "placement": placement,
    }]
    args["routes"] = {"text": [f"{upstream_name}-upstream"]}
    return args


class GatewayCluster(ServeRun):
    """`upstreams`: name -> (base URL with /v1, model name the upstream serves). `hop`: the upstreams that
    also get `sb-<name>-hop`, the same Switchboard with the model in a deployment of its own (one more
    handle hop per request)."""

    def __init__(self, upstreams: dict[str, tuple[str, str]], hop: tuple[str, ...] = ()) -> None:
        self.upstreams = upstreams
        self.hop = hop
        work = Path(tempfile.mkdtemp(prefix="switchboard-gateway-"))
        config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
        apps = [{"name": f"sb-{name}", "route_prefix": f"/sb-{name}", "import_path": "serve_app.builder:build_app",
                 "args": switchboard_args(name, base, served, work)} for name, (base, served) in upstreams.items()]
        apps += [{"name": f"sb-{name}-hop", "route_prefix": f"/sb-{name}-hop",
                  "import_path": "serve_app.builder:build_app",
                  "args": switchboard_args(name, *upstreams[name], work, placement="deployment", tag="-hop")}
                 for name in hop]
        apps.append({"name": "forwarder", "route_prefix": "/fwd", "import_path": "gateway_forwarder:build_app",
                     "args": {"upstreams": {name: base for name, (base, _) in upstreams.items()},
                              "num_cpus": config["applications"][0]["args"]["ingress"]["resources"]["num_cpus"],
                              "max_ongoing_requests": 256},
                     # the floor: without Switchboard's request-id middleware in its HTTP server
                     "runtime_env": {"env_vars": {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": ""}}})
        config["applications"] = apps
        path = work / "gateways.yaml"
        path.write_text(yaml.safe_dump(config))
        super().__init__(path, fast=True)

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LOADTESTS), env.get("PYTHONPATH")]))
        return env

    def start(self, timeout_s: float = 300) -> float:
        started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "serve"), "run", str(self.config_file)], cwd=ROOT,
                                     env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=open(Path(self._dir) / "serve.log", "w"))
        pending = {f"/sb-{name}/api/health" for name in self.upstreams} | {"/fwd/health"} | \
            {f"/sb-{name}-hop/api/health" for name in self.hop}
        while pending and time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve run exited with {self.proc.returncode}; see {self._dir}/serve.log")
            for path in sorted(pending):
                try:
                    r = httpx.get(self.url + path, timeout=10)
                    models = r.json().get("models", {})
                    if r.status_code == 200 and all(m["status"] == "ok" for m in models.values()):
                        pending.discard(path)
                except (httpx.HTTPError, ValueError, KeyError, AttributeError):
                    pass
            time.sleep(0.5)
        if pending:
            raise TimeoutError(f"{sorted(pending)} not healthy after {timeout_s}s; see {self._dir}/serve.log")
        return time.monotonic() - started

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def replica_pids(self, app: str, deployment: str | None = None) -> list[int]:
        """Replica processes of an application (titled `ray::ServeReplica:<app>:<deployment>`)."""
        prefix = f"ServeReplica:{app}:" + (deployment or "")
        out = []
        for p in self.processes():
            try:
                if prefix in " ".join(p.cmdline()):
                    out.append(p.pid)
            except psutil.Error:
                pass
        return out

    def gateway_pids(self, app: str) -> list[int]:
        """The app's replicas and every process no application owns."""
        pids = []
        for p in self.processes():
            try:
                title = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "ServeReplica:" not in title or f"ServeReplica:{app}:" in title:
                pids.append(p.pid)
        return pids


__all__ = ["GatewayCluster", "free_port"]
