"""Generation for the API: n choices per prompt, sampling controls, stop strings, token-by-token deltas.

One code path serves streaming and non-streaming requests: `generate_deltas` yields text deltas per
choice as tokens arrive; `complete` just joins them. The n choices of a request are generated as one
batch (the prompt repeated n times), so n>1 costs about one decoding pass.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from tunesmith.evaluate.generation import stop_token_ids


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


class TokenQueue(BaseStreamer):
    """Receives each decoding step's tokens, shape (n,), from `generate` in another thread."""

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the (n, T) prompt
            self.prompt_seen = True
            return
        self.items.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.items.put(None)


class Cancelled(StoppingCriteria):
    """Stops generation when the client went away (the consumer stopped iterating)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class StopStrings(StoppingCriteria):
    """Ends a row once its decoded text contains a stop string (decoding text, not token pieces, so a
    stop string split across tokens or written with byte-level symbols is still found)."""

    def __init__(self, tokenizer, stop: list[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, stop, prompt_length

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


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


def sampling_kwargs(params: SamplingParams) -> dict:
    if params.temperature <= 0:
        return dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    return dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)


def generate_deltas(model, tokenizer, prompt_ids: list[int], params: SamplingParams, usage: Usage,
                    lock: threading.Lock) -> Iterator[Delta]:
    """Yield deltas for every choice as tokens are generated; every choice ends with one finish_reason.

    `lock` serialises use of the model (and of torch's global RNG when a seed is given).
    """
    usage.prompt_tokens = len(prompt_ids)
    ends = set(stop_token_ids(tokenizer))
    streamer, cancelled = TokenQueue(), threading.Event()
    choices = [ChoiceText(tokenizer, params.stop) for _ in range(params.n)]
    kwargs = dict(
        # the prompt repeated n times, (n, T): greedy decoding refuses num_return_sequences > 1
        input_ids=torch.tensor([prompt_ids] * params.n), attention_mask=torch.ones(params.n, len(prompt_ids), dtype=torch.long),
        max_new_tokens=params.max_new_tokens, eos_token_id=sorted(ends),
        pad_token_id=tokenizer.pad_token_id, streamer=streamer,
        stopping_criteria=StoppingCriteriaList([Cancelled(cancelled)]), **sampling_kwargs(params),
    )
    if any(params.stop):
        kwargs["stopping_criteria"].append(StopStrings(tokenizer, [s for s in params.stop if s], len(prompt_ids)))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with lock, torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                model.generate(**kwargs)
        except BaseException as exc:  # surfaced to the consumer below
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while (step := streamer.items.get()) is not None:
            for index, token in enumerate(step):
                choice = choices[index]
                if choice.finish_reason is not None:
                    continue  # padding after this choice ended
                usage.completion_tokens += 1
                delta = choice.add(token, token in ends)
                if delta or choice.finish_reason:
                    yield Delta(index, delta, choice.finish_reason)
        if errors:
            raise errors[0]
        for index, choice in enumerate(choices):
            if choice.finish_reason is None:  # ran out of max_new_tokens
                choice.finish_reason = "length"
                yield Delta(index, choice.flush(), "length")
    finally:
        cancelled.set()
        thread.join()


def complete(model, tokenizer, prompt_ids: list[int], params: SamplingParams,
             lock: threading.Lock) -> tuple[list[tuple[str, str]], Usage]:
    """[(text, finish_reason)] per choice, and the token usage."""
    usage = Usage()
    texts, reasons = [""] * params.n, ["length"] * params.n
    for delta in generate_deltas(model, tokenizer, prompt_ids, params, usage, lock):
        texts[delta.index] += delta.text
        if delta.finish_reason:
            reasons[delta.index] = delta.finish_reason
    return list(zip(texts, reasons)), usage
