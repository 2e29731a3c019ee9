"""The flags the service reads, by name and type, evaluated through OpenFeature; without a flags file
every switch gives the config's own value.

| flag                     | type    | what it does                                                     |
|--------------------------|---------|------------------------------------------------------------------|
| `models.<name>.enabled`  | boolean | off: the model leaves every chain (named or routed) at once       |
| `committee.enabled`      | boolean | off: two intents too close to call go to the top one's route only |
| `router.enabled`         | boolean | off: no classifier; text goes to the text route (attachments and  |
|                          |         | named models still route)                                         |
| `router.exploration`     | float   | the model-choice heads' exploration rate, 0 to 1                  |
| `canary.<route>`         | string  | a model of the route put first for the requests its variant gets |
| `shadow.<route>`         | string  | a model also asked, after the answer left, for the log only       |
| `routes.<route>.order`   | object  | the route's failover chain (a list of its family's models)        |
| `faults.<model>`         | object  | a fault injected into the model (PUT /api/admin/faults' body)     |

A canary flag's variants are model names ("" for the baseline order); `fractional` targeting splits
the requests by their targeting key (x-session-id, else the client key, else the request id), so a
session stays on its variant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext

from pydantic import ValidationError

from graphs.faults import Fault
from serve_app.flags.file_provider import FlagFile
from vocabulary.config import SwitchboardConfig
from vocabulary.resilience_config import FaultSpec
from vocabulary.routes import ROUTE_FAMILY

_MODEL_FLAG = re.compile(r"^models\.(?P<name>[A-Za-z0-9._-]+)\.enabled$")
_ROUTE_MODEL_FLAG = re.compile(r"^(?P<kind>canary|shadow)\.(?P<route>[a-z_]+)$")
_ORDER_FLAG = re.compile(r"^routes\.(?P<route>[a-z_]+)\.order$")
_FAULT_FLAG = re.compile(r"^faults\.(?P<name>[A-Za-z0-9._-]+)$")


@dataclass(frozen=True)
class Canary:
    route: str
    variant: str
    model: str | None  # None: the baseline order

    def as_dict(self) -> dict[str, str | None]:
        return {"flag": f"canary.{self.route}", "variant": self.variant, "model": self.model}


class Switches:
    """`defined(key)`: whether the flags in force name `key`; a flag they do not name gives the config's
    own value at once, without an OpenFeature evaluation (which would give the same default: a dozen
    evaluations a request were about 3 % of the ingress' CPU under load)."""

    def __init__(self, client: OpenFeatureClient | None = None, defined: Callable[[str], bool] | None = None) -> None:
        self._client = client  # None: no flags file, every switch as configured
        self._defined = defined

    @property
    def on(self) -> bool:
        return self._client is not None

    def _asks(self, key: str) -> bool:
        return self._client is not None and (self._defined is None or self._defined(key))

    def model_on(self, name: str) -> bool:
        key = f"models.{name}.enabled"
        return not self._asks(key) or self._client.get_boolean_value(key, True)

    def router_on(self) -> bool:
        return not self._asks("router.enabled") or self._client.get_boolean_value("router.enabled", True)

    def committee_on(self) -> bool:
        return not self._asks("committee.enabled") or self._client.get_boolean_value("committee.enabled", True)

    def exploration(self, default: float) -> float:
        if not self._asks("router.exploration"):
            return default
        return min(1.0, max(0.0, self._client.get_float_value("router.exploration", default)))

    def canary(self, route: str, targeting_key: str) -> Canary | None:
        key = f"canary.{route}"
        if not self._asks(key):
            return None
        details = self._client.get_string_details(key, "", EvaluationContext(targeting_key))
        if details.variant is None:  # no such flag, or disabled
            return None
        return Canary(route, details.variant, details.value or None)

    def route_order(self, route: str, configured: list[str]) -> list[str]:
        """The route's chain as its flag orders it (models the flag leaves out are not tried)."""
        key = f"routes.{route}.order"
        if not self._asks(key):
            return configured
        order = self._client.get_object_value(key, configured)
        return list(order) if isinstance(order, list) and order else configured

    def fault(self, model: str) -> Fault | None:
        """The fault its flag injects into `model`, if any (an empty object: none)."""
        key = f"faults.{model}"
        if not self._asks(key):
            return None
        spec = self._client.get_object_value(key, {})
        return Fault(**FaultSpec.model_validate(spec).model_dump()) if isinstance(spec, dict) and spec else None

    def shadow(self, route: str, targeting_key: str) -> str | None:
        """The model that shadows this request's route, if any (a fractional split picks the share)."""
        key = f"shadow.{route}"
        if not self._asks(key):
            return None
        return self._client.get_string_value(key, "", EvaluationContext(targeting_key)) or None


def check_flags(config: SwitchboardConfig):
    """The application's rules for a flags file: known flag names, the right types, models that exist
    (and, for a canary, serve that route)."""
    by_name = config.by_name()

    def check(flags: FlagFile) -> None:
        problems = []
        for key, flag in flags.flags.items():
            values = list(flag.variants.values())
            if m := _MODEL_FLAG.match(key):
                if m["name"] not in by_name:
                    problems.append(f"{key}: no model {m['name']!r} in the roster")
                if not all(isinstance(v, bool) for v in values):
                    problems.append(f"{key}: variants must be true/false")
            elif key in ("committee.enabled", "router.enabled"):
                if not all(isinstance(v, bool) for v in values):
                    problems.append(f"{key}: variants must be true/false")
            elif key == "router.exploration":
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
                    problems.append(f"{key}: variants must be numbers from 0 to 1")
            elif m := _ROUTE_MODEL_FLAG.match(key):
                route = m["route"]
                if route not in ROUTE_FAMILY:
                    problems.append(f"{key}: no route {route!r} (routes: {sorted(ROUTE_FAMILY)})")
                    continue
                family = ROUTE_FAMILY[route]
                for v in values:
                    if not isinstance(v, str) or (v and (v not in by_name or by_name[v].family != family)):
                        problems.append(f"{key}: variant value {v!r} is not a {family} model of the roster (or \"\")")
            elif m := _ORDER_FLAG.match(key):
                family = ROUTE_FAMILY.get(m["route"])
                if family is None:
                    problems.append(f"{key}: no route {m['route']!r} (routes: {sorted(ROUTE_FAMILY)})")
                    continue
                for v in values:
                    if not (isinstance(v, list) and v and len(set(map(str, v))) == len(v) and
                            all(isinstance(n, str) and n in by_name and by_name[n].family == family for n in v)):
                        problems.append(f"{key}: variant {v!r} is not a list of distinct {family} models of the roster")
            elif m := _FAULT_FLAG.match(key):
                if m["name"] not in by_name:
                    problems.append(f"{key}: no model {m['name']!r} in the roster")
                for v in values:
                    try:
                        FaultSpec.model_validate(v)
                    except ValidationError as exc:
                        problems.append(f"{key}: variant {v!r} is not a fault: {exc.errors()[0]['msg']}")
            else:
                problems.append(f"{key}: not a flag this service reads (models.<name>.enabled, committee.enabled, "
                                "router.enabled, router.exploration, canary.<route>, shadow.<route>, routes.<route>.order, "
                                "faults.<model>)")
        if problems:
            raise ValueError("; ".join(problems))

    return check
