"""The Locust scenarios (loadtests/locustfile.py) and the summary of a run (loadtests/load_summary.py),
without a server. The locustfile is imported in a subprocess: Locust monkey-patches the process with gevent."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"

sys.path.insert(0, str(LOADTESTS))
import load_summary  # noqa: E402  (standard library only)

PROBE = textwrap.dedent("""
    import collections, json, sys
    sys.path.insert(0, sys.argv[1])
    import locustfile as lf
    from locust import FastHttpUser, LoadTestShape

    class Response:  # what the checks read of a FastResponse
        def __init__(self, status=200, headers=None, body=None, content=b""):
            self.status_code, self.error = status, None
            self.headers = {"x-request-id": "rid", "x-switchboard-degraded": "false",
                            "x-switchboard-model": "smollm2", **(headers or {})}
            self._body, self.content = body, content
        def json(self):
            if self._body is None:
                raise ValueError("not JSON")
            return self._body

    ok_chat = {"choices": [{"message": {"content": "Hi."}, "finish_reason": "stop"}],
               "switchboard": {"models": ["smollm2"], "degraded": False, "failed": [], "notes": []}}
    degraded_chat = {**ok_chat, "switchboard": {**ok_chat["switchboard"], "degraded": True, "failed": ["smollm2: x"]}}
    problems = {
        "ok": lf._common_problem(Response(), "rid") or lf._chat_problem(Response(body=ok_chat)),
        "other_id": lf._common_problem(Response(), "another"),
        "degraded_header": lf._common_problem(Response(headers={"x-switchboard-degraded": "true",
                                                                 "x-switchboard-failed": "kokoro"}), "rid"),
        "no_degraded_header": lf._common_problem(Response(headers={"x-switchboard-degraded": None}), "rid"),
        "http_503": lf._common_problem(Response(status=503, body={"error": {"code": "overloaded"}}), "rid"),
        "error_body": lf._chat_problem(Response(body={"error": {"message": "boom", "code": "model_error"}})),
        "degraded_body": lf._chat_problem(Response(body=degraded_chat)),
        "no_content": lf._chat_problem(Response(body={"choices": [{"message": {}}], "switchboard": {}})),
        "no_switchboard": lf._chat_problem(Response(body={k: v for k, v in ok_chat.items() if k != "switchboard"})),
        "search_empty": lf._search_problem(Response(body={"results": [], "switchboard": ok_chat["switchboard"]})),
        "speech_ok": lf._speech_problem(Response(content=b"RIFF" + bytes(100))),
        "speech_not_wav": lf._speech_problem(Response(content=b"{}")),
        "transcript_no_text": lf._transcription_problem(Response(body={"language": "en"})),
        "image_unread": lf._vision_problem(Response(body={**ok_chat, "switchboard": {
            **ok_chat["switchboard"], "attachments": [{"type": "image", "text": ""}]}})),
    }
    print(json.dumps({
        # Locust turns a {task: weight} dict into a list holding each task `weight` times
        "mixed": dict(collections.Counter(fn.__name__ for fn in lf.MixedUser.tasks)),
        "route_users": {route: [cls.__name__, [t.__name__ for t in cls.tasks], issubclass(cls, FastHttpUser)]
                        for route, cls in lf.ROUTE_USERS.items()},
        "mixed_fast": issubclass(lf.MixedUser, FastHttpUser),
        "shape": issubclass(lf.StagedShape, LoadTestShape),
        "users": [lf.users_at(t, 4, 20, 60, 10) for t in (0, 5, 10, 19.9, 20, 79.9, 80, 85, 89.9, 90, 500)],
        "problems": problems,
    }))
""")


@pytest.fixture(scope="module")
def scenarios():
    run = subprocess.run([sys.executable, "-c", PROBE, str(LOADTESTS)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_mixed_scenario_weights(scenarios):
    assert scenarios["mixed"] == {"text": 50, "search": 15, "vision": 15, "speech": 10, "transcription": 10}
    assert scenarios["mixed_fast"]


def test_one_user_class_per_route(scenarios):
    assert scenarios["route_users"] == {
        "text": ["TextUser", ["text"], True], "search": ["SearchUser", ["search"], True],
        "vision": ["VisionUser", ["vision"], True], "speech": ["SpeechUser", ["speech"], True],
        "transcription": ["TranscriptionUser", ["transcription"], True]}


def test_staged_shape_ramps_holds_ramps_down_and_ends(scenarios):
    assert scenarios["shape"]
    assert scenarios["users"] == [1, 2, 3, 4, 4, 4, 4, 3, 1, None, None]


def test_what_counts_as_a_failure(scenarios):
    problems = scenarios["problems"]
    assert problems.pop("ok") is None and problems.pop("speech_ok") is None
    assert problems["other_id"] == "x-request-id did not come back"
    assert problems["degraded_header"] == "degraded answer (failed: kokoro)"
    assert problems["no_degraded_header"] == "missing header x-switchboard-degraded"
    assert problems["http_503"] == "HTTP 503 overloaded"
    assert problems["error_body"] == "200 with an error body: model_error"
    assert problems["degraded_body"].startswith("degraded answer (body")
    assert problems["no_content"] == "missing field choices[0].message.content"
    assert problems["no_switchboard"] == "missing field switchboard.degraded"
    assert all(problems.values()), problems  # every other case is a failure


def test_locust_lists_the_user_classes():
    run = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f", "loadtests/locustfile.py", "--list"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    listed = {line.strip() for line in run.stdout.splitlines()[1:]}
    assert listed == {"MixedUser", "TextUser", "SearchUser", "VisionUser", "SpeechUser", "TranscriptionUser"}


# ---- the summary ---------------------------------------------------------------------------------

STATS = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,speech,10,0,1200,1250.5,900,2100,60000,0.1,0.0,1200,1300,1400,1400,1700,2000,2100,2100,2100,2100,2100
POST,text,50,2,800,850.25,300,4000,900,0.5,0.02,800,900,950,1000,1500,3000,4000,4000,4000,4000,4000
POST,vision,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,60,2,850,916.9,300,4000,10750,0.6,0.02,850,950,1000,1100,1600,2500,3900,4000,4000,4000,4000
"""
FAILURES = """\
Method,Name,Error,Occurrences,First Seen,Last Seen
POST,text,CatchResponseError('degraded answer (failed: smollm2)'),1,2026-11-27T03:09:24Z,2026-11-27T03:09:24Z
POST,text,CatchResponseError('HTTP 503 overloaded'),1,2026-11-27T03:09:27Z,2026-11-27T03:09:27Z
"""
HISTORY_HEAD = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
                "100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
                "Total Min Response Time,Total Max Response Time,Total Average Content Size\n")
LOAD = {"user_classes": ["MixedUser"], "peak_users": 3, "ramp_up_s": 20.0, "hold_s": 60.0, "ramp_down_s": 10.0,
        "wait_s": [1.0, 3.0]}


@pytest.fixture
def sample_run(tmp_path):
    prefix = tmp_path / "locust"
    (tmp_path / "locust_stats.csv").write_text(STATS)
    (tmp_path / "locust_failures.csv").write_text(FAILURES)
    rows = [(1795748958 + t, users) for t, users in ((0, 0), (2, 1), (10, 3), (50, 3), (95, 2), (100, 1))]
    (tmp_path / "locust_stats_history.csv").write_text(
        HISTORY_HEAD + "".join(f"{ts},{u},,Aggregated,0.5,0,800,,,,,,,,,,,1,0,800,800,800,800,900\n" for ts, u in rows))
    (tmp_path / "locust_load.json").write_text(json.dumps(LOAD))
    return prefix


def test_summary_figures_from_the_csv(sample_run):
    summary = load_summary.summarize(sample_run)
    assert summary["total"] == {"requests": 60, "failures": 2, "failure_share": 0.0333, "degraded": 1,
                                "degraded_share": 0.0167, "rps": 0.6, "p50_ms": 850.0, "p95_ms": 2500.0,
                                "p99_ms": 4000.0, "avg_ms": 916.9, "max_ms": 4000.0}
    assert summary["routes"]["text"]["degraded"] == 1 and summary["routes"]["text"]["degraded_share"] == 0.02
    assert summary["routes"]["speech"] == {"requests": 10, "failures": 0, "failure_share": 0.0, "degraded": 0,
                                           "degraded_share": 0.0, "rps": 0.1, "p50_ms": 1200.0, "p95_ms": 2000.0,
                                           "p99_ms": 2100.0, "avg_ms": 1250.5, "max_ms": 2100.0}
    assert summary["routes"]["vision"]["p50_ms"] is None  # "N/A": no request
    assert (summary["peak_users"], summary["duration_s"], summary["scenario"]) == (3, 100, "MixedUser")
    assert summary["load"] == LOAD and summary["started"] == "2026-11-27T03:09:18+00:00"
    assert [f["occurrences"] for f in summary["failures"]] == [1, 1]


def test_summary_writes_json_and_prints(sample_run, tmp_path, capsys):
    out = tmp_path / "load.json"
    assert load_summary.main([str(sample_run), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["total"]["requests"] == 60
    printed = capsys.readouterr().out
    assert "MixedUser: peak 3 users, 100 s" in printed and "total" in printed


def test_summary_without_a_run(tmp_path, capsys):
    assert load_summary.main([str(tmp_path / "nothing")]) == 1
    assert "no Locust stats" in capsys.readouterr().err
