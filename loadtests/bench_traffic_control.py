"""What flags and client keys cost a request, measured where they run (in the ingress' process):

- the flag evaluations one routed chat makes through OpenFeature and the file provider (three models'
  `enabled`, the route's canary with a targeting key, the exploration rate, the committee switch),
  with no flags file (the switches answer from config) and with a file holding those flags;
- a client key's check: the header parsed, the key hashed and found, its minute windows admitted and
  its tokens counted, through the ASGI middleware on a bare FastAPI app against the same app without it.

    .venv/bin/python loadtests/bench_traffic_control.py [--rounds 20000]

Prints a table and writes loadtests/results/traffic_control.json. No network at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from openfeature import api  # noqa: E402

from serve_app.client_keys import ClientKeyMiddleware, KeyBook  # noqa: E402
from serve_app.flags.file_provider import FileFlagProvider  # noqa: E402
from serve_app.flags.switches import Switches, check_flags  # noqa: E402
from vocabulary.access_config import ClientKey, ClientKeysSpec  # noqa: E402
from vocabulary.config import SwitchboardConfig  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "traffic_control.json"
MODELS = ("smollm2", "smollm2-hf", "smollm2-upstream")
KEY = "bench-key-0000000000000000"


def config() -> SwitchboardConfig:
    up = {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    return SwitchboardConfig(models=[{"name": n, "family": "llm", "backend": up} for n in MODELS])


def one_request(switches: Switches, i: int) -> None:
    for m in MODELS:
        switches.model_on(m)
    switches.canary("text", f"session-{i}")
    switches.exploration(0.05)
    switches.committee_on()


def per_call_us(work, rounds: int) -> float:
    """The median over 5 batches of the time per call, in microseconds."""
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(rounds // 5):
            work(i)
        batches.append((time.perf_counter() - started) / (rounds // 5) * 1e6)
    return round(statistics.median(batches), 2)


def flags_cost(rounds: int) -> dict[str, float]:
    cfg = config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flags.json"
        on_off = {"on": True, "off": False}
        path.write_text(json.dumps({"flags": {
            **{f"models.{m}.enabled": {"variants": on_off, "defaultVariant": "on"} for m in MODELS},
            "router.exploration": {"variants": {"x": 0.05}, "defaultVariant": "x"},
            "committee.enabled": {"variants": on_off, "defaultVariant": "on"},
            "canary.text": {"variants": {"baseline": "", "candidate": "smollm2-hf"}, "defaultVariant": "baseline",
                            "targeting": {"fractional": [["baseline", 90], ["candidate", 10]]}}}}))
        provider = FileFlagProvider(path, check_flags(cfg))
        provider.refresh()
        api.set_provider(provider, domain="bench")
        with_file = Switches(api.get_client("bench"))
        none = Switches()
        return {"no_flags_file_us": per_call_us(lambda i: one_request(none, i), rounds),
                "flags_file_us": per_call_us(lambda i: one_request(with_file, i), rounds)}


def keys_cost(rounds: int) -> dict[str, float]:
    def app(with_keys: bool) -> TestClient:
        a = FastAPI()
        book = KeyBook([ClientKey(name="bench", key=KEY, rpm=10**9, tpm=10**12)], ClientKeysSpec())
        if with_keys:
            a.add_middleware(ClientKeyMiddleware, keys=lambda: book)

        @a.post("/v1/chat/completions")
        async def chat():
            return {"ok": True}

        return TestClient(a)

    headers = {"authorization": f"Bearer {KEY}"}
    bare, keyed = app(False), app(True)
    n = max(5, rounds // 10)  # a whole in-process HTTP request each
    return {"request_without_keys_us": per_call_us(lambda i: bare.post("/v1/chat/completions", headers=headers), n),
            "request_with_keys_us": per_call_us(lambda i: keyed.post("/v1/chat/completions", headers=headers), n)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    flags = flags_cost(args.rounds)
    keys = keys_cost(args.rounds)
    result = {"flags_per_request": flags, "key_check": {
        **keys, "added_us": round(keys["request_with_keys_us"] - keys["request_without_keys_us"], 2)},
        "rounds": args.rounds, "note": "one process, no network; per routed request: 3 model switches, a canary "
                                       "with a targeting key, the exploration rate and the committee switch"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"flag evaluations per routed request: {flags['no_flags_file_us']} us without a file, "
          f"{flags['flags_file_us']} us with one")
    print(f"client key check: {keys['request_without_keys_us']} -> {keys['request_with_keys_us']} us per request "
          f"(+{result['key_check']['added_us']} us)")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
