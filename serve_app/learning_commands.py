"""The learning loop's commands: `switchboard train-router`, `rollback-router`, `exemplars`, `buckets`.
They read the request log (serve_app/request_log/reader.py) and hand plain line dicts to
intent_router/, which never reads files of the app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vocabulary.paths import config_path, in_site_packages

REFUSED = 3  # exit status: a worse head was not published, or there is no version to go back to


def _config(path: str):
    from serve_app.config_file import load_serve_config

    (config,) = load_serve_config(path).values()
    return config


def _log(config, given: str | None) -> tuple[Path, list[dict], list[dict]]:
    """The log folder (--log-dir, else the config's request_log.dir), its lines and its feedback."""
    from serve_app.request_log.reader import read_feedback, read_lines

    folder = config_path(given) if given else config_path(config.request_log.dir)
    if not folder.is_dir():
        sys.stderr.write(f"no request log in {folder}: nothing from the log\n")
        return folder, [], []
    return folder, list(read_lines(folder)), read_feedback(folder)


def _artifact_dir(config, given: str | None, *, seed: bool = False) -> Path | None:
    """The head folder to write: --artifacts (with `seed`, a folder without LATEST first gets the
    config's heads, the shipped one by default), else the config's artifact_dir unless that lies in
    site-packages (the head shipped with a non-editable install): then None, after saying what to do.
    In a checkout (an editable install) the shipped head's folder is the source tree: written there."""
    from intent_router.head import seed as seed_heads

    configured = config_path(config.router.classifier.artifact_dir)
    if given:
        folder = config_path(given)
        if seed and seed_heads(folder, configured):
            sys.stderr.write(f"{folder} had no head: started from the heads in {configured}\n")
        return folder
    if in_site_packages(configured):
        sys.stderr.write(f"the router heads in {configured} are part of the installed package: write new versions "
                         "to a folder of your own (--artifacts DIR, started from these heads) and point "
                         "router.classifier.artifact_dir at it\n")
        return None
    return configured


def train_router(args) -> int:
    from intent_router.publishing import train_router as train

    config = _config(args.config)
    if config.router.classifier.kind != "embedding":
        sys.stderr.write("this config's router is an LLM-prompt classifier: nothing to train\n")
        return 2
    folder = _artifact_dir(config, args.artifacts, seed=True)
    if folder is None:
        return 2
    _, lines, feedback = _log(config, args.log_dir)
    families = {m.name: m.family for m in config.models}
    outcome = train(Path(args.data), folder, config.router, lines, feedback, families, c=args.c, force=args.force)
    sys.stdout.write(json.dumps(outcome.as_dict(), indent=2) + "\n")
    if not outcome.published:
        sys.stderr.write("not published: " + "; ".join(outcome.refused) + " (--force publishes anyway)\n")
        return REFUSED
    if outcome.refused:
        sys.stderr.write("published although worse (--force): " + "; ".join(outcome.refused) + "\n")
    return 0


def rollback_router(args) -> int:
    from intent_router.head import rollback

    config = _config(args.config)
    if config.router.classifier.kind != "embedding":
        sys.stderr.write("this config's router is an LLM-prompt classifier: it has no head versions\n")
        return 2
    folder = _artifact_dir(config, args.artifacts)
    if folder is None:
        return 2
    try:
        before, after = rollback(folder)
    except LookupError as exc:
        sys.stderr.write(f"not rolled back: {exc}\n")
        return REFUSED
    sys.stdout.write(f"LATEST in {folder}: {before} -> {after}\n")
    return 0


def exemplars(args) -> int:
    from intent_router.exemplars import from_log
    from serve_app.request_log.reader import parse_since, select

    config = _config(args.config)
    _, lines, feedback = _log(config, args.log_dir)
    if args.since:
        lines = list(select(lines, since=parse_since(args.since)))
    rows = from_log(lines, feedback, agreement_threshold=config.committee.agreement_threshold)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.out:
        Path(args.out).write_text(text)
        sys.stderr.write(f"{len(rows)} exemplars -> {args.out}\n")
    else:
        sys.stdout.write(text)
    return 0


def buckets(args) -> int:
    from intent_router.buckets import cluster, format_clusters, low_confidence
    from intent_router.classifier import EmbeddingClassifier
    from vocabulary.router_config import EmbeddingClassifierSpec

    config = _config(args.config)
    _, lines, _ = _log(config, args.log_dir)
    threshold = args.min_confidence if args.min_confidence is not None else config.router.min_confidence
    items = low_confidence(lines, threshold)
    clusters = []
    if items:
        spec = config.router.classifier
        encoder = EmbeddingClassifier(spec if spec.kind == "embedding" else EmbeddingClassifierSpec(kind="embedding"))
        encoder.load_encoder()
        clusters = cluster(items, encoder.sentence_embeddings, k=args.k)
    if args.json:
        sys.stdout.write(json.dumps({"total": len(items), "min_confidence": threshold,
                                     "clusters": [c.as_dict() for c in clusters]}, indent=2) + "\n")
    else:
        sys.stdout.write(format_clusters(clusters, len(items)) + "\n")
    return 0
