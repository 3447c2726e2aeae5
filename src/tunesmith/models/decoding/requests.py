"""What one generation request carries between the HTTP route and the batcher thread, and what comes back.

A route builds `SamplingParams` from the API body and submits the prompt's token ids; the batcher turns
that into a `GenerationRequest`, whose `out` queue the route reads: `Delta`s (text per choice as it
becomes safe to send), then None when every choice has finished, or the exception that stopped the batch.
`Usage` is filled in by the decoding thread as tokens arrive.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tunesmith.models.decoding.constraints import Grammar


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # OpenAI's default; 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    logprobs: int | None = None  # k: each generated token's log-probability and the k likeliest at its step; None: none
    frequency_penalty: float = 0.0  # OpenAI's: subtracted from a token's logit once per time the answer has used it
    presence_penalty: float = 0.0  # subtracted once from the logit of every token the answer has used
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit at every step
    grammar: Grammar | None = None  # what each answer must be (models/decoding/constraints.py): JSON under a schema


@dataclass
class TokenLogprob:
    """A generated token's log-probability under the model (the log-softmax of its logits, before penalties, logit
    bias, temperature and top_p) and the likeliest tokens at that step with theirs, most likely first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Delta:
    index: int  # which of the n choices
    text: str
    finish_reason: str | None = None  # "stop" (end of turn or a stop string) | "length"
    logprobs: list[TokenLogprob] | None = None  # the tokens behind `text`, when the request asked for them


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(eq=False)
class GenerationRequest:
    """One API request: its n choices become n rows. `out` receives Delta items, then None (done) or an exception."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None  # None = the plain base model
    usage: Usage
    out: queue.Queue = field(default_factory=queue.Queue)  # or batcher.LoopQueue for an async route: put() is all it needs
    cancelled: threading.Event = field(default_factory=threading.Event)
    rows_left: int = 0
    generator: torch.Generator | None = None  # shared by the request's rows when sampling
    background: bool = False  # a batch's request (/v1/batches): it yields rows to interactive ones (serve/batcher.py)

    def __post_init__(self):
        self.rows_left = self.params.n
        self.usage.prompt_tokens = len(self.prompt_ids)
        if self.params.temperature > 0:
            self.generator = torch.Generator()
            if self.params.seed is None:
                self.generator.seed()  # a fresh random seed
            else:
                self.generator.manual_seed(self.params.seed)

    def fail(self, error: BaseException) -> None:
        if self.rows_left:  # not already finished or failed
            self.rows_left = 0
            self.out.put(error)
