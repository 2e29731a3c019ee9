"""Feature flags: the flagd-format file provider through OpenFeature, fractional splits, refused files,
and the switches the roster reads."""

import json
from collections import Counter

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from serve_app.flags.file_provider import FileFlagProvider
from serve_app.flags.fractional import murmur3_32, pick
from serve_app.flags.switches import Switches, check_flags
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster
from graphs.deadline import Deadline
from vocabulary.config import SwitchboardConfig

UP = {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
CONFIG = SwitchboardConfig(models=[{"name": n, "family": "llm", "backend": {**UP, "model": n}}
                                   for n in ("a", "b", "c")])


def flag(variants, default, **extra):
    return {"state": "ENABLED", "variants": variants, "defaultVariant": default, **extra}


ON_OFF = {"on": True, "off": False}


def provider(tmp_path, flags, check=check_flags(CONFIG)):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": flags}))
    p = FileFlagProvider(path, check)
    assert p.refresh()
    return p


def client(p, domain):
    api.set_provider(p, domain=domain)
    return api.get_client(domain)


def test_murmur3_matches_the_reference_vectors():
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723


def test_a_fractional_split_lands_near_its_weights_and_is_sticky():
    got = Counter(pick("canary.text", f"session-{i}", [("baseline", 90), ("candidate", 10)]) for i in range(5000))
    assert 0.08 <= got["candidate"] / 5000 <= 0.12
    assert all(pick("canary.text", "s-7", [("baseline", 90), ("candidate", 10)]) ==
               pick("canary.text", "s-7", [("baseline", 90), ("candidate", 10)]) for _ in range(10))
    assert pick("k", "x", [("only", 1), ("never", 0)]) == "only"


def test_values_through_openfeature(tmp_path):
    p = provider(tmp_path, {"models.a.enabled": flag(ON_OFF, "off"),
                            "router.exploration": flag({"low": 0.01, "none": 0}, "low"),
                            "committee.enabled": {**flag(ON_OFF, "off"), "state": "DISABLED"},
                            "canary.text": flag({"baseline": "", "candidate": "b"}, "baseline",
                                                targeting={"fractional": [["baseline", 50], ["candidate", 50]]})})
    of = client(p, "t-values")
    assert of.get_boolean_value("models.a.enabled", True) is False
    assert of.get_boolean_value("models.b.enabled", True) is True  # no flag: the default
    assert of.get_float_value("router.exploration", 0.05) == 0.01
    assert of.get_boolean_value("committee.enabled", True) is True  # disabled flag: the default
    details = of.get_string_details("canary.text", "", EvaluationContext("some-session"))
    assert details.variant in ("baseline", "candidate") and details.reason == "SPLIT"
    assert of.get_boolean_value("router.exploration", True) is True  # the wrong type: the default
    switches = Switches(of)
    assert not switches.model_on("a") and switches.model_on("b") and switches.exploration(0.05) == 0.01
    split = Counter(switches.canary("text", f"s{i}").model for i in range(400))
    assert set(split) == {None, "b"}


def test_a_file_that_fails_is_refused_and_the_last_good_flags_stay(tmp_path):
    p = provider(tmp_path, {"models.a.enabled": flag(ON_OFF, "off")})
    good = p.version
    for bad in ("{not json", json.dumps({"flags": {"models.ghost.enabled": flag(ON_OFF, "off")}}),
                json.dumps({"flags": {"model.a.enabled": flag(ON_OFF, "off")}}),
                json.dumps({"flags": {"models.a.enabled": flag({"on": "yes"}, "on")}}),
                json.dumps({"flags": {"canary.text": flag({"x": "whisper"}, "x")}}),
                json.dumps({"flags": {"models.a.enabled": flag(ON_OFF, "maybe")}}),
                json.dumps({"flags": {"router.exploration": flag({"x": 2}, "x")}})):
        p.path.write_text(bad)
        assert p.refresh() is False
        assert p.last_error and p.version == good
        assert p.definitions()["models.a.enabled"].defaultVariant == "off"
    with pytest.raises(ValueError, match="no model 'ghost'"):
        p.write({"flags": {"models.ghost.enabled": flag(ON_OFF, "off")}})
    p.write({"flags": {"models.a.enabled": flag(ON_OFF, "on")}})
    assert p.last_error is None and p.version != good and p.definitions()["models.a.enabled"].defaultVariant == "on"


def test_the_roster_leaves_out_a_model_turned_off_and_puts_a_canary_first(tmp_path):
    p = provider(tmp_path, {"models.a.enabled": flag(ON_OFF, "off"),
                            "canary.text": flag({"baseline": "", "candidate": "c"}, "baseline",
                                                targeting={"fractional": [["baseline", 0], ["candidate", 1]]})})
    roster = Roster(CONFIG, {})
    roster.switches = Switches(client(p, "t-roster"))
    ctx = RequestContext("r", Deadline(5))
    ctx.targeting_key = "session-1"
    assert roster.chain("llm", None, ctx=ctx) == ["c", "b"]
    assert ctx.variant == {"flag": "canary.text", "variant": "candidate", "model": "c"}
    assert ctx.headers()["x-switchboard-variant"] == "canary.text=candidate"
    named = RequestContext("r2", Deadline(5))
    assert roster.chain("llm", "a", ctx=named) == ["b", "c"] and "turned off" in named.reasons[0]
    assert named.variant is None  # a named model is not split
    assert Roster(CONFIG, {}).chain("llm", None, ctx=RequestContext("r3", Deadline(5))) == ["a", "b", "c"]


def test_a_route_order_and_a_fault_from_the_flags(tmp_path):
    p = provider(tmp_path, {"routes.text.order": flag({"reversed": ["c", "b"], "all": ["a", "b", "c"]}, "reversed"),
                            "faults.b": flag({"failing": {"error_rate": 1.0, "when": {"intents": ["text"]}},
                                              "none": {}}, "failing"),
                            "router.exploration": flag({"none": 0}, "none")})
    switches = Switches(client(p, "t-order"))
    roster = Roster(CONFIG, {})
    roster.switches = switches
    roster.faults.flagged = switches.fault
    assert roster.chain("llm", None, ctx=RequestContext("r", Deadline(5))) == ["c", "b"]  # a left out
    assert roster.chain("llm", "a", ctx=RequestContext("r", Deadline(5))) == ["a", "c", "b"]  # named first
    from graphs.faults import RequestFacts

    assert roster.faults.get("b", RequestFacts(intent="text")).error_rate == 1.0
    assert roster.faults.get("b", RequestFacts(intent="vision")) is None  # its condition holds
    assert roster.faults.get("c", RequestFacts(intent="text")) is None
    assert set(roster.faults.all(["a", "b", "c"])) == {"b"}
    assert switches.exploration(0.05) == 0.0  # an integer 0 in JSON is a float flag's 0.0
    for bad in ({"routes.text.order": flag({"x": ["a", "a"]}, "x")},
                {"routes.stt.order": flag({"x": ["a"]}, "x")},
                {"faults.b": flag({"x": {"error_rate": 3}}, "x")},
                {"faults.ghost": flag({"x": {}}, "x")}):
        with pytest.raises(ValueError):
            p.write({"flags": bad})


def test_the_router_turned_off_sends_text_to_the_text_route(tmp_path):
    import asyncio

    from serve_app.schemas.chat import ChatCompletionRequest
    from serve_app.services.router import RouterService
    from vocabulary.router_config import RouterSpec

    p = provider(tmp_path, {"router.enabled": flag(ON_OFF, "off")})
    roster = Roster(CONFIG, {})
    roster.switches = Switches(client(p, "t-router"))
    router = RouterService(RouterSpec(), roster)  # not started: a classifier asked would fail
    body = ChatCompletionRequest.model_validate({"model": "auto", "messages": [
        {"role": "user", "content": "search the web for today's weather"}]})
    decision = asyncio.run(router.decide(body, RequestContext("r", Deadline(5))))
    assert (decision.intent, decision.classifier, decision.confidence) == ("text", "off", 1.0)


def test_switches_ask_openfeature_only_for_the_flags_the_file_defines(tmp_path):
    p = provider(tmp_path, {"models.a.enabled": flag(ON_OFF, "off")})
    of = client(p, "t-defined")
    asked = []
    real = of.get_boolean_value
    of.get_boolean_value = lambda key, default, *rest: asked.append(key) or real(key, default, *rest)
    switches = Switches(of, defined=p.has)
    assert not switches.model_on("a") and switches.model_on("b") and switches.router_on()
    assert switches.canary("text", "s") is None and switches.fault("a") is None
    assert asked == ["models.a.enabled"]  # the others are not in the file: their defaults, unasked
    (tmp_path / "flags.json").write_text(json.dumps({"flags": {"router.enabled": flag(ON_OFF, "off")}}))
    assert p.refresh()  # a new file: what it defines is asked from now on
    assert not switches.router_on() and switches.model_on("a")
