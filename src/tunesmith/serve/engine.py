"""Generation for the API: n choices per prompt, sampling controls, stop strings, token-by-token deltas.

One code path serves streaming and non-streaming requests: `generate_deltas` yields text deltas per
choice as tokens arrive; `complete` just joins them. Requests are not run here: they are submitted to
their model's batcher (serve/batcher.py), which decodes all concurrent requests, and the n choices of
each, as one batch; `ChoiceText` turns each choice's tokens into deltas there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # OpenAI's default; 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None


@dataclass
class Delta:
    index: int  # which of the n choices
    text: str
    finish_reason: str | None = None  # "stop" (end of turn or a stop string) | "length"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChoiceText:
    """One choice's tokens → text deltas, holding back an incomplete UTF-8 character or a partial stop string."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.tokens: list[int] = []
        self.emitted = 0
        self.finish_reason: str | None = None

    def text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def add(self, token: int, end_of_turn: bool) -> str:
        """The new text this token makes safe to send; sets finish_reason at end of turn or a stop string."""
        if not end_of_turn:
            self.tokens.append(token)
        text = self.text()
        hits = [i for i in (text.find(s, max(0, self.emitted - len(s))) for s in self.stop) if i >= 0]
        if hits:
            self.finish_reason = "stop"
            return self.flush(text[: min(hits)])
        if end_of_turn:
            self.finish_reason = "stop"
            return self.flush(text)
        safe = len(text) - self.held_back(text)
        if text.endswith("\ufffd") or safe <= self.emitted:
            return ""
        delta, self.emitted = text[self.emitted : safe], safe
        return delta

    def held_back(self, text: str) -> int:
        """Length of the longest tail of `text` that could still grow into a stop string."""
        return max([k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])], default=0)

    def flush(self, text: str | None = None) -> str:
        text = self.text() if text is None else text
        delta, self.emitted = text[self.emitted :], max(self.emitted, len(text))
        return delta


def generate_deltas(prompt_ids: list[int], params: SamplingParams, usage: Usage, slot) -> Iterator[Delta]:
    """Yield deltas for every choice as tokens are generated; every choice ends with one finish_reason.

    `slot` (a `BatchSlot` from the model pool) is where the request runs: its model's batcher, with the
    request's adapter. `usage` is filled in as
    tokens arrive. Leaving the loop early (client gone) takes the request's rows out of the batch.
    """
    request = slot.submit(prompt_ids, params, usage)
    try:
        while (item := request.out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        request.cancelled.set()


def complete(prompt_ids: list[int], params: SamplingParams, slot) -> tuple[list[tuple[str, str]], Usage]:
    """[(text, finish_reason)] per choice, and the token usage."""
    usage = Usage()
    texts, reasons = [""] * params.n, ["length"] * params.n
    for delta in generate_deltas(prompt_ids, params, usage, slot):
        texts[delta.index] += delta.text
        if delta.finish_reason:
            reasons[delta.index] = delta.finish_reason
    return list(zip(texts, reasons)), usage
