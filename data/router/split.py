"""Make the fixed train / held-out split of requests.jsonl: per label, the texts are ordered by
the SHA-1 of their text and the first 20% are held out. Run once; both files are committed, and
training never reads heldout.jsonl.

    python data/router/split.py
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "requests.jsonl").read_text().splitlines() if line.strip()]
    by_label = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    train, heldout = [], []
    for label in sorted(by_label):
        ordered = sorted(by_label[label], key=lambda r: hashlib.sha1(r["text"].encode()).hexdigest())
        cut = round(len(ordered) * 0.2)
        heldout += ordered[:cut]
        train += ordered[cut:]
    for name, part in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part))
    print(f"train {len(train)}, held out {len(heldout)}")


if __name__ == "__main__":
    main()
