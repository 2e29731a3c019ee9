"""Order a failover chain by the model-choice heads' predictions, the config order as the prior.

`order(chain, scores, prior_weight=w, exploration=e, rng=r)`:
- the `llm_only` step (if the chain holds it) stays last; models without a score keep their place;
- the scored models are ranked, in the places the scored models hold, by
  `score + w * (n - 1 - i) / (n - 1)` (i: the model's index among the n scored models in config order,
  so the first gets the whole bonus `w` and the last none); ties keep the config order;
- a model is *demoted* when the ranking puts it later than the config did. With probability `e`
  (one `rng.random()` draw per call that has a demoted model) one demoted model, chosen uniformly
  (`rng.randrange`), goes to the first scored place, the others keep the ranking: a demoted model
  keeps being tried now and then, so the log keeps evidence about it;
- no scores (None, or none for a model of the chain) -> the config order, no draw.
The result is always a permutation of the chain: a model never disappears.
"""

from __future__ import annotations

import random
from typing import Mapping

from vocabulary.routes import LLM_ONLY


def order(chain: list[str], scores: Mapping[str, float] | None, *, prior_weight: float, exploration: float,
          rng: random.Random) -> list[str]:
    steps = [s for s in chain if s != LLM_ONLY]
    tail = [s for s in chain if s == LLM_ONLY]
    slots = [i for i, name in enumerate(steps) if scores is not None and name in scores]
    if not slots:
        return list(chain)
    scored = [steps[i] for i in slots]
    n = len(scored)

    def key(pair: tuple[int, str]) -> tuple[float, int]:
        rank, name = pair
        bonus = prior_weight * (n - 1 - rank) / (n - 1) if n > 1 else 0.0
        return -(float(scores[name]) + bonus), rank

    ranked = [name for _, name in sorted(enumerate(scored), key=key)]
    behind = demoted(scored, ranked)
    if behind and exploration > 0 and rng.random() < exploration:
        chosen = behind[rng.randrange(len(behind))]
        ranked = [chosen] + [name for name in ranked if name != chosen]
    out = list(steps)
    for slot, name in zip(slots, ranked):
        out[slot] = name
    return out + tail


def demoted(chain: list[str], ordered: list[str]) -> list[str]:
    """The models `ordered` puts later than `chain` did (for the log and metrics)."""
    return [name for name in ordered if name in chain and ordered.index(name) > chain.index(name)]
