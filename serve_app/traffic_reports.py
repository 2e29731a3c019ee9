"""`switchboard canary-report` and `switchboard shadow-report`: what the request log says about a
canary's variants, and what the shadow file says about each shadow model against its primaries."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

MIN_REQUESTS = 30  # fewer for a variant: no verdict
WORSE_ERROR_POINTS = 0.02  # a candidate's error rate this much over the baseline's (and over twice it) is worse
WORSE_P99 = 1.5  # a candidate's p99 this many times the baseline's is worse
WORSE_DOWN_POINTS = 0.05  # a candidate's thumbs-down rate this much over the baseline's is worse


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 2)


def canary_report(lines: Iterable[dict[str, Any]], feedback: Iterable[dict[str, Any]],
                  flag: str | None = None) -> dict[str, Any]:
    """Per canary flag, per variant: requests, error rate (5xx), p50/p99 of total_ms, thumbs-down rate
    among the rated, the models that answered; and a verdict for each non-baseline variant."""
    down = {f["request_id"]: f.get("rating") == "down" for f in feedback if f.get("request_id")}
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        variant = line.get("variant")
        if not variant or (flag and variant.get("flag") != flag):
            continue
        groups[variant["flag"]][variant["variant"]].append(line)
    report = {}
    for name, variants in sorted(groups.items()):
        stats = {v: _variant_stats(ls, down) for v, ls in sorted(variants.items())}
        baseline = "baseline" if "baseline" in stats else max(stats, key=lambda v: stats[v]["requests"])
        verdicts = {v: _verdict(stats[baseline], s) for v, s in stats.items() if v != baseline}
        report[name] = {"baseline": baseline, "variants": stats, "verdicts": verdicts}
    return report


def _variant_stats(lines: list[dict], down: dict[str, bool]) -> dict[str, Any]:
    totals = [line["total_ms"] for line in lines if line.get("total_ms") is not None]
    errors = sum(1 for line in lines if (line.get("status") or 0) >= 500)
    rated = [down[line["request_id"]] for line in lines if line["request_id"] in down]
    models: dict[str, int] = defaultdict(int)
    for line in lines:
        models[line.get("model") or "-"] += 1
    return {"requests": len(lines), "error_rate": round(errors / len(lines), 4) if lines else None,
            "p50_ms": percentile(totals, 0.5), "p99_ms": percentile(totals, 0.99), "rated": len(rated),
            "thumbs_down_rate": round(sum(rated) / len(rated), 4) if rated else None, "models": dict(models)}


def _verdict(base: dict[str, Any], cand: dict[str, Any]) -> str:
    if cand["requests"] < MIN_REQUESTS or base["requests"] < MIN_REQUESTS:
        return f"not enough requests yet (at least {MIN_REQUESTS} per variant)"
    reasons = []
    if cand["error_rate"] > base["error_rate"] + WORSE_ERROR_POINTS and cand["error_rate"] > 2 * base["error_rate"]:
        reasons.append(f"error rate {cand['error_rate']:.1%} against {base['error_rate']:.1%}")
    if base["p99_ms"] and cand["p99_ms"] > WORSE_P99 * base["p99_ms"]:
        reasons.append(f"p99 {cand['p99_ms']:.0f} ms against {base['p99_ms']:.0f} ms")
    if cand["thumbs_down_rate"] is not None and base["thumbs_down_rate"] is not None and \
            cand["thumbs_down_rate"] > base["thumbs_down_rate"] + WORSE_DOWN_POINTS:
        reasons.append(f"thumbs down {cand['thumbs_down_rate']:.1%} against {base['thumbs_down_rate']:.1%}")
    return ("worse: " + "; ".join(reasons)) if reasons else "no worse than the baseline"


def shadow_report(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per route and shadow model: jobs, how they ended (ok, error, timeout, dropped), the mean and
    median similarity to the primary's answer, and both sides' p50 latency."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in entries:
        groups[(entry["route"], entry["shadow"]["model"])].append(entry)
    report = {}
    for (route, model), items in sorted(groups.items()):
        ended: dict[str, int] = defaultdict(int)
        for e in items:
            ended[e["shadow"]["status"]] += 1
        sims = [e["similarity"] for e in items if e.get("similarity") is not None]
        ran = [e for e in items if e["shadow"]["status"] != "dropped"]
        report[f"{route}:{model}"] = {
            "route": route, "shadow": model, "jobs": len(items), "ended": dict(ended),
            "error_rate": round((ended["error"] + ended["timeout"]) / len(ran), 4) if ran else None,
            "similarity_mean": round(sum(sims) / len(sims), 4) if sims else None,
            "similarity_p50": percentile(sims, 0.5),
            "shadow_p50_ms": percentile([e["shadow"]["latency_ms"] for e in ran if e["shadow"]["latency_ms"]], 0.5),
            "primary_p50_ms": percentile([e["primary"]["latency_ms"] for e in items
                                          if e["primary"]["latency_ms"] is not None], 0.5),
            "primaries": sorted({e["primary"]["model"] for e in items})}
    return report


def format_canary(report: dict[str, Any]) -> str:
    if not report:
        return "no request in the log carries a canary variant\n"
    out = []
    for flag, r in report.items():
        out.append(f"{flag} (baseline: {r['baseline']})")
        out.append(f"  {'variant':12} {'requests':>8} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'down':>6}  models")
        for variant, s in r["variants"].items():
            down = "-" if s["thumbs_down_rate"] is None else f"{s['thumbs_down_rate']:.0%}"
            out.append(f"  {variant:12} {s['requests']:>8} {s['error_rate']:>7.1%} {s['p50_ms'] or 0:>8.0f} "
                       f"{s['p99_ms'] or 0:>8.0f} {down:>6}  {', '.join(f'{m} {n}' for m, n in s['models'].items())}")
        for variant, verdict in r["verdicts"].items():
            out.append(f"  verdict for {variant}: {verdict}")
    return "\n".join(out) + "\n"


def format_shadow(report: dict[str, Any]) -> str:
    if not report:
        return "no shadow comparison in the log\n"
    out = [f"{'route:shadow':28} {'jobs':>5} {'ok':>5} {'err':>4} {'t/o':>4} {'drop':>5} {'sim mean':>9} "
           f"{'sim p50':>8} {'shadow p50':>11} {'primary p50':>12}"]
    for key, r in report.items():
        e = r["ended"]
        mean = "-" if r["similarity_mean"] is None else f"{r['similarity_mean']:.3f}"
        p50 = "-" if r["similarity_p50"] is None else f"{r['similarity_p50']:.3f}"
        out.append(f"{key:28} {r['jobs']:>5} {e.get('ok', 0):>5} {e.get('error', 0):>4} {e.get('timeout', 0):>4} "
                   f"{e.get('dropped', 0):>5} {mean:>9} {p50:>8} {r['shadow_p50_ms'] or 0:>9.0f}ms "
                   f"{r['primary_p50_ms'] or 0:>10.0f}ms")
    return "\n".join(out) + "\n"
