"""Locust load scenarios for Switchboard (`make load` runs MixedUser headless; README, "Load test (Locust)").

    locust -f loadtests/locustfile.py MixedUser --headless --host http://127.0.0.1:8000 --csv loadtests/results/locust
    locust -f loadtests/locustfile.py SpeechUser --headless --host http://127.0.0.1:8000 --peak-users 1

User classes: MixedUser (text 50 %, search 15 %, vision 15 %, speech 10 %, transcription 10 %) and one per
route (TextUser, SearchUser, VisionUser, SpeechUser, TranscriptionUser) to load one route alone. With no
class named, only MixedUser runs. StagedShape drives every run: ramp up to --peak-users over --ramp-up
seconds, hold for --hold, ramp down over --ramp-down, then stop (the total time is bounded).

A request passes only when it is a complete, undegraded answer: a status other than 200, a 200 with an error
body, a degraded answer (`x-switchboard-degraded: true`, or `switchboard.degraded` in the body), a missing
header or field, or an x-request-id that did not come back is a failure. Every request sends its own
x-request-id (a uuid), so a failure can be found in the request log. Failures are named by their cause, so
`locust_failures.csv` counts degraded answers apart ("degraded answer ...").

Media is made once at start-up (loadtests/locust_media.py): an image of printed text (Pillow), and speech
from the service's own /v1/audio/speech for transcription. Only the standard library, numpy, Pillow and
Locust run here (gevent patches this process): never import Ray or the app.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import uuid
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, between, events

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locust_media  # noqa: E402  (beside this file)

logger = logging.getLogger(__name__)

# The mixed scenario's share of each route, in percent.
ROUTE_WEIGHTS = {"text": 50, "search": 15, "vision": 15, "speech": 10, "transcription": 10}

TEXT_PROMPTS = [
    "Write one sentence about why the sky looks blue.",
    "Give me two tips for writing a clear e-mail.",
    "What is a good name for a grey cat?",
    "Explain in one sentence what a recipe is.",
    "Say something kind to someone starting a new job.",
]
SEARCH_QUERIES = [  # words in the local index's documents; it answers while the load test stays on loopback
    "how do I stop a backgrounded serve run",
    "token authentication dashboard 401",
    "high-throughput mode HAProxy gRPC",
    "what happens when a model fails at night",
    "request log replica",
]
MAX_TOKENS = 32
WAIT_S = (1.0, 3.0)  # between a user's requests: a person reading the answer; the CPU models are slow on 2 cores
SPEECH_TEXT = "Your table for four is booked for seven tonight."

MEDIA: locust_media.Media | None = None  # made by on_init, before any user starts


# ---- checks -------------------------------------------------------------------------------------


def _json(response) -> tuple[dict | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, "the body is not JSON"
    if not isinstance(body, dict):
        return None, "the body is not a JSON object"
    if "error" in body:
        error = body["error"] if isinstance(body["error"], dict) else {"message": str(body["error"])}
        return None, f"200 with an error body: {error.get('code') or error.get('message', '')}"[:200]
    return body, None


def _switchboard_field(body: dict) -> str | None:
    field = body.get("switchboard")
    if not isinstance(field, dict) or "degraded" not in field:
        return "missing field switchboard.degraded"
    if field["degraded"]:
        return f"degraded answer (body; failed: {', '.join(field.get('failed', []))[:120]})"
    return None


def _common_problem(response, request_id: str) -> str | None:
    """What makes any answer a failure, whatever the route."""
    if getattr(response, "error", None) is not None and not response.status_code:
        return f"no answer: {type(response.error).__name__}"
    if response.status_code != 200:
        code = None
        try:
            code = (response.json().get("error") or {}).get("code")
        except (ValueError, AttributeError):
            pass
        return f"HTTP {response.status_code} {code or ''}".strip()
    headers = response.headers or {}
    if headers.get("x-request-id") != request_id:
        return "x-request-id did not come back"
    degraded = headers.get("x-switchboard-degraded")
    if degraded is None:
        return "missing header x-switchboard-degraded"
    if degraded != "false":
        return f"degraded answer (failed: {headers.get('x-switchboard-failed', 'none; see notes')})"
    if not headers.get("x-switchboard-model"):
        return "missing header x-switchboard-model"
    return None


def _request(user, route: str, path: str, check, **kwargs) -> None:
    """POST `path` as `route` in the stats; `check(response)` names what is wrong with a 200, or None."""
    request_id = str(uuid.uuid4())
    with user.client.post(path, name=route, headers={"x-request-id": request_id}, catch_response=True,
                          **kwargs) as response:
        problem = _common_problem(response, request_id) or check(response)
        if problem:
            response.failure(problem)
        else:
            response.success()


def _chat_problem(response) -> str | None:
    body, problem = _json(response)
    if problem:
        return problem
    try:
        choice = body["choices"][0]
        content, finish = choice["message"]["content"], choice["finish_reason"]
    except (KeyError, IndexError, TypeError):
        return "missing field choices[0].message.content"
    if not isinstance(content, str):
        return "missing field choices[0].message.content"
    if finish not in ("stop", "length"):
        return f"finish_reason {finish}"
    return _switchboard_field(body)


def _vision_problem(response) -> str | None:
    problem = _chat_problem(response)
    if problem:
        return problem
    attachments = response.json()["switchboard"].get("attachments") or [{}]
    if attachments[0].get("type") != "image" or not attachments[0].get("text"):
        return "missing field switchboard.attachments[0].text (the image was not read)"
    return None


def _search_problem(response) -> str | None:
    body, problem = _json(response)
    if problem:
        return problem
    results = body.get("results")
    if not isinstance(results, list) or not results:
        return "missing field results (empty)"
    if any(not {"title", "url", "snippet"} <= set(r) for r in results):
        return "missing field results[].title/url/snippet"
    return _switchboard_field(body)


def _speech_problem(response) -> str | None:
    audio = response.content or b""
    if not audio.startswith(b"RIFF") or len(audio) <= 44:
        return "not a WAV with samples"
    return None


def _transcription_problem(response) -> str | None:
    body, problem = _json(response)
    if problem:
        return problem
    text = body.get("text")
    if not isinstance(text, str):
        return "missing field text"
    if MEDIA is not None and MEDIA.wav_is_speech and not text.strip():
        return "empty transcript of speech"
    return None


# ---- one function per route (each one task) ------------------------------------------------------


def text(user) -> None:
    _request(user, "text", "/v1/chat/completions", _chat_problem, json={
        "model": "auto", "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": random.choice(TEXT_PROMPTS)}]})


def search(user) -> None:
    _request(user, "search", "/api/search", _search_problem, json={
        "query": random.choice(SEARCH_QUERIES), "max_results": 5, "model": "local"})


def vision(user) -> None:
    _request(user, "vision", "/v1/chat/completions", _vision_problem, json={
        "model": "auto", "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What does the image say?"},
            {"type": "image_url", "image_url": {"url": MEDIA.image_data_url}}]}]})


def speech(user) -> None:
    _request(user, "speech", "/v1/audio/speech", _speech_problem, json={
        "model": "tts-1", "voice": "alloy", "input": SPEECH_TEXT, "response_format": "wav"})


def transcription(user) -> None:
    _request(user, "transcription", "/v1/audio/transcriptions", _transcription_problem,
             data={"model": "whisper-1"}, files={"file": ("speech.wav", MEDIA.wav, "audio/wav")})


ROUTES = {"text": text, "search": search, "vision": vision, "speech": speech, "transcription": transcription}
REQUESTS = {  # what each route sends, in words (written into the run's PREFIX_load.json)
    "text": f"POST /v1/chat/completions, model auto, a short question, max_tokens {MAX_TOKENS}",
    "search": "POST /api/search, model local (the BM25 index), max_results 5",
    "vision": f"POST /v1/chat/completions, model auto, a 640x90 PNG of printed text as a data: URL, "
              f"max_tokens {MAX_TOKENS}",
    "speech": f"POST /v1/audio/speech, tts-1, voice alloy, wav, {len(SPEECH_TEXT)} characters",
    "transcription": f"POST /v1/audio/transcriptions, whisper-1, wav: the service's own speech of a "
                     f"{len(locust_media.SPOKEN_TEXT)}-character sentence",
}


# ---- users ----------------------------------------------------------------------------------------


class SwitchboardUser(FastHttpUser):
    abstract = True
    wait_time = between(*WAIT_S)
    connection_timeout = 10.0
    network_timeout = 180.0  # under the service's own deadline (60 s) plus queueing


class MixedUser(SwitchboardUser):
    tasks = {ROUTES[route]: weight for route, weight in ROUTE_WEIGHTS.items()}


class TextUser(SwitchboardUser):
    tasks = [text]


class SearchUser(SwitchboardUser):
    tasks = [search]


class VisionUser(SwitchboardUser):
    tasks = [vision]


class SpeechUser(SwitchboardUser):
    tasks = [speech]


class TranscriptionUser(SwitchboardUser):
    tasks = [transcription]


ROUTE_USERS = {"text": TextUser, "search": SearchUser, "vision": VisionUser, "speech": SpeechUser,
               "transcription": TranscriptionUser}


# ---- the shape --------------------------------------------------------------------------------------


def users_at(t: float, peak: int, ramp_up_s: float, hold_s: float, ramp_down_s: float) -> int | None:
    """Users wanted `t` seconds into the run: a linear ramp up to `peak`, a hold, a linear ramp down;
    None once the run is over."""
    if t < ramp_up_s:
        return max(1, min(peak, 1 + int(t * peak / ramp_up_s)))
    if t < ramp_up_s + hold_s:
        return peak
    if t < ramp_up_s + hold_s + ramp_down_s:
        left = ramp_up_s + hold_s + ramp_down_s - t
        return max(1, min(peak, 1 + int(left * peak / ramp_down_s)))
    return None


class StagedShape(LoadTestShape):
    """Ramp up, hold, ramp down, stop: the run's length is ramp_up + hold + ramp_down."""

    def tick(self):
        options = self.runner.environment.parsed_options
        users = users_at(self.get_run_time(), options.peak_users, options.ramp_up, options.hold, options.ramp_down)
        return None if users is None else (users, max(1.0, float(options.peak_users)))


# ---- start-up ---------------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("Switchboard staged shape (loadtests/locustfile.py)")
    group.add_argument("--peak-users", type=int, default=3, env_var="LOCUST_PEAK_USERS",
                       help="users held after the ramp (default 3)")
    group.add_argument("--ramp-up", type=float, default=30, env_var="LOCUST_RAMP_UP", help="seconds (default 30)")
    group.add_argument("--hold", type=float, default=120, env_var="LOCUST_HOLD", help="seconds (default 120)")
    group.add_argument("--ramp-down", type=float, default=15, env_var="LOCUST_RAMP_DOWN",
                       help="seconds (default 15)")
    group.add_argument("--ready-timeout", type=float, default=300, env_var="LOCUST_READY_TIMEOUT",
                       help="seconds to wait for /api/health to report the scenarios' models ok (default 300)")


@events.init.add_listener
def on_init(environment, **_) -> None:
    """Only MixedUser when no class was named (nor picked in the web UI); wait for the models; make the media."""
    global MEDIA
    options = environment.parsed_options
    if options is not None and not options.user_classes and not getattr(options, "class_picker", False) \
            and len(environment.user_classes) > 1:
        environment.user_classes[:] = [MixedUser]
    host = environment.host or (options.host if options is not None else None)
    if host and options is not None and getattr(options, "ready_timeout", 0) > 0:
        missing = locust_media.wait_until_ready(host.rstrip("/"), options.ready_timeout)
        if missing:
            logger.error("not ready after %.0f s: %s not ok in %s/api/health", options.ready_timeout,
                         ", ".join(missing), host)
            raise SystemExit(2)
    MEDIA = locust_media.make_media(host.rstrip("/") if host else None)
    logger.info("media ready: image %d chars as a data: URL, %s WAV %d bytes", len(MEDIA.image_data_url),
                "spoken" if MEDIA.wav_is_speech else "tone", len(MEDIA.wav))
    if options is not None and options.csv_prefix:  # the load, beside the CSVs, for loadtests/load_summary.py
        Path(f"{options.csv_prefix}_load.json").write_text(json.dumps(describe_load(environment), indent=2) + "\n")


def describe_load(environment) -> dict:
    options = environment.parsed_options
    classes = environment.user_classes
    return {"user_classes": [c.__name__ for c in classes], "host": environment.host, "peak_users": options.peak_users,
            "ramp_up_s": options.ramp_up, "hold_s": options.hold, "ramp_down_s": options.ramp_down,
            "wait_s": list(WAIT_S), "max_tokens": MAX_TOKENS,
            "route_weights": ROUTE_WEIGHTS if classes == [MixedUser] else None, "requests": REQUESTS,
            "transcribed_audio": "speech" if MEDIA is not None and MEDIA.wav_is_speech else "tone"}
