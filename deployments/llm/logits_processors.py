"""OpenAI's generation parameters as transformers LogitsProcessors. The engine applies them in
this order: the logprob recorder (the model's own distribution, before biases, penalties, grammar
and temperature, as vLLM and the llama.cpp engine report it), penalties, logit_bias, the JSON
grammar (deployments/llm/json_grammar.py), then temperature, top-k and top-p: sampling never keeps
only tokens the grammar forbids."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from vocabulary.errors import InvalidRequest

BAN = -100.0  # OpenAI: a bias of -100 bans the token


class OpenAIPenalties(LogitsProcessor):
    """logit -= frequency_penalty * count + presence_penalty * (count > 0), counted over the tokens
    generated so far (the prompt is not counted), as OpenAI documents them."""

    def __init__(self, prompt_tokens: int, presence: float, frequency: float) -> None:
        self._prompt_tokens = prompt_tokens
        self._presence = presence
        self._frequency = frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self._prompt_tokens:]
        if generated.numel() == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self._frequency * counts - self._presence * (counts > 0).to(scores.dtype)


class LogitBias(LogitsProcessor):
    """A bias added to the logit of each named token; -100 bans it outright."""

    def __init__(self, bias: dict[int, float]) -> None:
        self._ids = torch.tensor(list(bias), dtype=torch.long)
        values = torch.tensor(list(bias.values()), dtype=torch.float32)
        # Finite, so that a grammar that allows only banned tokens still leaves a distribution to sample.
        self._values = torch.where(values <= BAN, torch.tensor(-1e4), values)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.index_add(1, self._ids, self._values.to(scores.dtype).expand(scores.shape[0], -1))


def parse_logit_bias(bias: dict[str, float], vocab_size: int) -> dict[int, float]:
    """OpenAI's {"token id": bias} with the ids checked against this model's vocabulary."""
    parsed: dict[int, float] = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(f"logit_bias keys are token ids; {key!r} is not", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise InvalidRequest(f"logit_bias names token {token}, outside this model's vocabulary of {vocab_size}",
                                 param="logit_bias")
        parsed[token] = float(value)
    return parsed


class LogprobRecorder(LogitsProcessor):
    """Keeps the log-softmax of each step's scores, for the streamer to read once the step's token is
    chosen. Changes nothing."""

    row: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.row = torch.log_softmax(scores[0].float(), dim=-1)
        return scores


def sampling_warpers(temperature: float, top_p: float | None) -> list[LogitsProcessor]:
    """Temperature, then transformers' default top-k of 50, then top-p: applied after the grammar, so
    that they never keep only tokens the grammar forbids."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(float(temperature)), TopKLogitsWarper(50)]
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers
