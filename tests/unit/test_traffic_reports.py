"""canary-report and shadow-report from log lines: the figures and the verdicts."""

import json

from serve_app.cli import main
from serve_app.traffic_reports import canary_report, format_canary, format_shadow, shadow_report


def line(n, variant, status=200, total_ms=100.0, model="m"):
    return {"request_id": f"r{n}", "ts": "2026-11-27T00:00:00.000+00:00", "status": status, "total_ms": total_ms,
            "model": model, "variant": {"flag": "canary.text", "variant": variant, "model": None}}


def traffic(candidate_errors=0, candidate_ms=100.0):
    lines = [line(n, "baseline", model="a") for n in range(100)]
    lines += [line(100 + n, "candidate", status=503 if n < candidate_errors else 200, total_ms=candidate_ms,
                   model="b") for n in range(40)]
    return lines + [{"request_id": "x", "status": 200, "variant": None}]


def test_a_candidate_like_its_baseline_holds():
    report = canary_report(traffic(), [])["canary.text"]
    assert report["baseline"] == "baseline" and report["variants"]["candidate"]["requests"] == 40
    assert report["variants"]["baseline"]["models"] == {"a": 100}
    assert report["verdicts"] == {"candidate": "no worse than the baseline"}


def test_a_candidate_with_errors_slowness_or_thumbs_down_is_worse():
    assert "error rate 10.0%" in canary_report(traffic(candidate_errors=4), [])["canary.text"]["verdicts"]["candidate"]
    assert "p99 300 ms" in canary_report(traffic(candidate_ms=300.0), [])["canary.text"]["verdicts"]["candidate"]
    feedback = [{"request_id": f"r{100 + n}", "rating": "down"} for n in range(10)]
    feedback += [{"request_id": f"r{n}", "rating": "up"} for n in range(10)]
    verdict = canary_report(traffic(), feedback)["canary.text"]["verdicts"]["candidate"]
    assert "thumbs down 100.0%" in verdict
    few = canary_report(traffic()[:110], [])["canary.text"]["verdicts"]["candidate"]
    assert few.startswith("not enough requests")
    assert "verdict for candidate" in format_canary(canary_report(traffic(), []))


def shadow(n, status="ok", similarity=0.9, ms=200.0):
    return {"request_id": f"r{n}", "ts": "2026-11-27T00:00:00.000+00:00", "route": "text",
            "primary": {"model": "a", "latency_ms": 100.0, "output_chars": 10},
            "shadow": {"model": "b", "status": status, "error": None, "latency_ms": None if status == "dropped" else ms,
                       "output_chars": 10},
            "similarity": similarity if status == "ok" else None}


def test_the_shadow_report_sums_agreement_latency_and_errors(tmp_path, capsys):
    entries = [shadow(n, similarity=0.5 + n / 10) for n in range(4)] + [shadow(5, "error"), shadow(6, "timeout"),
                                                                         shadow(7, "dropped")]
    r = shadow_report(entries)["text:b"]
    assert r["jobs"] == 7 and r["ended"] == {"ok": 4, "error": 1, "timeout": 1, "dropped": 1}
    assert r["error_rate"] == round(2 / 6, 4) and r["similarity_mean"] == 0.65 and r["similarity_p50"] == 0.6
    assert r["shadow_p50_ms"] == 200.0 and r["primary_p50_ms"] == 100.0 and r["primaries"] == ["a"]
    (tmp_path / "shadow-ingress-1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert main(["shadow-report", "--log-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text:b"]["jobs"] == 7
    assert main(["shadow-report", "--log-dir", str(tmp_path)]) == 0
    assert "text:b" in capsys.readouterr().out and "no shadow" in format_shadow({})
    (tmp_path / "requests-ingress-1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in traffic()))
    assert main(["canary-report", "--log-dir", str(tmp_path), "--flag", "canary.text"]) == 0
    assert "no worse than the baseline" in capsys.readouterr().out
