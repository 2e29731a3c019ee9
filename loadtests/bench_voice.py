"""The CPU roster's voice models, in process (no Ray), on one thread each as the roster runs them:

- Kokoro-82M int8 (ONNX Runtime): real-time factor (synthesis time / speech length), English and Spanish;
- Whisper base (multilingual) and tiny.en (faster-whisper, int8): real-time factor on Kokoro's speech,
  transcribing and (base) translating, and whether the words came back exactly;
- load time and resident memory each model adds.

    .venv/bin/python loadtests/bench_voice.py [--runs 5]

Real-time factor under 1 is faster than real time. Medians over `--runs` runs after one warm-up.
Prints a table and writes loadtests/results/voice.json. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from deployments.stt import FasterWhisperEngine  # noqa: E402
from deployments.tts_kokoro import KokoroOnnxEngine  # noqa: E402
from serve_app.config_file import load_serve_config  # noqa: E402
from serve_app.media.audio import decode_audio  # noqa: E402
from vocabulary.calls import TranscribeCall  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "voice.json"
CLIPS = [  # (voice, language, text)
    ("af_heart", "en", ("The harbor master walked along the quiet pier before sunrise, and the boats rocked "
                        "gently against the wooden posts.")),
    ("ef_dora", "es", "Mi hermano tiene dos gatos y un perro, y todos los domingos vamos juntos al parque."),
]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def median_time(fn, runs: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def load(engine) -> dict:
    before, t = rss_mib(), time.perf_counter()
    asyncio.run(engine.start())
    return {"load_s": round(time.perf_counter() - t, 2), "rss_added_mib": round(rss_mib() - before, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    specs = load_serve_config(ROOT / "cluster" / "local.yaml")["switchboard"].by_name()
    kokoro = KokoroOnnxEngine(specs["kokoro"].backend)
    whisper = {name: FasterWhisperEngine(specs[name].backend) for name in ("whisper-base", "whisper-tiny")}
    loads = {"kokoro": load(kokoro), **{name: load(engine) for name, engine in whisper.items()}}

    rows: dict[str, dict] = {}
    for voice, language, text in CLIPS:
        seconds, (pcm, rate) = median_time(lambda t=text, v=voice: asyncio.run(kokoro.synthesize(t, v, 1.0)), args.runs)
        audio_s = len(pcm) / 2 / rate
        rows[f"kokoro {voice} ({language})"] = {"audio_s": round(audio_s, 2), "median_s": round(seconds, 3),
                                                "rtf": round(seconds / audio_s, 3)}
        buffer = io.BytesIO()
        soundfile.write(buffer, np.frombuffer(pcm, dtype=np.int16), rate, format="WAV")
        pcm16k = decode_audio(buffer.getvalue(), max_seconds=120).pcm_bytes()
        tasks = [("whisper-base", "transcribe", language), ("whisper-base", "translate", None)]
        if language == "en":
            tasks.append(("whisper-tiny", "transcribe", "en"))
        for name, task, lang in tasks:
            call = TranscribeCall("bench", pcm16k, 120, language=lang, task=task)
            seconds, result = median_time(lambda e=whisper[name], c=call: asyncio.run(e.transcribe(c)), args.runs)
            row = {"audio_s": round(audio_s, 2), "median_s": round(seconds, 3), "rtf": round(seconds / audio_s, 3),
                   "text": result["text"]}
            if task == "transcribe":
                row["exact_words"] = words(result["text"]) == words(text)
            rows[f"{name} {task} {voice} ({language})"] = row

    for name, row in rows.items():
        extra = f" exact={row['exact_words']}" if "exact_words" in row else \
            (f" -> {row['text']!r}" if "text" in row else "")
        print(f"{name:44} {row['audio_s']:>5} s of speech  median {row['median_s']:>6} s  RTF {row['rtf']:>5}{extra}")
    for name, row in loads.items():
        print(f"{name:44} load {row['load_s']} s, +{row['rss_added_mib']} MiB resident")
    RESULTS.write_text(json.dumps({
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "threads": {"kokoro_intra_op": specs["kokoro"].backend.intra_op_threads,
                    "whisper_cpu_threads": specs["whisper-base"].backend.cpu_threads},
        "runs": args.runs, "loads": loads, "results": rows}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS}")
    asyncio.run(kokoro.close())


if __name__ == "__main__":
    main()
