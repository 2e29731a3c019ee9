"""`switchboard campaign` (serve_app/campaign.py, campaign_files.py) against FakeSwitchboard: an
httpx MockTransport stand-in for the service's admin faults API and chat endpoint that applies the
faults with the real graphs.faults and writes request-log lines. The real service is exercised by
the integration tests."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from argparse import Namespace
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from graphs.faults import Fault, RequestFacts
from serve_app import campaign
from serve_app.campaign_files import CampaignError, read_faults, read_requests
from vocabulary.resilience_config import FaultSpec

TOKEN = "campaign-test-token"
VOLCANO = r"(?i)\b(volcano(es)?|lava|eruptions?|magma)\b"
TOPIC_FAULT = {"model": "smollm2", "fault": {"error_rate": 1.0, "when": {"text_regex": VOLCANO}}}


class FakeSwitchboard:
    """The admin faults API, and a chat endpoint whose primary (smollm2) fails over to smollm2-hf
    when a fault applies to the request; one log line per chat request, as the service writes."""

    def __init__(self, log_dir: Path | None = None, faults: dict[str, Fault] | None = None, gate=None) -> None:
        self.faults: dict[str, Fault] = dict(faults or {})
        self.log_dir = log_dir
        self.ids: list[str] = []
        self.admin: list[tuple[str, str]] = []
        self.resets: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.gate = gate  # an asyncio.Event chat requests wait for, when given
        self.arrived = asyncio.Event()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/admin/"):
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return httpx.Response(401, json={"error": {"code": "unauthorized"}})
            self.admin.append((request.method, path))
            return self.admin_call(request, path)
        if path == "/v1/chat/completions":
            return await self.chat(request)
        return httpx.Response(404, json={"error": {"code": "not_found"}})

    def admin_call(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/api/admin/faults" and request.method == "GET":
            return httpx.Response(200, json={name: asdict(f) for name, f in self.faults.items()})
        if path.endswith("/reset"):
            model = path.split("/")[-2]
            self.resets.append(model)
            return httpx.Response(200 if model != "router" else 404, json={"model": model})
        model = path.rsplit("/", 1)[1]
        if model not in ("smollm2", "smollm2-hf", "rapidocr", "router"):
            return httpx.Response(404, json={"error": {"code": "model_not_found"}})
        if request.method == "PUT":
            spec = FaultSpec.model_validate_json(request.content)  # as the ingress validates it
            self.faults[model] = Fault(**spec.model_dump())
        elif request.method == "DELETE":
            self.faults.pop(model, None)
        return httpx.Response(200, json={"model": model})

    async def chat(self, request: httpx.Request) -> httpx.Response:
        request_id = request.headers["x-request-id"]
        self.ids.append(request_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                for _ in range(20):  # let every other request that may start reach this point
                    await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        text = json.loads(request.content)["messages"][-1]["content"]
        fault = self.faults.get("smollm2")
        failed = fault is not None and fault.applies(RequestFacts(intent="text", text=text))
        model = "smollm2-hf" if failed else "smollm2"
        if self.log_dir is not None:
            line = {"request_id": request_id, "endpoint": "/v1/chat/completions", "status": 200, "intent": "text",
                    "model": model, "failed": ["smollm2"] if failed else [], "failovers": 2 if failed else 0,
                    "excerpt": text, "calls": []}
            with open(self.log_dir / "requests-fake.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        return httpx.Response(200, json={"choices": []}, headers={"x-switchboard-model": model})


def chat(text: str, tag: str | None = None) -> str:
    return json.dumps({"body": {"messages": [{"role": "user", "content": text}], "max_tokens": 8}, "tag": tag})


@pytest.fixture
def files(tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join([chat("Why do volcanoes erupt?", "topic"), chat("How does lava cool?", "topic"),
                                   chat("What is a good pasta recipe?", "other"),
                                   chat("Explain TCP handshakes", "other")]) + "\n")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([TOPIC_FAULT]))
    return requests, faults


async def test_the_faults_are_set_for_the_replay_and_cleared_after_it(files):
    fake = FakeSwitchboard()
    requests, faults = files
    run = await campaign.run_campaign("http://127.0.0.1:8000", TOKEN, read_faults(faults), read_requests(requests),
                                      concurrency=2, run_id="t1", transport=fake.transport())
    assert ("PUT", "/api/admin/faults/smollm2") in fake.admin
    assert fake.admin[-2:] == [("DELETE", "/api/admin/faults/smollm2"),
                               ("POST", "/api/admin/breakers/smollm2/reset")] and fake.faults == {}
    assert run.restored
    assert sorted(fake.ids) == [f"campaign-t1-{n}" for n in range(4)] == sorted(run.request_ids)
    by_id = {o.request_id: o for o in run.outcomes}
    assert by_id["campaign-t1-0"].model == "smollm2-hf" and by_id["campaign-t1-2"].model == "smollm2"
    assert all(o.status == 200 for o in run.outcomes)
    assert fake.most_in_flight == 2  # bounded, and used


async def test_a_fault_that_was_there_before_is_put_back_not_cleared(files):
    earlier = Fault(**FaultSpec.model_validate({"latency_ms": 5, "when": {"intents": ["search"]}}).model_dump())
    fake = FakeSwitchboard(faults={"smollm2": earlier})
    requests, faults = files
    run = await campaign.run_campaign("http://127.0.0.1:8000", TOKEN, read_faults(faults), read_requests(requests),
                                      transport=fake.transport())
    assert run.restored and fake.faults == {"smollm2": earlier}


async def test_a_router_fault_has_no_breaker_to_close_and_still_counts_as_restored(tmp_path, files):
    fake = FakeSwitchboard()
    requests, _ = files
    faults = tmp_path / "router.json"
    faults.write_text(json.dumps([{"model": "router", "fault": {"latency_ms": 1, "when": {"max_input_chars": 30}}}]))
    run = await campaign.run_campaign("http://127.0.0.1:8000", TOKEN, read_faults(faults), read_requests(requests),
                                      transport=fake.transport())
    assert run.restored and fake.faults == {} and fake.resets == ["router"]


async def test_the_faults_are_cleared_when_the_campaign_is_cancelled(files):
    gate = asyncio.Event()
    fake = FakeSwitchboard(gate=gate)
    requests, faults = files
    task = asyncio.create_task(campaign.run_campaign(
        "http://127.0.0.1:8000", TOKEN, read_faults(faults), read_requests(requests), transport=fake.transport()))
    await asyncio.wait_for(fake.arrived.wait(), 10)
    assert "smollm2" in fake.faults  # set while the requests are in flight
    task.cancel()  # what asyncio.run does on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.faults == {} and ("DELETE", "/api/admin/faults/smollm2") in fake.admin
    assert fake.resets == ["smollm2"]


async def test_a_fault_the_service_refuses_stops_the_campaign_before_any_request(tmp_path, files):
    fake = FakeSwitchboard()
    requests, _ = files
    faults = tmp_path / "bad.json"
    faults.write_text(json.dumps([TOPIC_FAULT, {"model": "nonesuch", "fault": {"error_rate": 1.0}}]))
    with pytest.raises(CampaignError, match="nonesuch: HTTP 404"):
        await campaign.run_campaign("http://127.0.0.1:8000", TOKEN, read_faults(faults), read_requests(requests),
                                    transport=fake.transport())
    assert fake.ids == [] and fake.faults == {}


async def test_a_wrong_token_is_refused_before_anything_is_set(files):
    fake = FakeSwitchboard()
    requests, faults = files
    with pytest.raises(CampaignError, match="HTTP 401"):
        await campaign.run_campaign("http://127.0.0.1:8000", "wrong", read_faults(faults), read_requests(requests),
                                    transport=fake.transport())
    assert fake.ids == [] and fake.faults == {}


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com", "http://127.0.0.1.example.com/",
                                 "http://[2001:db8::1]:8000", "ftp://127.0.0.1/", "127.0.0.1:8000"])
async def test_a_campaign_never_aims_at_another_host(url, files):
    fake = FakeSwitchboard()
    requests, faults = files
    with pytest.raises(CampaignError):
        await campaign.run_campaign(url, TOKEN, read_faults(faults), read_requests(requests),
                                    transport=fake.transport())
    assert fake.admin == [] and fake.ids == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000",
                                 "https://127.0.0.2"])
def test_loopback_addresses_are_allowed(url):
    campaign.loopback_only(url)


def test_the_command_writes_the_exemplars_of_its_own_requests_and_a_summary(tmp_path, files, monkeypatch, capsys):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "requests-fake.jsonl").write_text(json.dumps({"request_id": "earlier", "failovers": 1}) + "\n")
    seen = {}

    def from_log(lines, feedback, request_ids):  # stands in for intent_router.exemplars.from_log
        seen.update(lines=[line["request_id"] for line in lines], ids=list(request_ids))
        return [{"request_id": line["request_id"], "mistake": "failover"} for line in lines if line["failovers"]]

    monkeypatch.setattr(campaign, "exemplars_of", from_log)
    monkeypatch.setenv("CAMPAIGN_TOKEN", TOKEN)
    requests, faults = files
    out = tmp_path / "exemplars.jsonl"
    args = Namespace(requests=str(requests), faults=str(faults), url="http://127.0.0.1:8000",
                     admin_token_env="CAMPAIGN_TOKEN", out=str(out), results=None, concurrency=2, timeout=10.0,
                     log_wait=10.0)
    fake = FakeSwitchboard(log_dir)
    assert campaign.main(args, log_dir, transport=fake.transport()) == 0
    assert sorted(seen["ids"]) == sorted(fake.ids) and "earlier" not in seen["lines"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(re.fullmatch(r"campaign-.+-[01]", r["request_id"]) for r in rows)
    summary = json.loads(capsys.readouterr().out)
    assert summary["tag:topic"]["failovers_per_100"] == 200.0 and summary["tag:topic"]["faulted_model_failed"] == 2
    assert summary["tag:other"]["failovers_per_100"] == 0.0
    assert summary["all"]["statuses"] == {"200": 4} and summary["log_lines"] == 4 and summary["exemplars"] == 2
    assert fake.faults == {}


def test_the_command_refuses_without_the_admin_token(tmp_path, files, monkeypatch, capsys):
    monkeypatch.delenv("CAMPAIGN_TOKEN", raising=False)
    requests, faults = files
    args = Namespace(requests=str(requests), faults=str(faults), url="http://127.0.0.1:8000",
                     admin_token_env="CAMPAIGN_TOKEN", out=str(tmp_path / "x.jsonl"), results=None, concurrency=1,
                     timeout=1.0, log_wait=0.0)
    fake = FakeSwitchboard()
    assert campaign.main(args, tmp_path, transport=fake.transport()) == 2
    assert "CAMPAIGN_TOKEN" in capsys.readouterr().err and fake.admin == []


def test_waiting_for_log_lines_returns_once_all_are_there(tmp_path):
    reads = []

    def read(folder):  # the lines appear on the third look
        reads.append(folder)
        return [{"request_id": "a"}, {"request_id": "b"}] if len(reads) >= 3 else [{"request_id": "a"}]

    found = campaign.wait_for_lines(tmp_path, ["a", "b"], timeout_s=30, poll_s=0.001, read=read)
    assert set(found) == {"a", "b"} and len(reads) == 3


def test_waiting_for_log_lines_is_bounded(tmp_path):
    found = campaign.wait_for_lines(tmp_path, ["never"], timeout_s=0.01, poll_s=0.001, read=lambda _: [])
    assert found == {}


# ---- the files ------------------------------------------------------------------------------

def test_media_is_attached_to_the_last_user_message_or_uploaded(tmp_path):
    png = b"\x89PNG\r\n\x1a\n fake"
    (tmp_path / "page.png").write_bytes(png)
    (tmp_path / "hello.wav").write_bytes(b"RIFF....WAVE")
    lines = [
        {"body": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "read this"}]},
         "image_path": "page.png"},
        {"body": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hear"}]}]},
         "audio_path": "hello.wav"},
        {"endpoint": "/api/vision", "body": {"model": "auto"}, "image_path": "page.png", "tag": "rotated"},
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    image, audio, upload = read_requests(tmp_path / "r.jsonl")
    content = image.json["messages"][1]["content"]
    assert content[0] == {"type": "text", "text": "read this"}
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert audio.json["messages"][0]["content"][1]["input_audio"]["format"] == "wav"
    assert upload.file == ("page.png", png, "image/png") and upload.form == {"model": "auto"}
    assert upload.tag == "rotated" and upload.json is None


@pytest.mark.parametrize("line,message", [
    ('{"body": {}, "colour": 1}', "Extra inputs"),
    ('{"body": {"messages": []}, "image_path": "missing.png"}', "cannot read"),
    ('{"endpoint": "/v1/embeddings", "body": {}, "image_path": "p.png"}', "media goes to"),
    ('{"body": {"messages": [{"role": "system", "content": "x"}]}, "image_path": "p.png"}', "needs a user message"),
    ("not json", "Invalid JSON"),
])
def test_a_bad_request_line_is_refused_with_its_line_number(tmp_path, line, message):
    (tmp_path / "p.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "r.jsonl").write_text(chat("fine") + "\n" + line + "\n")
    with pytest.raises(CampaignError, match=rf"r.jsonl:2: .*{message}"):
        read_requests(tmp_path / "r.jsonl")


def test_faults_are_read_from_json_or_yaml_and_validated(tmp_path):
    (tmp_path / "f.yaml").write_text("- model: rapidocr\n  fault:\n    error_rate: 1.0\n    when:\n"
                                     "      min_rotation_deg: 10\n")
    (fault,) = read_faults(tmp_path / "f.yaml")
    assert fault.model == "rapidocr" and fault.fault.when.min_rotation_deg == 10
    (tmp_path / "bad.json").write_text(json.dumps([{"model": "m", "fault": {"when": {"text_regex": "(x"}}}]))
    with pytest.raises(CampaignError, match="not a valid regular expression"):
        read_faults(tmp_path / "bad.json")
    (tmp_path / "twice.json").write_text(json.dumps([TOPIC_FAULT, TOPIC_FAULT]))
    with pytest.raises(CampaignError, match="one fault per model"):
        read_faults(tmp_path / "twice.json")


def test_the_sample_campaign_set_reads_and_its_fault_hits_only_its_topic():
    root = Path(__file__).resolve().parents[2] / "loadtests" / "campaigns"
    requests = read_requests(root / "text_topic.jsonl")
    (fault,) = read_faults(root / "text_topic_faults.json")
    assert fault.model == "smollm2" and len(requests) >= 60
    built = Fault(**fault.fault.model_dump())
    for request in requests:
        text = request.json["messages"][-1]["content"]
        hit = built.applies(RequestFacts(intent="text", text=text))
        assert hit is (request.tag == "topic"), text
    tags = [r.tag for r in requests]
    assert tags.count("topic") >= 30 and tags.count("other") >= 30


def test_the_vision_campaign_set_fails_the_primary_ocr_on_exactly_its_rotated_images():
    from serve_app.media.image import inspect_image

    root = Path(__file__).resolve().parents[2] / "loadtests" / "campaigns"
    requests = read_requests(root / "vision_rotated.jsonl")
    (fault,) = read_faults(root / "vision_rotated_faults.json")
    built = Fault(**fault.fault.model_dump())
    assert fault.model == "rapidocr" and len(requests) >= 40
    for request in requests:
        name, data, _ = request.file
        info = inspect_image(data, max_pixels=40_000_000)  # as the ingress measures it
        known = RequestFacts().with_image(info.width, info.height, info.rotation, info.contrast)
        assert built.applies(known) is (request.tag == "rotated"), (name, info)
