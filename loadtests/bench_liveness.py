"""Is the ingress's event loop free? /api/health/live latency (Serve high-throughput mode, CPU
roster, cluster/local.yaml) idle, then while a heavy mix runs: chats about a dense page of text
(image check, both OCR engines, their agreement, the LLM), long transcriptions (MP3 decoded and
resampled in the ingress, then whisper) and speech encoded as MP3 in the ingress.

Target: p99 under load within 3x of idle. On a 2-core machine the models take both cores under
this mix, so the figure includes the CPU the ingress gets at all, not only what its loop does.

    .venv/bin/python loadtests/bench_liveness.py [--idle-probes 400] [--load-seconds 120]
        [--audio-seconds 300]

Prints the figures and writes loadtests/results/liveness.json. Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import loopback_only, percentile  # noqa: E402
from serve_process import ROOT, ServeRun  # noqa: E402

from tests.integration.media import dense_page, mp3, passage  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "liveness.json"
PROBE_GAP_S = 0.05
LONG = {"x-switchboard-deadline-ms": "300000"}


def probe(url: str, stop: threading.Event, n: int | None = None) -> list[float]:
    """Sequential GET /api/health/live every PROBE_GAP_S on one keep-alive connection, in ms."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(5):
            client.get("/api/health/live").raise_for_status()
        while not stop.is_set() and (n is None or len(out) < n):
            t = time.perf_counter()
            client.get("/api/health/live").raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
            time.sleep(PROBE_GAP_S)
    return out


def summary(latencies: list[float]) -> dict:
    return {"n": len(latencies), "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": round(max(latencies), 2)}


class Mix:
    """One thread per kind of heavy request, each sending the next as soon as the last is answered."""

    def __init__(self, url: str, chat_body: dict, clip: bytes, speech_text: str) -> None:
        self.url = url
        self.kinds = {
            "dense_page_chat": lambda c: c.post("/v1/chat/completions", json=chat_body, headers=LONG),
            "long_transcription": lambda c: c.post("/v1/audio/transcriptions", headers=LONG,
                                                   files={"file": ("long.mp3", clip, "audio/mpeg")}),
            "mp3_speech": lambda c: c.post("/v1/audio/speech", headers=LONG, json={
                "input": speech_text, "voice": "joe", "response_format": "mp3"}),
        }
        self.done: dict[str, list[float]] = {k: [] for k in self.kinds}
        self.errors: dict[str, list[str]] = {k: [] for k in self.kinds}

    def run(self, kind: str, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=330) as client:
            while not stop.is_set():
                t = time.perf_counter()
                r = self.kinds[kind](client)
                if r.status_code == 200:
                    self.done[kind].append((time.perf_counter() - t) * 1000)
                else:
                    self.errors[kind].append(f"{r.status_code}: {r.text[:200]}")


def long_clip(client: httpx.Client, seconds: int) -> bytes:
    """`seconds` of Piper speech (a passage said over and over) as a compact MP3."""
    r = client.post("/v1/audio/speech", json={"input": passage(1500), "voice": "joe", "response_format": "wav"},
                    headers=LONG)
    r.raise_for_status()
    speech, rate = soundfile.read(io.BytesIO(r.content), dtype="float32")
    return mp3(np.tile(speech, int(np.ceil(seconds * rate / len(speech))))[:seconds * rate], rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-probes", type=int, default=400)
    parser.add_argument("--load-seconds", type=float, default=120)
    parser.add_argument("--audio-seconds", type=int, default=300)
    args = parser.parse_args()
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=loopback_only)
    try:
        started = run.start()
        with httpx.Client(base_url=run.url, timeout=330) as client:
            clip = long_clip(client, args.audio_seconds)
            page = base64.b64encode(dense_page()).decode()
            chat = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What does this letter say?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{page}"}}]}]}
            warm = client.post("/v1/chat/completions", json=chat, headers=LONG)
            warm.raise_for_status()
            reading = warm.json()["switchboard"]["attachments"][0]
        idle = probe(run.url, threading.Event(), args.idle_probes)

        mix = Mix(run.url, chat, clip, passage(600))
        stop = threading.Event()
        loaded: list[float] = []
        prober = threading.Thread(target=lambda: loaded.extend(probe(run.url, stop)))
        workers = [threading.Thread(target=mix.run, args=(kind, stop)) for kind in mix.kinds]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        time.sleep(2)  # the mix is running before the probes count
        prober.start()
        time.sleep(args.load_seconds)
        stop.set()
        prober.join()
        for w in workers:
            w.join()  # each finishes the request it has in flight
        load_wall = time.monotonic() - t0
    finally:
        run.stop()

    idle_s, load_s = summary(idle), summary(loaded)
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs",
        "mode": "RAY_SERVE_THROUGHPUT_OPTIMIZED=1, RAY_SERVE_ENABLE_HA_PROXY=1 (cluster/local.yaml)",
        "start_s": round(started, 1),
        "probe_gap_ms": PROBE_GAP_S * 1000,
        "idle": idle_s,
        "under_load": {**load_s, "load_seconds": args.load_seconds, "wall_s": round(load_wall, 1)},
        "p99_load_over_idle": round(load_s["p99_ms"] / idle_s["p99_ms"], 2),
        "target_p99_load_over_idle": 3.0,
        "mix": {kind: {"completed": len(ms), "p50_ms": percentile(ms, 50) if ms else None,
                       "errors": len(mix.errors[kind]), "first_error": (mix.errors[kind] or [None])[0]}
                for kind, ms in mix.done.items()},
        "media": {"dense_page_chars_read": len(reading.get("text", "")), "agreement": reading.get("agreement"),
                  "transcription_audio_s": args.audio_seconds, "transcription_mp3_bytes": len(clip),
                  "speech_chars": 600},
    }
    result["target_met"] = result["p99_load_over_idle"] <= 3.0
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
