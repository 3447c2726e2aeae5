"""The serving engine without a server: a list of prompts in, each one's greedy answer out (vLLM's offline `LLM.generate`).

Evaluation and augmentation answer hundreds of prompts with one model (models/generate.py). They go through the
same engine as `tunesmith serve` (models/decoding/engine.py), so what a report measures is what the server will answer:
rows join as others finish instead of waiting for a static batch's longest answer, every prompt's shared
beginning (a system prompt) is prefilled once and reused (models/decoding/prefix_store.py), and a decoding step runs the
written-out decoder over packed weights (models/decoding/decode_step.py).

Measured (the demo's 416 held-out questions, SmolLM2-135M with bf16 weights, 2 threads, Intel Xeon with AMX;
benchmarks/eval_speed.py): see benchmarks/README.md, "eval_speed.py".
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch

from tunesmith.models.chat import stop_token_ids
from tunesmith.models.decoding.constraints import Grammar
from tunesmith.models.decoding.engine import Row, RunningBatch
from tunesmith.models.decoding.requests import GenerationRequest, SamplingParams, Usage


class RecordingBatch(RunningBatch):
    """A running batch that keeps every request's generated token ids, its stop token included. Nobody waits for a
    first token here, so prefill passes are larger than the server's (the demo's 416 questions at 128 rows: 14.0-14.4
    s with the server's 160 tokens a pass, 13.4-13.8 s with 1024)."""

    prefill_tokens = 1024

    def __init__(self, tokenizer, end_ids: set[int]):
        super().__init__(tokenizer, end_ids)
        self.generated: dict[tuple[int, int], list[int]] = {}  # (id(request), choice) → its tokens so far

    def advance(self, rows: list[Row], tokens: list[int], first: int, logprobs=None) -> None:
        for row, token in zip(rows, tokens):
            self.generated.setdefault((id(row.request), row.index), []).append(token)
        super().advance(rows, tokens, first, logprobs)


@torch.inference_mode()
def greedy_token_ids(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, max_rows: int = 32,
                     on_finished: Callable[[int], None] | None = None,
                     grammar: Grammar | None = None) -> list[list[int]]:
    """Greedy new token ids per prompt (token ids, chat template already applied), in input order, through the
    first stop token (counted). At most `max_rows` decode together; freed rows are refilled at the next step once
    a quarter of them are free (or nothing else waits): each admission is a prefill pass of its own.
    `on_finished(n)`: after each step, how many prompts are answered. `grammar`: what every answer must be
    (models/decoding/constraints.py), each row following its own copy."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, grammar=grammar)
    answers = answer_token_ids(model, tokenizer, prompts, [params] * len(prompts), max_rows, on_finished)
    return [choices[0] for choices in answers]


@torch.inference_mode()
def answer_token_ids(model, tokenizer, prompts: list[list[int]], params: list[SamplingParams], max_rows: int = 32,
                     on_finished: Callable[[int], None] | None = None) -> list[list[list[int]]]:
    """Each prompt's `params[i].n` answers (new token ids through the first stop token), in input order. A sampling
    request draws from its own generator (seeded by `params[i].seed`), so its answers do not depend on which other
    prompts share its batch; its n choices share one prefill. Rows as in `greedy_token_ids`."""
    batch = RecordingBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [GenerationRequest(list(prompt), given, None, Usage()) for prompt, given in zip(prompts, params)]
    waiting = deque(requests)
    refill_at = max(1, max_rows // 4)
    while waiting or len(batch):
        room = max_rows - len(batch)
        if waiting and (room >= refill_at or room >= sum(r.params.n for r in waiting) or not len(batch)):
            admitted, rows = [], 0
            # whole requests (a request's n rows join together), as many as fit; one at least into an empty batch
            while waiting and (rows + waiting[0].params.n <= room or not (admitted or len(batch))):
                rows += waiting[0].params.n
                admitted.append(waiting.popleft())
            if admitted:
                batch.admit(model, admitted)
        if len(batch):
            batch.step(model)
        if on_finished is not None:
            on_finished(len(requests) - len(waiting) - len({id(row.request) for row in batch.rows}))
    return [[batch.generated.get((id(request), choice), []) for choice in range(request.params.n)]
            for request in requests]
