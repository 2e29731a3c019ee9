"""Latency of Switchboard's paths, cold start and memory, in Serve's high-throughput mode
(HAProxy) and its default proxy, on the embedded CPU roster (cluster/local.yaml).

    .venv/bin/python loadtests/bench_paths.py [--requests 200]

Prints a table and writes loadtests/results/paths.json. Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_process import ROOT, ServeRun  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "paths.json"
CHAT_1_TOKEN = {"model": "smollm2", "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "user", "content": "Hi"}]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def timed(client: httpx.Client, n: int, method: str, path: str, **kw) -> dict:
    for _ in range(min(10, n)):  # warm-up
        client.request(method, path, **kw).raise_for_status()
    latencies = []
    for _ in range(n):
        t = time.perf_counter()
        client.request(method, path, **kw).raise_for_status()
        latencies.append((time.perf_counter() - t) * 1000)
    return {"n": n, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "mean_ms": round(statistics.fmean(latencies), 2)}


async def throughput(url: str, path: str, concurrency: int, total: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        queue = list(range(total))

        async def worker():
            while queue:
                queue.pop()
                (await client.get(path)).raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return round(total / (time.perf_counter() - t), 1)


def loopback_only(args: dict) -> None:
    """Benchmarks send traffic to loopback only: web search goes through a proxy address where
    nothing listens, so it fails at once (as with no network) and the local index answers."""
    from serve_process import free_port

    for model in args["models"]:
        if model["backend"]["kind"] == "ddgs":
            model["backend"]["proxy"] = f"socks5h://127.0.0.1:{free_port()}"


def rendered_text_png(text: str) -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 90), "white")
    ImageDraw.Draw(image).text((12, 24), text, fill="black", font=ImageFont.load_default(size=32))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def timed_calls(n: int, call) -> list[float]:
    for _ in range(min(3, n)):
        call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(latencies: list[float], **extra) -> dict:
    return {"n": len(latencies), "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), **extra}


def bench_endpoints(client: httpx.Client, n: int) -> dict:
    """One row per endpoint; real-time factor (processing time / audio duration) for STT and TTS."""
    import base64
    import io

    import soundfile

    sentence = "Switchboard keeps answering when a model fails in the middle of the night."
    speech = {"model": "tts-1", "voice": "alloy", "input": sentence, "response_format": "wav"}
    wav = client.post("/v1/audio/speech", json=speech).content
    samples, rate = soundfile.read(io.BytesIO(wav))
    audio_s = len(samples) / rate

    def ok(r):
        r.raise_for_status()
        return r

    rows = {}
    tts = timed_calls(n, lambda: ok(client.post("/v1/audio/speech", json=speech)))
    rows["tts_wav"] = summary(tts, audio_s=round(audio_s, 2), rtf_p50=round(percentile(tts, 50) / 1000 / audio_s, 3))
    stt = timed_calls(n, lambda: ok(client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                                                data={"model": "whisper-1"})))
    rows["stt"] = summary(stt, audio_s=round(audio_s, 2), rtf_p50=round(percentile(stt, 50) / 1000 / audio_s, 3))
    png = rendered_text_png("Invoice number 4471")
    rows["vision"] = summary(timed_calls(n, lambda: ok(client.post("/api/vision", files={"file": ("a.png", png)}))))
    rows["search_local_after_web_fails"] = summary(timed_calls(
        n, lambda: ok(client.post("/api/search", json={"query": "token authentication"}))))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    image_chat = {"max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What does it say?"}, {"type": "image_url", "image_url": {"url": url}}]}]}
    rows["chat_image_16_tokens"] = summary(timed_calls(
        n, lambda: ok(client.post("/v1/chat/completions", json=image_chat))))
    text_chat = {"max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": "Tell me a fact."}]}
    rows["chat_16_tokens"] = summary(timed_calls(n, lambda: ok(client.post("/v1/chat/completions", json=text_chat))))
    return rows


def bench_mode(fast: bool, n: int, endpoints: bool) -> dict:
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=fast, args_patch=loopback_only)
    try:
        cold = run.start()
        with httpx.Client(base_url=run.url, timeout=60) as client:
            row = {
                "mode": "high_throughput" if fast else "default",
                "cold_start_to_healthy_s": round(cold, 1),
                "health_live": timed(client, n, "GET", "/api/health/live"),
                "chat_1_token": timed(client, n // 2, "POST", "/v1/chat/completions", json=CHAT_1_TOKEN),
                "health_live_rps_c8": asyncio.run(throughput(run.url, "/api/health/live", 8, n * 2)),
                "ray_memory_mib": run.memory_mib(),
            }
            if endpoints:
                row["endpoints"] = bench_endpoints(client, max(10, n // 10))
        return row
    finally:
        run.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--modes", default="high_throughput,default")
    args = parser.parse_args()
    rows = [bench_mode(mode == "high_throughput", args.requests, endpoints=(mode == "high_throughput"))
            for mode in args.modes.split(",")]
    print(f"{'mode':16} {'cold s':>7} {'live p50':>9} {'live p99':>9} {'chat1 p50':>10} {'chat1 p99':>10} "
          f"{'live rps c8':>11} {'mem MiB':>8}")
    for r in rows:
        print(f"{r['mode']:16} {r['cold_start_to_healthy_s']:>7} {r['health_live']['p50_ms']:>9} "
              f"{r['health_live']['p99_ms']:>9} {r['chat_1_token']['p50_ms']:>10} {r['chat_1_token']['p99_ms']:>10} "
              f"{r['health_live_rps_c8']:>11} {r['ray_memory_mib']:>8}")
    for r in rows:
        for name, e in r.get("endpoints", {}).items():
            rtf = f"  RTF p50 {e['rtf_p50']} ({e['audio_s']} s of audio)" if "rtf_p50" in e else ""
            print(f"  [{r['mode']}] {name:30} p50 {e['p50_ms']:>8} ms  p99 {e['p99_ms']:>8} ms{rtf}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing.update({"machine": f"{platform.machine()}, {psutil_cpus()} CPUs",
                     "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gateway": rows})
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def psutil_cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
