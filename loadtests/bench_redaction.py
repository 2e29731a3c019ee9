"""What the request log's redaction costs per text (serve_app/request_log/redaction.py), on one
thread, the real Presidio and spaCy model:

- one text per call without the cache (what every request paid before batching and the cache);
- batches of 8 and 32 distinct texts per call (what the redaction thread does under load: every text
  waiting is analysed in one NER pass);
- a text seen before (the cache);
- texts without a letter (the NER is skipped; the pattern recognizers run).

Texts are distinct prompts of about 200 characters (a few with a name, an e-mail or a number in them),
and the two-character "Hi". Prints a table; nothing is written.

    flock /tmp/switchboard-heavy.lock .venv/bin/python loadtests/bench_redaction.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.request_log.redaction import Redactor  # noqa: E402

SUBJECTS = ["a trip to Lisbon", "my bank statement", "the volcano article", "a birthday speech", "our Q3 budget",
            "the onboarding guide", "a haiku about rain", "the API migration", "a cover letter", "my garden plan",
            "the sales report", "a recipe for bread", "the new laptop", "a lesson on fractions", "the team offsite",
            "a complaint letter"]
ASKS = ["Can you help me plan {s}? I want to keep it short, friendly and clear, and I need it by tomorrow "
        "morning, so please suggest a structure first and then a draft I can edit.",
        "Please summarise {s} in five bullet points for a busy reader, then list the open questions and who "
        "should answer them; keep the tone neutral and avoid jargon where you can.",
        "Write a short note to Maria Garcia about {s}; mention that the numbers changed since last week and "
        "ask her to reply to maria.garcia@example.com before Friday, thanks.",
        "I need {s} reviewed: check the facts, flag anything that sounds wrong, and suggest better wording "
        "for the opening paragraph. Call me on +44 20 7946 0958 if it is urgent."]


def texts(n: int, salt: str) -> list[str]:
    out = []
    for i in range(n):
        text = ASKS[i % len(ASKS)].format(s=SUBJECTS[i % len(SUBJECTS)])
        out.append(f"{text} ({salt}-{i})")
    return out


def per_text_ms(fn, items: list, rounds: int) -> float:
    """The median over rounds of the time per text, milliseconds."""
    samples = []
    for r in range(rounds):
        started = time.perf_counter()
        count = fn(items(r))
        samples.append((time.perf_counter() - started) * 1000 / count)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=64, help="distinct texts per round")
    args = parser.parse_args()
    uncached = Redactor("presidio", cache_entries=0)
    uncached.load()
    cached = Redactor("presidio")
    cached.load()
    n = args.texts
    uncached.redact_many(texts(16, "warm"))
    print(f"mean text length {statistics.mean(len(t) for t in texts(n, 'x')):.0f} characters, {n} texts a round")

    def one_by_one(items):
        for text in items:
            uncached.redact(text)
        return len(items)

    def batched(size):
        def run(items):
            for start in range(0, len(items), size):
                uncached.redact_many(items[start:start + size])
            return len(items)
        return run

    rows = [
        ("200 chars, one text a call, no cache (before)", one_by_one, lambda r: texts(n, f"a{r}")),
        ("200 chars, batches of 8", batched(8), lambda r: texts(n, f"b{r}")),
        ("200 chars, batches of 32", batched(32), lambda r: texts(n, f"c{r}")),
        ('"Hi", one a call, no cache (before)', one_by_one, lambda r: ["Hi"] * n),
        ("digits only (+44 20 7946 0958), NER skipped", one_by_one,
         lambda r: [f"+44 20 7946 {r}{i:03d}" for i in range(n)]),
    ]
    for label, fn, items in rows:
        print(f"{label:<50} {per_text_ms(fn, items, args.rounds):7.2f} ms/text")
    seen = texts(n, "seen")
    cached.redact_many(seen)

    def hits(items):
        for text in items:
            cached.redact(text)
        return len(items)
    print(f"{'200 chars, seen before (cache hit)':<50} {per_text_ms(hits, lambda r: seen, args.rounds):7.3f} ms/text")


if __name__ == "__main__":
    main()
